"""Proactor settings: frozen attrs classes, and a loader that fills them from environment variables and a ``.env`` file.

Naming scheme
-------------
A variable is ``<PREFIX>_<FIELD>``; nested settings are joined with ``__``; a dict-valued field takes the
entry name as one more level.  Names after the prefix are case-insensitive (dict keys are lower-cased)::

    SCADA_LONG_NAME=d1.isone.ct.newhaven.orange1.scada
    SCADA_STORE__SYNC_POLICY=always
    SCADA_STORE__MAX_BYTES=256MiB
    SCADA_BROKERS__CLOUD__HOST=mqtt.example.com
    SCADA_BROKERS__CLOUD__TLS=true                  # TLS with the system trust store, or ...
    SCADA_BROKERS__CLOUD__TLS__CA_FILE=/etc/scada/ca.pem   # ... any TLS field enables TLS
    SCADA_LINKS__PARENT__PEER_LONG_NAME=d1.isone.ct.newhaven.orange1
    SCADA_LINKS__PARENT__BROKER=cloud
    SCADA_LOGGING__LEVELS=io_loop=DEBUG,comm_event=INFO    # whole dict, or one entry:
    SCADA_LOGGING__LEVELS__LIFECYCLE=DEBUG

Values are converted by the field's annotation: ``str``, ``int`` (``1_000`` allowed; byte sizes such as ``64KiB``,
``512MiB``, ``1GB`` where the field is a byte count), ``float`` (finite), ``bool`` (true/false, yes/no, on/off,
1/0), ``Path`` (``~`` expanded), ``Literal`` choices (case-insensitive), ``X | None`` (an empty value means
``None``), ``dict[str, scalar]`` (``key=value,key=value``) and nested attrs classes.

Precedence: keyword overrides > the environment > the ``.env`` file > the class defaults.  Every variable that
starts with ``<PREFIX>_`` must name a setting (typos are errors, unless ``strict=False``).  All problems are
collected and raised together as :class:`InvalidSettings` (a :class:`~gwproactor.errors.ConfigError`), each naming
its variable.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
from twisted.logger import LogLevel

from gwproactor._settings_fields import BYTES as _BYTES
from gwproactor._settings_fields import FILE as _FILE
from gwproactor._settings_fields import LOWER as _LOWER
from gwproactor._settings_fields import SECRET as _SECRET
from gwproactor._settings_loader import load_attrs, parse_dotenv
from gwproactor.errors import ConfigError, InvalidSettings

__all__ = [
    "AppPaths",
    "BrokerSettings",
    "FullPolicy",
    "HTTPSettings",
    "InvalidSettings",
    "LOG_CATEGORIES",
    "LinkSettings",
    "LogLevelName",
    "LoggingSettings",
    "ProactorSettings",
    "StoreSettings",
    "SyncPolicy",
    "TLSSettings",
    "load_settings",
    "parse_dotenv",
]

KiB = 1024
MiB = 1024 * KiB

FullPolicy = Literal["drop_oldest", "reject_new"]
SyncPolicy = Literal["always", "group", "never"]
LogLevelName = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

#: Logging categories the library itself uses (applications may add their own).
LOG_CATEGORIES = ("lifecycle", "message_summary", "comm_event", "io_loop")

_TWISTED_LEVELS = {
    "DEBUG": LogLevel.debug,
    "INFO": LogLevel.info,
    "WARNING": LogLevel.warn,
    "ERROR": LogLevel.error,
    "CRITICAL": LogLevel.critical,
}

# Field metadata keys understood by the loader and by ``to_dict``: _SECRET, _BYTES, _FILE, _LOWER
# (imported from gwproactor._settings_fields above).


# --- validators (per field; the loader runs each one and names the variable) ----


def _check(predicate: typing.Callable[[Any], bool], text: str) -> typing.Callable[[Any, Any, Any], None]:
    def validate(instance: Any, attribute: Any, value: Any) -> None:
        if value is not None and not predicate(value):
            raise ValueError(text)

    return validate


_positive = _check(lambda v: v > 0, "must be greater than 0")
_non_negative = _check(lambda v: v >= 0, "must be 0 or more")
_non_empty = _check(lambda v: isinstance(v, str) and v.strip() != "", "must not be empty")
_port = _check(lambda v: isinstance(v, int) and 1 <= v <= 65535, "must be a port number from 1 to 65535")
_port_or_zero = _check(lambda v: isinstance(v, int) and 0 <= v <= 65535, "must be a port number from 0 (any) to 65535")
_keepalive = _check(lambda v: 0 < v <= 65535, "must be greater than 0 and at most 65535 seconds")
_qos = _check(lambda v: v in (0, 1), "must be 0 or 1")
_endpoint = _check(
    lambda v: re.match(r"[A-Za-z][A-Za-z0-9+]*:", v) is not None,
    "must be a Twisted client endpoint string such as 'tcp:host=mqtt.example.com:port=1883'",
)
_NAME = re.compile(r"[^\s/+#\-]+\Z")
_name = _check(
    lambda v: isinstance(v, str) and _NAME.match(v) is not None,
    "must be non-empty without whitespace, '/', '+', '#' or '-' (names go into MQTT topics, where '.' becomes '-')",
)
_app_name = _check(
    lambda v: isinstance(v, str) and re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z", v) is not None,
    "must be a plain directory name (letters, digits, '.', '_', '-')",
)


def _choices(*allowed: Any) -> typing.Callable[[Any, Any, Any], None]:
    return _check(lambda v: v in allowed, "must be one of " + ", ".join(repr(a) for a in allowed))


def _after_heartbeat(instance: Any, attribute: Any, value: float) -> None:
    if not value > instance.heartbeat_s:
        raise ValueError(f"must be greater than heartbeat_s ({instance.heartbeat_s})")


def _at_least_initial(instance: Any, attribute: Any, value: float) -> None:
    if not value >= instance.backoff_initial_s:
        raise ValueError(f"must be at least backoff_initial_s ({instance.backoff_initial_s})")


def _within_max_bytes(instance: Any, attribute: Any, value: int) -> None:
    if not 0 < value <= instance.max_bytes:
        raise ValueError(f"must be greater than 0 and at most max_bytes ({instance.max_bytes})")


def _key_needs_cert(instance: Any, attribute: Any, value: Path | None) -> None:
    if value is not None and instance.cert_file is None:
        raise ValueError("needs cert_file as well (the client certificate it belongs to)")


def _levels(instance: Any, attribute: Any, value: Mapping[str, str]) -> None:
    for category, level in value.items():
        if not re.match(r"[a-z0-9_.]+\Z", category):
            raise ValueError(f"category {category!r} must be lower-case letters, digits, '_' or '.'")
        if level not in _TWISTED_LEVELS:
            raise ValueError(f"level {level!r} of {category!r} must be one of {', '.join(_TWISTED_LEVELS)}")


def _named_entries(kind: type) -> typing.Callable[[Any, Any, Any], None]:
    def validate(instance: Any, attribute: Any, value: Mapping[str, Any]) -> None:
        for key, entry in value.items():
            if not isinstance(key, str) or _NAME.match(key) is None:
                raise ValueError(f"entry name {key!r} must be non-empty without whitespace, '/', '+', '#' or '-'")
            if not isinstance(entry, kind):
                raise ValueError(f"entry {key!r} must be a {kind.__name__}, not {type(entry).__name__}")

    return validate


def _secret_repr(value: str | None) -> str:
    return "None" if value is None else "'***'"


# --- settings classes ------------------------------------------------------------


class _Settings:
    """Mixin: a redacted plain-dict view for logs and stats."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain JSON-able data; secrets (passwords) are shown as ``'***'``."""
        return _plain(self)


