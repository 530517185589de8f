"""Private Mosquitto brokers for live tests: one process per broker, on free loopback ports, driven from the reactor.

A :class:`PrivateBroker` has a plain listener and a TLS listener that requires client certificates signed by its
test CA. It never touches a shared broker (such as one on port 1883).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer, error, protocol, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import ITCPTransport
from twisted.logger import Logger

from gwproactor.errors import GwProactorError
from gwproactor_test.certs import CertPair, TestCerts, make_test_certs

__all__ = [
    "MOSQUITTO_MISSING",
    "BrokerStartError",
    "PrivateBroker",
    "find_dynsec_plugin",
    "find_mosquitto",
    "free_port",
]

MOSQUITTO_MISSING = (
    "mosquitto is not installed: install it with `sudo apt-get install mosquitto` (Debian/Ubuntu) "
    "or `brew install mosquitto` (macOS)"
)
"""Message used when live tests cannot find a ``mosquitto`` binary."""

_MOSQUITTO_FALLBACKS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
_DYNSEC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
    "/opt/homebrew/lib/mosquitto_dynamic_security.so",
    "/usr/local/opt/mosquitto/lib/mosquitto_dynamic_security.so",
)
_LOG_TAIL_LINES = 30
_POLL_INTERVAL = 0.05

log = Logger()


class BrokerStartError(GwProactorError):
    """A private Mosquitto broker did not start (or restart); the message carries the tail of its log."""


def find_mosquitto() -> str | None:
    """Return the path of a ``mosquitto`` executable (``PATH`` first, then the usual sbin paths), or ``None``.

    When the environment variable ``GWPROACTOR_MOSQUITTO`` is set, only that path is considered (``None`` if it
    is not an executable file).
    """
    override = os.environ.get("GWPROACTOR_MOSQUITTO")
    if override:
        return override if os.path.isfile(override) and os.access(override, os.X_OK) else None
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _MOSQUITTO_FALLBACKS:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_dynsec_plugin() -> str | None:
    """Return the path of Mosquitto's dynamic security plugin (needed for ``deny_subscribe``), or ``None``."""
    for candidate in _DYNSEC_CANDIDATES:
        if os.path.isfile(candidate):
            return candidate
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _escape_endpoint_value(value: str) -> str:
    """Escape a value for a Twisted endpoint description string."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class _MosquittoProcess(protocol.ProcessProtocol):
    """Copies the broker's output into its log file and reports the process's end."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.ended: Deferred[None] = Deferred()
        self.exited = False
        self.reason: Any = None
        self._file = open(log_path, "ab")  # noqa: SIM115 - closed in processEnded

    def childDataReceived(self, childFD: int, data: bytes) -> None:  # noqa: N802, N803 - Twisted API
        if not self._file.closed:
            self._file.write(data)
            self._file.flush()

    def processEnded(self, reason: Any) -> None:  # noqa: N802 - Twisted API
        self.exited = True
        self.reason = reason
        self._file.close()
        self.ended.callback(None)


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(path).absolute()


