"""Live interop with gridworks-proactor 4.x: its own virtualenv, 4.x child and parent processes, and our side's records.

gridworks-proactor 4.x also names its package ``gwproactor``, so it runs in a virtualenv of its own, as a separate
process: :func:`ensure_v4x_env` installs it from the package index once per machine (cached under
``~/.cache/gwproactor-test/``, keyed by version and Python), :class:`V4xPeer` runs a 4.x child or parent that
records what its application receives and what 4.x generates, and :class:`InteropPair` puts one of our proactors and
one 4.x peer on a private broker.  Our side is an in-process :class:`InteropProactor` that records its link
transitions, the pings it receives and the events it sent that are not yet acked.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from gwproactor.errors import GwProactorError
from gwproactor.links.machine import COMM_RESPONSE_TIMEOUT
from gwproactor.proactor import Proactor
from gwproactor_test.dummies import test_settings
from gwproactor_test.instrumented import InstrumentedMixin
from gwproactor_test.process import ProactorProcess
from gwproactor_test.wait import await_for, describe_proactors

if TYPE_CHECKING:  # pragma: no cover
    from gwproactor_test.broker import PrivateBroker

__all__ = [
    "INTEROP_LINK_SETTINGS",
    "REQUIRE_4X_ENV",
    "V4X_REQUIREMENTS",
    "V4X_VERSION",
    "InteropPair",
    "InteropProactor",
    "V4xEnv",
    "V4xInstallError",
    "V4xPeer",
    "V4xRecords",
    "V4xUnavailable",
    "cache_root",
    "ensure_v4x_env",
]

V4X_VERSION = "4.1.13"
"""The gridworks-proactor release the interop tests run against."""

V4X_REQUIREMENTS: tuple[str, ...] = (f"gridworks-proactor=={V4X_VERSION}", "typer==0.16.0")
"""What goes into the 4.x virtualenv (4.x's command line needs typer, which it does not declare)."""

V4X_MIN_PYTHON = (3, 11)
"""gridworks-proactor 4.x requires Python 3.11 or later."""

REQUIRE_4X_ENV = "GWPROACTOR_REQUIRE_4X"
"""Set to ``1`` to make an impossible 4.x install fail the interop tests instead of skipping them (CI sets it)."""

CACHE_ENV = "GWPROACTOR_TEST_CACHE"
"""Overrides the cache directory (default ``$XDG_CACHE_HOME/gwproactor-test``, else ``~/.cache/gwproactor-test``)."""

INTEROP_LINK_SETTINGS: dict[str, Any] = {
    "ack_timeout_s": 5.0,
    "heartbeat_s": 1.0,
    "receive_deadline_s": 10.0,
}
"""Our link settings for a 4.x peer in these tests: 4.x's ack timeout (5 s); a 1 s heartbeat (4.x acks each ping,
which feeds our receive deadline: 4.x itself only pings after 60 s without sending).  ``batch_max`` keeps its
default (100): our side offers batching only inside its pings, which 4.x ignores, and sends a
``gwproactor.hello`` or a batch only to a peer that offered batching too, so a 4.x peer never sees either."""

_MARKER = "gwproactor-test-venv.json"
_PEER_SCRIPT = Path(__file__).resolve().parent / "_peer4x" / "peer.py"
_NETWORK_PATTERNS = re.compile(
    r"Failed to establish a new connection|Temporary failure in name resolution|Name or service not known"
    r"|Network is unreachable|No route to host|Connection refused|ConnectTimeoutError|Read timed out"
    r"|ProxyError|Could not find a version that satisfies the requirement|No matching distribution found"
    r"|Max retries exceeded|nodename nor servname",
)


class V4xUnavailable(GwProactorError):
    """gridworks-proactor 4.x cannot be installed on this machine (no index, no network, Python too old)."""


class V4xInstallError(GwProactorError):
    """Installing gridworks-proactor 4.x failed for another reason than an unreachable index (the message says how)."""


# --- the virtualenv -------------------------------------------------------------------------------------


def cache_root() -> Path:
    """Where the 4.x virtualenvs are cached (see :data:`CACHE_ENV`)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "gwproactor-test"


@attrs.frozen
class V4xEnv:
    """A virtualenv with gridworks-proactor 4.x installed.

    :ivar directory: the virtualenv.
    :ivar version: the gridworks-proactor version installed in it.
    """

    directory: Path
    version: str

    @property
    def python(self) -> Path:
        """The virtualenv's interpreter."""
        return self.directory / "bin" / "python"

    @property
    def peer_script(self) -> Path:
        """The 4.x peer application run by :class:`V4xPeer` (it runs under :attr:`python`, never imported here)."""
        return _PEER_SCRIPT


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_child_env(), check=False)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _valid(directory: Path, requirements: tuple[str, ...]) -> bool:
    try:
        marker = json.loads((directory / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("requirements") == list(requirements) and (directory / "bin" / "python").exists()


def ensure_v4x_env(
    version: str = V4X_VERSION,
    *,
    requirements: tuple[str, ...] | None = None,
    cache_dir: Path | None = None,
    python: str | None = None,
    timeout: float = 900.0,
) -> V4xEnv:
    """Return a virtualenv with gridworks-proactor ``version``, creating it in the cache if needed (blocking).

    The virtualenv is built in place under an exclusive lock (two test runs on one machine wait for each other)
    and counts as complete once its marker file is written; an incomplete one is removed and built again.

    :param requirements: what to install (default :data:`V4X_REQUIREMENTS` for that version).
    :param python: the interpreter to build it from (default: this one).
    :raises V4xUnavailable: no index or network, or a Python older than 4.x supports (tests skip on it).
    :raises V4xInstallError: anything else went wrong; the message has the tail of pip's output.
    """
    if sys.version_info[:2] < V4X_MIN_PYTHON and python is None:
        raise V4xUnavailable(
            f"gridworks-proactor {version} needs Python {'.'.join(map(str, V4X_MIN_PYTHON))} or later; "
            f"this is {sys.version.split()[0]}"
        )
    if requirements is None:
        requirements = (f"gridworks-proactor=={version}", *V4X_REQUIREMENTS[1:])
    python = python or sys.executable
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    tag = f"py{sys.version_info.major}.{sys.version_info.minor}" if python == sys.executable else "custom"
    directory = root / f"gridworks-proactor-{version}-{tag}"
    if _valid(directory, requirements):
        return V4xEnv(directory, version)
    with _locked(root / f"{directory.name}.lock"):
        if _valid(directory, requirements):
            return V4xEnv(directory, version)
        shutil.rmtree(directory, ignore_errors=True)
        made = _run([python, "-m", "venv", str(directory)], timeout)
        if made.returncode != 0:
            shutil.rmtree(directory, ignore_errors=True)
            raise V4xInstallError(
                f"`{python} -m venv` failed (on Debian/Ubuntu install python3-venv):\n{_tail(made.stderr + made.stdout)}"
            )
        pip = [str(directory / "bin" / "python"), "-m", "pip", "install", "--retries", "2", *requirements]
        installed = _run(pip, timeout)
        if installed.returncode != 0:
            shutil.rmtree(directory, ignore_errors=True)
            output = installed.stdout + installed.stderr
            if _NETWORK_PATTERNS.search(output):
                raise V4xUnavailable(f"the package index cannot be reached or lacks gridworks-proactor {version} "
                                     f"(pip: {_tail(output, 1)})")
            raise V4xInstallError(f"`pip install {' '.join(requirements)}` failed:\n{_tail(output)}")
        check = _run(
            [str(directory / "bin" / "python"), "-I", "-c",
             "import importlib.metadata as m, gwproactor, gwproto; print(m.version('gridworks-proactor'))"],
            120,
        )
        if check.returncode != 0 or check.stdout.strip() != version:
            shutil.rmtree(directory, ignore_errors=True)
            raise V4xInstallError(f"the new 4.x virtualenv does not import gridworks-proactor {version}:\n"
                                  f"{_tail(check.stdout + check.stderr)}")
        marker = directory / f"{_MARKER}.tmp"
        marker.write_text(json.dumps({"requirements": list(requirements), "python": python, "created": time.time()}))
        os.replace(marker, directory / _MARKER)
    return V4xEnv(directory, version)


# --- what a 4.x peer did ---------------------------------------------------------------------------------


@attrs.define(eq=False)
class V4xRecords:
    """The record file of a :class:`V4xPeer`, read incrementally (see ``_peer4x/peer.py`` for its lines)."""

    path: Path
    lines: list[dict[str, Any]] = attrs.field(factory=list, init=False)
    _offset: int = attrs.field(default=0, init=False)
    _partial: bytes = attrs.field(default=b"", init=False)

    def refresh(self) -> V4xRecords:
        """Read the lines written since the last call; returns ``self``."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self
        self._offset += len(data)
        data = self._partial + data
        complete, _, self._partial = data.rpartition(b"\n")
        for raw in complete.splitlines():
            if raw.strip():
                self.lines.append(json.loads(raw))
        return self

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The lines of one kind (``recv``, ``gen``, ``state``, ``timeout``, ``sent``, ``made``)."""
        self.refresh()
        return [line for line in self.lines if line["k"] == kind]

    def received(self, type_prefix: str = "") -> Counter:
        """How many times the application received each event id (of types starting with ``type_prefix``)."""
        return Counter(line["id"] for line in self.of("recv") if line["type"].startswith(type_prefix))

    def duplicates(self, type_prefix: str = "") -> dict[str, int]:
        """Event ids the application received more than once, with their counts."""
        return {i: n for i, n in self.received(type_prefix).items() if n > 1}

    def made_ids(self) -> list[str]:
        """Ids of the readings the child generated, in order."""
        return [line["id"] for line in self.of("made")]

    def state(self, link: str) -> str:
        """The current state of ``link`` (``not_started`` before any change)."""
        states = [line for line in self.of("state") if line["link"] == link]
        return states[-1]["new"] if states else "not_started"

    def first_active(self, link: str) -> float | None:
        """When ``link`` first became active (``time.time()``), or ``None``."""
        for line in self.of("state"):
            if line["link"] == link and line["new"] == "active":
                return float(line["t"])
        return None

    def state_at(self, link: str, t: float) -> str:
        """The state of ``link`` at time ``t`` (``time.time()``)."""
        state = "not_started"
        for line in self.of("state"):
            if line["link"] == link and line["t"] <= t:
                state = line["new"]
        return state

    def stale_pings(self, link: str) -> set[str]:
        """Ids of the pings this process sent while ``link`` was not active.

        4.x pings once when its link becomes fully subscribed; if the peer is not there yet, that ping is lost, and
        its ack timeout still fires 5 s later, even if the peer has appeared and the link has become active since.
        """
        return {line["id"] for line in self.of("sent") if self.state_at(link, line["t"]) != "active"}

    def generated(self, type_name: str, after: float | None = None) -> list[dict[str, Any]]:
        """Events of ``type_name`` 4.x generated (after time ``after``)."""
        return [line for line in self.of("gen")
                if line["type"] == type_name and (after is None or line["t"] > after)]

    def summary(self) -> dict[str, Any]:
        """Counts for failure messages."""
        self.refresh()
        return {
            "lines": len(self.lines),
            "received": sum(self.received().values()),
            "duplicates": len(self.duplicates()),
            "generated": dict(Counter(line["type"] for line in self.of("gen"))),
            "states": [f"{line['t']:.3f} {line['old']} -{line['input']}-> {line['new']}" for line in self.of("state")][-12:],
            "timeouts": len(self.of("timeout")),
            "pings_sent": len(self.of("sent")),
        }


# --- a 4.x process -----------------------------------------------------------------------------------------


def _prefixed(prefix: str, values: dict[str, Any]) -> dict[str, str]:
    return {f"{prefix}{k}": str(v) for k, v in values.items()}


def _absolute(path: str | Path) -> Path:
    return Path(path).absolute()


@attrs.define(eq=False)
class V4xPeer:
    """A gridworks-proactor 4.x child (link ``parent``) or parent (link ``child``) in its own process.

    :param env: the 4.x virtualenv.
    :param role: ``"child"`` (upstream link ``parent``) or ``"parent"`` (downstream link ``child``).
    :param long_name: this process's long name (``Src`` of what it sends).
    :param short_name: this process's short name (what its peer sends to).
    :param peer_long_name: the long name of the process at the other end of its link.
    :param peer_short_name: the short name of that process.
    :param broker: a started :class:`~gwproactor_test.broker.PrivateBroker`.
    :param directory: its XDG directories (settings, certificates, event persister, logs), log and records.
    :param tls: connect to the broker's mutual-TLS listener, with the broker's test CA and client certificate
        copied where 4.x looks for them.
    :param extra_env: more ``GW4X_*`` settings (e.g. ``{"GW4X_PROACTOR__ACK_TIMEOUT_SECONDS": "3"}``).
    """

    env: V4xEnv
    role: str
    long_name: str
    short_name: str
    peer_long_name: str
    peer_short_name: str
    broker: PrivateBroker
    directory: Path = attrs.field(converter=_absolute)
    tls: bool = False
    extra_env: dict[str, str] = attrs.field(factory=dict)
    reactor: Any = None
    start_timeout: float = 60.0
    process: ProactorProcess = attrs.field(init=False)
    records: V4xRecords = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.role not in ("child", "parent"):
            raise ValueError(f"role must be 'child' or 'parent', not {self.role!r}")
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor
        self.directory.mkdir(parents=True, exist_ok=True)
        self.records = V4xRecords(self.directory / "records.jsonl")
        command = [str(self.env.python), "-I", "-u", str(self.env.peer_script), self.role,
                   "--ready-file", str(self.directory / "ready"), "--record-file", str(self.records.path)]
        self.process = ProactorProcess(f"gridworks-proactor {self.env.version} {self.role}", self.settings_env(),
                                       self.directory, reactor=self.reactor, command=command,
                                       start_timeout=self.start_timeout)

    @property
    def link_name(self) -> str:
        """The name of its one link, which is also its settings field for that link's broker."""
        return "parent" if self.role == "child" else "child"

    @property
    def paths_name(self) -> str:
        """4.x's ``paths_name`` of the application (the directory under ``gridworks/``)."""
        return f"interop-{self.role}"

    @property
    def certs_dir(self) -> Path:
        """4.x's default certificate directory for this application."""
        return self.directory / "xdg" / "config" / "gridworks" / self.paths_name / "certs"

    def settings_env(self) -> dict[str, str]:
        """The environment of the process: XDG directories and ``GW4X_*`` settings."""
        xdg = self.directory / "xdg"
        link = self.link_name.upper()
        values: dict[str, Any] = {
            "INTEROP__LONG_NAME": self.long_name,
            "INTEROP__SHORT_NAME": self.short_name,
            "INTEROP__PEER_LONG_NAME": self.peer_long_name,
            "INTEROP__PEER_SHORT_NAME": self.peer_short_name,
            f"{link}__HOST": self.broker.host,
            f"{link}__PORT": self.broker.port,
            f"{link}__TLS__USE_TLS": str(self.tls).lower(),
            f"{link}__TLS__PORT": self.broker.tls_port,
            # Info level: comm events and lifecycle lines in process.log.
            "LOGGING__BASE_LOG_LEVEL": 20,
        }
        return {
            "XDG_CONFIG_HOME": str(xdg / "config"),
            "XDG_DATA_HOME": str(xdg / "data"),
            "XDG_STATE_HOME": str(xdg / "state"),
            **_prefixed("GW4X_", values),
            **self.extra_env,
        }

    def install_tls_files(self) -> None:
        """Copy the broker's test CA and client certificate to where 4.x looks for the link's TLS files."""
        certs = self.broker.certs
        assert certs is not None  # a PrivateBroker makes its certificates when it is created
        link_dir = self.certs_dir / self.link_name
        (link_dir / "private").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(certs.ca.cert_path, link_dir / "ca.crt")
        shutil.copyfile(certs.client.cert_path, link_dir / f"{self.link_name}.crt")
        key = link_dir / "private" / f"{self.link_name}.pem"
        shutil.copyfile(certs.client.key_path, key)
        os.chmod(key, 0o600)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Deferred:
        """Start the process; fires once 4.x has started its proactor (links started, tasks running)."""
        if self.tls:
            self.install_tls_files()
        return self.process.start()

    def stop(self, timeout: float = 10.0) -> Deferred:
        """SIGTERM (4.x's graceful stop), SIGKILL after ``timeout`` s; fires when it has exited."""

        async def stop() -> None:
            if not self.process.running:
                return
            exited = self.process.terminate()
            timer = self.reactor.callLater(timeout, lambda: self.process.kill() if self.process.running else None)
            try:
                await exited
            finally:
                if timer.active():
                    timer.cancel()

        return Deferred.fromCoroutine(stop())

    def close(self) -> Deferred:
        """Stop it if needed and close its log."""

        async def close() -> None:
            await self.stop()
            await self.process.close()

        return Deferred.fromCoroutine(close())

    def command(self, line: str) -> None:
        """Write one command line to the process's stdin."""
        if self.process.transport is None:
            raise RuntimeError(f"the 4.x {self.role} is not running")
        self.process.transport.write(line.encode() + b"\n")

    def generate(self, count: int, interval: float = 0.0) -> None:
        """(child) Generate ``count`` readings, ``interval`` seconds apart."""
        self.command(f"gen {count} {interval}")

    # --- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The current state of its link."""
        return self.records.state(self.link_name)

    def describe(self) -> str:
        """Its records' summary and log tail, for failure messages."""
        return (f"--- 4.x {self.role} {self.long_name}:\n{json.dumps(self.records.summary(), indent=1)}\n"
                f"log tail:\n{self.process.log_tail(25)}")


# --- our side ------------------------------------------------------------------------------------------------


class InteropProactor(InstrumentedMixin, Proactor):
    """Our proactor for interop tests: instrumented (:class:`~gwproactor_test.instrumented.InstrumentedMixin`), and

    * :attr:`transitions`: ``(time.time(), link name, old, new, input, comm events)`` of every link transition;
    * :attr:`pings_received`: ``(time.time(), link name)`` of every ping from a peer;
    * :attr:`unacked`: ids of events sent upstream whose ack has not arrived (an outage keeps them: they are
      what may legitimately reach the peer twice);
    * :meth:`mark_outage` / :attr:`exposed`: the events whose acks an outage may lose.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.transitions: list[tuple[float, str, str, str, str, tuple[str, ...]]] = []
        self.pings_received: list[tuple[float, str]] = []
        self.unacked: dict[str, None] = {}
        self.exposed: set[str] = set()
        self._outage_open = False
        super().__init__(*args, **kwargs)
        for link in self.links.values():
            self._watch_link(link)

    def _watch_link(self, link: Any) -> None:
        send_message, receive_frame = link.send_message, link.receive_frame

        def sent(message: Any) -> Deferred:
            header = message.header
            if header.ack_required and header.message_type.startswith("gridworks.event"):
                self.unacked[header.message_id] = None
                if self._outage_open:
                    self.exposed.add(header.message_id)
            return send_message(message)

        def received(message: Any) -> None:
            if message.header.message_type == "gridworks.ping":
                self.pings_received.append((time.time(), link.link_name))
            receive_frame(message)

        link.send_message = sent
        link.receive_frame = received

    def link_transition(self, link: Any, transition: Any) -> None:
        """Record the transition, then let the proactor act on it."""
        self.transitions.append((time.time(), link.link_name, transition.old.value, transition.new.value,
                                 transition.input.value, tuple(transition.comm_events)))
        if transition.left_active:
            self._outage_open = False
        super().link_transition(link, transition)

    def link_acked(self, link: Any, message_id: str, rtt: Any) -> None:
        """Forget the acked event."""
        self.unacked.pop(message_id, None)
        super().link_acked(link, message_id, rtt)

    def mark_outage(self) -> None:
        """Call just before cutting the broker: the events sent and not yet acked, and those sent until the upstream
        link leaves active, go into :attr:`exposed` (their acks may be lost, so the peer may get them twice)."""
        self.exposed.update(self.unacked)
        self._outage_open = True

    def first_active(self, link_name: str) -> float | None:
        """When ``link_name`` first became active (``time.time()``), or ``None``."""
        for t, name, _old, new, _input, _events in self.transitions:
            if name == link_name and new == "active":
                return t
        return None

    def timeouts_after_active(self, link_name: str) -> list[tuple[float, str, str]]:
        """``response.timeout`` comm events of ``link_name`` after it first became active: ``(t, old, input)``."""
        start = self.first_active(link_name)
        if start is None:
            return []
        return [(t, old, inp) for t, name, old, _new, inp, events in self.transitions
                if name == link_name and t >= start and COMM_RESPONSE_TIMEOUT in events]


@attrs.define(eq=False)
class InteropPair:
    """One of our proactors and a 4.x peer linked through ``broker``.

    :param ours: ``"child"`` (our child, upstream link ``parent``, to a 4.x parent) or ``"parent"`` (our parent,
        link ``child``, to a 4.x child).
    :param link_overrides: our :class:`~gwproactor.config.LinkSettings` fields (default
        :data:`INTEROP_LINK_SETTINGS`).
    :param tls: both sides use the broker's mutual-TLS listener.
    """

    env: V4xEnv
    broker: PrivateBroker
    directory: Path = attrs.field(converter=_absolute)
    ours: str = "child"
    tls: bool = False
    link_overrides: dict[str, Any] = attrs.field(factory=lambda: dict(INTEROP_LINK_SETTINGS))
    peer_env: dict[str, str] = attrs.field(factory=dict)
    child_names: tuple[str, str] = ("d1.isone.ct.newhaven.orange1.scada", "s")
    parent_names: tuple[str, str] = ("d1.isone.ct.newhaven.orange1", "a")
    reactor: Any = None
    proactor: InteropProactor = attrs.field(init=False)
    peer: V4xPeer = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.ours not in ("child", "parent"):
            raise ValueError(f"ours must be 'child' or 'parent', not {self.ours!r}")
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor
        (own_long, own_short), (peer_long, peer_short) = (
            (self.child_names, self.parent_names) if self.ours == "child" else (self.parent_names, self.child_names)
        )
        endpoint = self.broker.endpoint(tls=self.tls)
        settings = test_settings(own_long, own_short, endpoint, self.directory / "ours",
                                 {self.link_name: (peer_long, peer_short, self.ours == "child")}, self.link_overrides)
        self.proactor = InteropProactor(settings, reactor=self.reactor)
        self.proactor.log_capture.label = f"ours-{self.ours}"
        self.peer = V4xPeer(self.env, "parent" if self.ours == "child" else "child", peer_long, peer_short,
                            own_long, own_short, self.broker, self.directory / "v4x", tls=self.tls,
                            extra_env=self.peer_env, reactor=self.reactor)

    @property
    def link_name(self) -> str:
        """Our link's name (the 4.x peer's link has the other role's name)."""
        return "parent" if self.ours == "child" else "child"

    @property
    def link(self) -> Any:
        """Our link to the 4.x peer."""
        return self.proactor.get_link(self.link_name)

    def start_ours(self) -> None:
        """Start our proactor."""
        self.proactor.startService()

    def start_peer(self) -> Deferred:
        """Start the 4.x process (fires when it has started)."""
        return self.peer.start()

    def stop(self) -> Deferred:
        """Stop both sides (the 4.x one with SIGTERM) and close the peer's log."""

        async def stop() -> None:
            try:
                await self.peer.close()
            finally:
                if self.proactor.running:
                    await self.proactor.stopService()
                self.proactor.log_capture.stop()

        return Deferred.fromCoroutine(stop())

    def describe(self) -> str:
        """Both sides (our summary and last log lines, the 4.x records and log tail), for failure messages."""
        our_log = "\n".join(list(self.proactor.log_capture.lines)[-25:])
        return f"{describe_proactors(self.proactor)}\nour log tail:\n{our_log}\n{self.peer.describe()}"

    def wait(self, condition: Any, timeout: float, what: str = "") -> Deferred:
        """Poll ``condition`` (every 20 ms) for ``timeout`` s; the failure describes both sides."""
        if what:
            condition.__name__ = what
        return await_for(condition, timeout, self.describe, reactor=self.reactor, interval=0.02)

    def wait_active(self, timeout: float = 30.0) -> Deferred:
        """Wait until both our link and the 4.x link are active."""

        def both_active() -> bool:
            return self.link.state.value == "active" and self.peer.state == "active"

        return self.wait(both_active, timeout, "both links active")

    def pause(self, seconds: float) -> Deferred:
        """A deliberate pause in a scenario (an outage, an idle period), not a wait for something."""
        return deferLater(self.reactor, seconds, lambda: None)