@attrs.define(frozen=True, kw_only=True)
class TLSSettings(_Settings):
    """TLS for a broker connection.  With no files: the system trust store and no client certificate."""

    #: PEM file of the CA certificates to trust instead of the system store.
    ca_file: Path | None = attrs.field(default=None, metadata={_FILE: True})
    #: PEM client certificate (may also hold the key).
    cert_file: Path | None = attrs.field(default=None, metadata={_FILE: True})
    #: PEM private key of the client certificate, when not in ``cert_file``.
    key_file: Path | None = attrs.field(default=None, validator=_key_needs_cert, metadata={_FILE: True})
    #: Check that the broker's certificate names the host connected to.
    check_hostname: bool = True


@attrs.define(frozen=True, kw_only=True)
class BrokerSettings(_Settings):
    """One MQTT broker connection (shared by the links that name it).

    ``endpoint`` (a :func:`twisted.internet.endpoints.clientFromString` description), when set, wins over
    ``host``/``port``/``tls``.  ``port`` stays 1883 with TLS unless you set it (8883 is the usual TLS port).
    """

    #: A Twisted client endpoint string (``tcp:host=...:port=...``, ``tls:...``); wins over ``host``/``port``/``tls``.
    endpoint: str | None = attrs.field(default=None, validator=_endpoint)
    #: Broker host name or address (when no ``endpoint`` is set).
    host: str = attrs.field(default="localhost", validator=_non_empty)
    #: Broker port (1883 also with TLS unless set; 8883 is the usual TLS port).
    port: int = attrs.field(default=1883, validator=_port)
    #: TLS for the connection: ``true`` for the system trust store, or any TLS field (which enables TLS).
    tls: TLSSettings | None = None
    #: MQTT user name.
    username: str | None = None
    #: MQTT password (masked in logs, ``gwproactor check`` and error messages).
    password: str | None = attrs.field(default=None, repr=_secret_repr, metadata={_SECRET: True})
    #: MQTT client id; ``None`` lets the connection derive one.
    client_id: str | None = None
    #: MQTT keepalive interval, seconds.
    keepalive_s: float = attrs.field(default=60.0, validator=_keepalive)
    #: Ceiling of the first reconnect delay, seconds; it doubles per failed attempt up to ``backoff_cap_s`` (full jitter).
    backoff_initial_s: float = attrs.field(default=0.5, validator=_positive)
    #: Largest ceiling of a reconnect delay, seconds.
    backoff_cap_s: float = attrs.field(default=60.0, validator=_at_least_initial)
    #: Seconds from the start of a connection attempt to the broker's CONNACK.
    connect_timeout_s: float = attrs.field(default=10.0, validator=_positive)