@attrs.define(eq=False)
class PrivateBroker:
    """A Mosquitto broker owned by one test (or one test session).

    Ports are chosen at construction and kept for the broker's life, across :meth:`restart`.

    :param directory: where the generated configuration, ACL file and log go (created if missing; made
        absolute, since Mosquitto runs with it as working directory).
    :param certs: certificates for the TLS listener; generated into ``<directory>/certs`` when ``None``.
    :param reactor: the reactor used to spawn and watch the process (the global one when ``None``).
    :param acl: text of a Mosquitto ACL file. Lines before any ``user`` line apply to anonymous clients of the
        plain listener; TLS clients are named by their certificate CN (``use_identity_as_username``).
        Mosquitto's ACL file only filters PUBLISH delivery; it never refuses a SUBSCRIBE (use ``deny_subscribe``).
    :param extra_config: lines appended to the generated configuration.
    :param deny_subscribe: topic patterns whose subscription every client is refused (SUBACK 0x80), for
        anonymous plain-listener clients and the TLS test clients. Uses Mosquitto's dynamic security plugin
        (see :func:`find_dynsec_plugin`); cannot be combined with ``acl``.
    :param mosquitto: path of the ``mosquitto`` executable (found with :func:`find_mosquitto` when ``None``).
    :param start_timeout: seconds :meth:`start` (and :meth:`restart`'s retries) may take before failing.
    :param stop_timeout: seconds :meth:`stop` waits after SIGTERM before sending SIGKILL.
    :ivar start_count: how many processes were spawned (failed attempts included).
    :ivar host: always ``"127.0.0.1"``.
    :ivar port: the plain (anonymous) listener.
    :ivar tls_port: the TLS listener; it requires a client certificate signed by ``certs.ca``.
    """

    directory: Path = attrs.field(converter=_absolute)
    certs: TestCerts | None = None
    reactor: Any = None
    acl: str | None = None
    extra_config: str = ""
    mosquitto: str | None = None
    deny_subscribe: Sequence[str] = attrs.field(default=(), converter=tuple)
    host: str = attrs.field(init=False, default="127.0.0.1")
    port: int = attrs.field(init=False, default=0)
    tls_port: int = attrs.field(init=False, default=0)
    start_timeout: float = 10.0
    stop_timeout: float = 5.0
    _process: _MosquittoProcess | None = attrs.field(init=False, default=None)
    _log_offset: int = attrs.field(init=False, default=0)
    _transport: Any = attrs.field(init=False, default=None)
    start_count: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.reactor is None:
            self.reactor = _default_reactor()
        if self.certs is None:
            self.certs = make_test_certs(self.directory / "certs")
        self.port = free_port(self.host)
        self.tls_port = free_port(self.host)
        while self.tls_port == self.port:
            self.tls_port = free_port(self.host)

    # ------------------------------------------------------------------ paths and strings

    @property
    def log_path(self) -> Path:
        """The broker's log (everything the process wrote to stdout/stderr, across restarts)."""
        return self.directory / "mosquitto.log"

    @property
    def config_path(self) -> Path:
        """The generated ``mosquitto.conf``."""
        return self.directory / "mosquitto.conf"

    @property
    def acl_path(self) -> Path:
        """Where the ACL text is written when ``acl`` is given."""
        return self.directory / "acl"

    @property
    def dynsec_path(self) -> Path:
        """Where the dynamic security configuration is written when ``deny_subscribe`` is given."""
        return self.directory / "dynamic-security.json"

    @property
    def running(self) -> bool:
        """``True`` while the broker process exists (it may not yet accept connections)."""
        return self._process is not None and not self._process.exited

    def endpoint(self, tls: bool = False, client: CertPair | None = None) -> str:
        """Return a Twisted client endpoint description for one of the listeners.

        :param tls: describe the TLS listener (trusting ``certs.ca``) instead of the plain one.
        :param client: the client certificate for TLS (``certs.client`` when ``None``).
        """
        if not tls:
            return f"tcp:host={self.host}:port={self.port}"
        assert self.certs is not None
        pair = client if client is not None else self.certs.client
        return (
            f"tls:host={self.host}:port={self.tls_port}"
            f":trustRoots={_escape_endpoint_value(str(self.certs.trust_dir))}"
            f":certificate={_escape_endpoint_value(str(pair.cert_path))}"
            f":privateKey={_escape_endpoint_value(str(pair.key_path))}"
        )

    def render_config(self) -> str:
        """Return the text of the Mosquitto configuration for this broker."""
        assert self.certs is not None
        lines = [
            "# generated by gwproactor_test.broker.PrivateBroker",
            "per_listener_settings false",
            "persistence false",
            "set_tcp_nodelay true",
            "allow_anonymous true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_type subscribe",
            "log_type unsubscribe",
            "connection_messages true",
            "log_timestamp true",
        ]
        if os.geteuid() == 0:
            # Stay root so the 0600 key files stay readable (Mosquitto would drop to user "mosquitto").
            lines.append("user root")
        if self.acl is not None:
            lines.append(f"acl_file {self.acl_path}")
        if self.deny_subscribe:
            plugin = find_dynsec_plugin() or "mosquitto_dynamic_security.so"
            lines.append(f"plugin {plugin}")
            lines.append(f"plugin_opt_config_file {self.dynsec_path}")
        lines += [
            "",
            f"listener {self.port} {self.host}",
            "",
            f"listener {self.tls_port} {self.host}",
            f"cafile {self.certs.ca.cert_path}",
            f"certfile {self.certs.broker.cert_path}",
            f"keyfile {self.certs.broker.key_path}",
            "require_certificate true",
            "use_identity_as_username true",
            "",
            self.extra_config,
            "",
        ]
        return "\n".join(lines)

    def render_dynsec(self) -> str:
        """Return the dynamic security JSON that implements ``deny_subscribe``."""
        assert self.certs is not None
        tls_users = sorted(
            {
                pair.load_cert().subject.rfc4514_string().removeprefix("CN=")
                for pair in (self.certs.client, self.certs.other_client)
            }
        )
        config = {
            "defaultACLAccess": {
                "publishClientSend": True,
                "publishClientReceive": True,
                "subscribe": True,
                "unsubscribe": True,
            },
            "clients": [{"username": user, "roles": [{"rolename": "deny-subscribe"}]} for user in tls_users],
            "groups": [{"groupname": "anonymous", "roles": [{"rolename": "deny-subscribe"}], "clients": []}],
            "roles": [
                {
                    "rolename": "deny-subscribe",
                    "acls": [
                        {"acltype": "subscribePattern", "topic": topic, "priority": 0, "allow": False}
                        for topic in self.deny_subscribe
                    ],
                }
            ],
            "anonymousGroup": "anonymous",
        }
        return json.dumps(config, indent=2)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the broker log (empty if there is none)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Deferred[None]:
        """Spawn Mosquitto; fire when both listeners accept TCP connections.

        Errbacks with :class:`BrokerStartError` (carrying the log tail) if the process exits early or the
        listeners are not up within ``start_timeout`` seconds.
        """
        return Deferred.fromCoroutine(self._start(retry_until=None))

    def stop(self) -> Deferred[None]:
        """Send SIGTERM, wait for the process to exit (SIGKILL after ``stop_timeout``); fire when it is gone."""
        return Deferred.fromCoroutine(self._stop())

    def kill(self) -> Deferred[None]:
        """Send SIGKILL; fire when the process is gone (at once if it is not running)."""
        if not self.running:
            return defer.succeed(None)
        assert self._process is not None
        ended = self._exit_deferred(self._process)
        self._signal("KILL")
        return ended

    def restart(self) -> Deferred[None]:
        """Stop then start again on the same ports, retrying while a port is briefly unavailable."""

        async def restart() -> None:
            await self._stop()
            await self._start(retry_until=self.reactor.seconds() + self.start_timeout)

        return Deferred.fromCoroutine(restart())

    # ------------------------------------------------------------------ internals

    def _exit_deferred(self, process: _MosquittoProcess) -> Deferred[None]:
        if process.exited:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()

        def tell(result: object) -> object:
            d.callback(None)
            return result

        process.ended.addBoth(tell)
        return d

    def _signal(self, name: str) -> None:
        try:
            self._transport.signalProcess(name)
        except error.ProcessExitedAlready:
            pass

    def _write_files(self) -> None:
        if self.acl is not None:
            self.acl_path.write_text(self.acl)
        if self.deny_subscribe:
            if self.acl is not None:
                raise BrokerStartError("deny_subscribe uses the dynamic security plugin; it excludes acl")
            if find_dynsec_plugin() is None:
                raise BrokerStartError(
                    "deny_subscribe needs mosquitto_dynamic_security.so, which was not found; "
                    "install the full mosquitto package"
                )
            self.dynsec_path.write_text(self.render_dynsec())
        self.config_path.write_text(self.render_config())

    def _spawn(self) -> _MosquittoProcess:
        executable = self.mosquitto or find_mosquitto()
        if executable is None:
            raise BrokerStartError(MOSQUITTO_MISSING)
        self._write_files()
        try:
            self._log_offset = self.log_path.stat().st_size
        except OSError:
            self._log_offset = 0
        process = _MosquittoProcess(self.log_path)
        self._process = process
        self.start_count += 1
        log.info(
            "starting mosquitto on {host} ports {port} and {tls_port}",
            host=self.host,
            port=self.port,
            tls_port=self.tls_port,
        )
        try:
            self._transport = self.reactor.spawnProcess(
                process,
                executable,
                [executable, "-c", str(self.config_path)],
                env=dict(os.environ),
                path=str(self.directory),
                childFDs={0: "w", 1: "r", 2: "r"},
            )
        except Exception as e:
            process.processEnded(None)
            raise BrokerStartError(f"could not spawn {executable}: {e}") from e
        # Never leave an orphan broker behind if the reactor stops while it runs.
        trigger = self.reactor.addSystemEventTrigger("before", "shutdown", self._kill_at_shutdown)

        def forget_trigger(result: object) -> object:
            self.reactor.removeSystemEventTrigger(trigger)
            return result

        process.ended.addBoth(forget_trigger)
        return process

    def _kill_at_shutdown(self) -> Deferred[None] | None:
        return self.kill() if self.running else None

    async def _accepts(self, port: int) -> bool:
        endpoint = TCP4ClientEndpoint(self.reactor, self.host, port, timeout=2)
        try:
            proto = await endpoint.connect(protocol.Factory.forProtocol(protocol.Protocol))
        except Exception:
            return False
        assert isinstance(proto, protocol.Protocol)
        ITCPTransport(proto.transport).abortConnection()
        return True

    async def _start(self, retry_until: float | None) -> None:
        if self.running:
            raise BrokerStartError(f"mosquitto is already running on port {self.port}")
        deadline = self.reactor.seconds() + self.start_timeout
        while True:
            process = self._spawn()
            problem = await self._wait_ready(process, deadline)
            if problem is None:
                log.info("mosquitto ready on port {port}", port=self.port)
                return
            if process.exited and retry_until is not None and self.reactor.seconds() < retry_until:
                # A port may still be held for a moment after the previous process exited.
                await task.deferLater(self.reactor, 0.2, lambda: None)
                continue
            if not process.exited:
                self._signal("KILL")
                await self._exit_deferred(process)
            raise BrokerStartError(
                f"mosquitto did not start on {self.host} ports {self.port}/{self.tls_port}: {problem}; "
                f"log tail ({self.log_path}):\n{self.log_tail()}"
            )

    async def _wait_ready(self, process: _MosquittoProcess, deadline: float) -> str | None:
        """Return ``None`` once both listeners accept, else a description of what went wrong."""
        while True:
            if process.exited:
                return f"the process exited ({process.reason.value})"
            # "running" is logged after every listener is open: checking it first keeps us from mistaking
            # another process that grabbed one of our ports for our broker.
            if (
                self._announced_running()
                and await self._accepts(self.port)
                and await self._accepts(self.tls_port)
            ):
                if not process.exited:
                    return None
                continue
            if self.reactor.seconds() >= deadline:
                return f"the listeners did not accept connections within {self.start_timeout} s"
            await task.deferLater(self.reactor, _POLL_INTERVAL, lambda: None)

    def _announced_running(self) -> bool:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return b" running" in f.read()
        except OSError:
            return False

    async def _stop(self) -> None:
        if not self.running:
            return
        assert self._process is not None
        process = self._process
        ended = self._exit_deferred(process)
        self._signal("TERM")
        timer = self.reactor.callLater(self.stop_timeout, self._signal, "KILL")
        try:
            await ended
        finally:
            if timer.active():
                timer.cancel()
        log.info("mosquitto on port {port} stopped", port=self.port)