@attrs.define(frozen=True, kw_only=True)
class LinkSettings(_Settings):
    """One link to a peer process over a broker.

    Timing: each side sends a ping after ``heartbeat_s`` without sending; the link leaves ``active`` when nothing
    is received for ``receive_deadline_s`` (must exceed ``heartbeat_s``; 3 heartbeats by default, so one lost
    ping does not flap the link) or an ack takes longer than ``ack_timeout_s`` (gridworks 4.x uses 5 s).
    """

    #: The peer's long name (required).
    peer_long_name: str = attrs.field(validator=_name)
    #: The peer's short name (required).
    peer_short_name: str = attrs.field(validator=_name)
    #: Name of the :class:`BrokerSettings` entry in :attr:`ProactorSettings.brokers`.
    broker: str = attrs.field(default="default", validator=_non_empty, metadata={_LOWER: True})
    #: Events are delivered to upstream links.
    upstream: bool = False
    #: Time for the peer to ack a message, seconds; later, the link leaves ``active``.
    ack_timeout_s: float = attrs.field(default=5.0, validator=_positive)
    #: Send a ping after this many seconds without sending.
    heartbeat_s: float = attrs.field(default=10.0, validator=_positive)
    #: The link leaves ``active`` when nothing is received for this many seconds (more than ``heartbeat_s``).
    receive_deadline_s: float = attrs.field(default=30.0, validator=_after_heartbeat)
    #: At most this many unacked events in flight on the link.
    window: int = attrs.field(default=50, validator=_positive)
    #: MQTT QoS of what the link publishes.  0 (as 4.x peers use) by default: delivery is made reliable by
    #: the application-level acks, and QoS 1 only adds a PUBACK per hop (measured: same throughput, a
    #: longer round-trip tail).  1 is available.
    qos: int = attrs.field(default=0, validator=_qos)
    #: Most events per batched frame between two gwproactor peers (0: never batch, and do not offer it).
    #: Batching is offered in a ping field that gridworks-proactor 4.x ignores, so 4.x peers never see it.
    batch_max: int = attrs.field(default=100, validator=_non_negative)
    #: Sends of one event that get no ack, while the peer acks later events, before the event is parked
    #: (kept in the store's parked area, reported, re-queueable; see ``docs/delivery.rst``).
    park_after: int = attrs.field(default=3, validator=_positive)
    #: Frames from the peer larger than this are dropped before decoding (counted as ``oversized``).
    max_frame_bytes: int = attrs.field(default=4 * MiB, validator=_positive, metadata={_BYTES: True})
    #: Compress batch frames (zlib) to a gwproactor peer that offers it too; 4.x peers never see it.
    compress: bool = True


@attrs.define(frozen=True, kw_only=True)
class StoreSettings(_Settings):
    """The durable event store.  ``directory`` ``None`` means ``<XDG state>/<app_name>/<long_name>/event-store``
    (``AppPaths.event_store_dir`` of the proactor; see ``ProactorSettings.resolve_paths``).

    ``full_policy`` defaults to ``drop_oldest``: a SCADA box keeps recording and loses its oldest backlog (and
    reports it) rather than refusing new events.
    """

    #: Directory of the event store; unset: ``<XDG state>/<app_name>/<long_name>/event-store``.
    directory: Path | None = None
    #: Most bytes the store keeps; past it ``full_policy`` applies.
    max_bytes: int = attrs.field(default=512 * MiB, validator=_positive, metadata={_BYTES: True})
    #: What a full store does: ``drop_oldest`` (and report it) or ``reject_new``.
    full_policy: FullPolicy = attrs.field(default="drop_oldest", validator=_choices(*typing.get_args(FullPolicy)))
    #: When appends reach the disk: ``always`` (fsync each), ``group`` (group commit) or ``never``.
    sync_policy: SyncPolicy = attrs.field(default="group", validator=_choices(*typing.get_args(SyncPolicy)))
    #: With ``sync_policy=group``: fsyncs are at most this many milliseconds apart (an append after a quiet spell is synced on the next reactor turn).
    group_commit_ms: float = attrs.field(default=10.0, validator=_positive)
    #: Run fsync in a thread of the store's own so the reactor never waits for the disk (only the fsync
    #: moves; writes stay on the reactor).  Ignored when the reactor runs no threads (a test ``Clock``).
    fsync_in_thread: bool = True
    #: Size of one store segment file (at most ``max_bytes``).
    segment_bytes: int = attrs.field(default=4 * MiB, validator=_within_max_bytes, metadata={_BYTES: True})
    #: How many recently accepted event ids the receiving side remembers to drop duplicates.
    received_window: int = attrs.field(default=10_000, validator=_positive)


@attrs.define(frozen=True, kw_only=True)
class LoggingSettings(_Settings):
    """Log levels: a base level and per-category levels (see :data:`LOG_CATEGORIES`)."""

    #: Log level of every category without a level of its own.
    base_level: LogLevelName = attrs.field(default="INFO", validator=_choices(*_TWISTED_LEVELS))
    #: Levels per category (``lifecycle``, ``message_summary``, ``comm_event``, ``io_loop`` or your own).
    levels: dict[str, LogLevelName] = attrs.field(factory=dict, validator=_levels)

    def level_for(self, category: str | None = None) -> str:
        """Return the level name for ``category`` (the base level when it has none of its own)."""
        return self.levels.get(category, self.base_level) if category is not None else self.base_level

    def log_level_for(self, category: str | None = None) -> LogLevel:
        """Return :meth:`level_for` as a :class:`twisted.logger.LogLevel`."""
        return _TWISTED_LEVELS[self.level_for(category)]


@attrs.define(frozen=True, kw_only=True)
class HTTPSettings(_Settings):
    """The optional HTTP server (health, stats, events, Prometheus metrics, the status page).  ``port`` 0 picks a
    free port."""

    #: Run the HTTP server.
    enabled: bool = False
    #: Address the HTTP server listens on.
    host: str = attrs.field(default="127.0.0.1", validator=_non_empty)
    #: Port the HTTP server listens on (0: any free port).
    port: int = attrs.field(default=8080, validator=_port_or_zero)
    #: Time for a request's headers and body to arrive, from the connection's start (or the end of the previous
    #: answer); it does not restart when a byte arrives.  Past it the connection is closed (a JSON 408 if part of
    #: a request had arrived).
    request_deadline_s: float = attrs.field(default=10.0, validator=_positive)
    #: Open connections at most; more are closed as soon as they are accepted.
    max_connections: int = attrs.field(default=64, validator=_positive)
    #: Bound of a ``POST /events`` body; larger bodies get 413.
    max_body_bytes: int = attrs.field(default=64 * 1024, validator=_positive)


def _links_use_known_brokers(instance: Any, attribute: Any, value: Mapping[str, LinkSettings]) -> None:
    _named_entries(LinkSettings)(instance, attribute, value)
    for name, link in value.items():
        if link.broker not in instance.brokers:
            have = ", ".join(sorted(instance.brokers)) or "none"
            raise ValueError(f"link {name!r} names broker {link.broker!r}, which is not configured (brokers: {have})")


@attrs.define(frozen=True, kw_only=True)
class ProactorSettings(_Settings):
    """Everything a proactor process is configured with."""

    #: This proactor's long name, as its peers know it (required).
    long_name: str = attrs.field(validator=_name)
    #: This proactor's short name (required).
    short_name: str = attrs.field(validator=_name)
    #: Directory name under the XDG base directories.
    app_name: str = attrs.field(default="gwproactor", validator=_app_name)
    #: Broker connections by name (one named ``default`` unless set).
    brokers: dict[str, BrokerSettings] = attrs.field(
        factory=lambda: {"default": BrokerSettings()}, validator=_named_entries(BrokerSettings)
    )
    #: Links to peers by name.
    links: dict[str, LinkSettings] = attrs.field(factory=dict, validator=_links_use_known_brokers)
    #: The event store.
    store: StoreSettings = attrs.field(factory=StoreSettings)
    #: Log levels.
    logging: LoggingSettings = attrs.field(factory=LoggingSettings)
    #: The HTTP server.
    http: HTTPSettings = attrs.field(factory=HTTPSettings)
    #: At shutdown, the longest wait for acks in flight (and then for the shutdown event to be stored).
    shutdown_grace_s: float = attrs.field(default=5.0, validator=_non_negative)
    #: At shutdown, the longest wait for each child service (actors, links, broker connections, the web
    #: server) to stop, and then for the event store to close (``<PREFIX>_SERVICE_STOP_TIMEOUT_S``).  Past
    #: it the shutdown goes on with the next one, logs the name of the one that did not stop and ends with
    #: exit status 1.
    service_stop_timeout_s: float = attrs.field(default=5.0, validator=_positive)
    #: Run the reactor's timers on the monotonic clock (:func:`gwproactor.ops.clock.use_monotonic_time`),
    #: so a wall-clock step neither fires nor freezes them.  False leaves ``reactor.seconds()`` as it is.
    monotonic_time: bool = True

    def resolve_paths(self, paths: AppPaths | None = None) -> ProactorSettings:
        """Return a copy whose unset store directory comes from ``paths``.

        The default is ``AppPaths.for_app(app_name, proactor_name=long_name)``: the event store is
        ``<XDG state>/<app_name>/<long_name>/event-store``, one per proactor, so two applications of one user
        never share (and fight over) one store.
        """
        paths = paths if paths is not None else AppPaths.for_app(self.app_name, proactor_name=self.long_name)
        store = self.store
        if store.directory is None:
            store = attrs.evolve(store, directory=paths.event_store_dir)
        return attrs.evolve(self, store=store)


@attrs.define(frozen=True, kw_only=True)
class AppPaths(_Settings):
    """XDG base directories of one application (``$XDG_*_HOME`` when set and absolute, else under ``$HOME``).

    ``event_store_dir`` is ``<state_dir>/<proactor_name>/event-store`` when the paths are for one proactor
    (``proactor_name``, its long name), else ``<state_dir>/event-store``.
    """

    app_name: str
    config_dir: Path
    data_dir: Path
    state_dir: Path
    log_dir: Path
    event_store_dir: Path
    #: Conventional ``.env`` location; pass it to :func:`load_settings` explicitly if you want it.
    dotenv_file: Path

    @classmethod
    def for_app(
        cls, app_name: str, env: Mapping[str, str] | None = None, *, proactor_name: str | None = None
    ) -> AppPaths:
        """Compute the paths of ``app_name`` from ``env`` (default :data:`os.environ`); nothing is created.

        :param proactor_name: the long name of the proactor whose event store ``event_store_dir`` is.
        """
        try:
            _app_name(None, None, app_name)
        except ValueError as e:
            raise ConfigError(f"app name {app_name!r} {e}") from None
        if proactor_name is not None and (proactor_name in ("", ".", "..") or "/" in proactor_name):
            raise ConfigError(f"proactor name {proactor_name!r} cannot name a directory")
        env = os.environ if env is None else env
        home = Path(env["HOME"]) if env.get("HOME") else Path.home()

        def base(variable: str, default: str) -> Path:
            value = env.get(variable, "")
            return Path(value) if value and Path(value).is_absolute() else home / default

        config_dir = base("XDG_CONFIG_HOME", ".config") / app_name
        state_dir = base("XDG_STATE_HOME", ".local/state") / app_name
        return cls(
            app_name=app_name,
            config_dir=config_dir,
            data_dir=base("XDG_DATA_HOME", ".local/share") / app_name,
            state_dir=state_dir,
            log_dir=state_dir / "log",
            event_store_dir=(state_dir / proactor_name if proactor_name else state_dir) / "event-store",
            dotenv_file=config_dir / ".env",
        )


def _plain(value: Any, secret: bool = False) -> Any:
    if secret and value is not None:
        return "***"
    if attrs.has(type(value)):
        return {
            f.alias: _plain(getattr(value, f.name), bool(f.metadata.get(_SECRET))) for f in attrs.fields(type(value))
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_settings(
    cls: type = ProactorSettings,
    *,
    prefix: str,
    env: Mapping[str, str] | None = None,
    dotenv: Path | str | None = None,
    strict: bool = True,
    **overrides: Any,
) -> Any:
    """Load ``cls`` (an attrs settings class) from ``<PREFIX>_...`` variables; see the module docs for the names.

    :param prefix: application prefix, e.g. ``"SCADA"`` (case-insensitive, a trailing ``_`` is optional).
    :param env: the variables to read (default :data:`os.environ`); also the source of ``HOME`` / ``XDG_*``.
    :param dotenv: a ``.env`` file to read first (the environment wins).  Nothing is read unless given; a given
        file that does not exist is an error.  ``AppPaths.for_app(name).dotenv_file`` is the usual place.
    :param strict: when true (default) a ``<PREFIX>_`` variable that names no setting is an error.
    :param overrides: top-level fields given as Python values; they win over everything (variables under them
        are still checked).
    :returns: the instance; if ``cls`` has ``resolve_paths`` and ``app_name`` (as :class:`ProactorSettings` does),
        unset directories are filled from :meth:`AppPaths.for_app` using ``env``.
    :raises InvalidSettings: (a :class:`~gwproactor.errors.ConfigError`) listing every problem, each naming its
        variable (and the ``.env`` file and line it came from).
    """
    environ = os.environ if env is None else env
    instance = load_attrs(cls, prefix=prefix, env=environ, dotenv=dotenv, strict=strict, **overrides)
    if hasattr(instance, "resolve_paths") and hasattr(instance, "app_name"):
        proactor_name = getattr(instance, "long_name", None)
        instance = instance.resolve_paths(AppPaths.for_app(instance.app_name, env=environ, proactor_name=proactor_name))
    return instance
