"""Run a proactor application in a child process (``python -m gwproactor.runner``), to kill and restart it."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

from gwproactor.errors import GwProactorError

__all__ = ["ProactorProcess", "ProcessStartError"]


class ProcessStartError(GwProactorError):
    """The child process exited or did not report ready before the deadline; the message has its log tail."""


class _Protocol(ProcessProtocol):
    def __init__(self, log_fd: int, on_exit: Any) -> None:
        self.log_fd = log_fd
        self.on_exit = on_exit

    def outReceived(self, data: bytes) -> None:
        os.write(self.log_fd, data)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if isinstance(reason.value, (ierror.ProcessDone, ierror.ProcessTerminated)) else None
        signal_number = getattr(reason.value, "signal", None)
        self.on_exit(code, signal_number)


@attrs.define(eq=False)
class ProactorProcess:
    """A proactor application in a child process, started with ``gwproactor.runner``.

    :param app: ``package.module:name`` of the application.
    :param env: environment variables (the settings, ``GWP_*`` by default) added to ours.
    :param directory: where the log and the ready file go.
    :param reactor: the reactor that spawns and watches the process.
    :param extra_args: more ``gwproactor run`` arguments (e.g. ``["--reactor", "asyncio"]``).
    """

    app: str
    env: dict[str, str]
    directory: Path
    reactor: Any = None
    env_prefix: str = "GWP"
    extra_args: list[str] = attrs.field(factory=list)
    start_timeout: float = 20.0
    command: list[str] | None = None
    """Instead of ``python -m gwproactor.runner ...``: the full argument list (``args[0]`` is the program)."""
    ready_check: Any = None
    """With ``command``: a callable that returns True once the process is ready (default: the ready file exists)."""
    transport: Any = attrs.field(default=None, init=False)
    exit_code: int | None = attrs.field(default=None, init=False)
    exit_signal: int | None = attrs.field(default=None, init=False)
    starts: int = attrs.field(default=0, init=False)
    _exit_waiters: list[Deferred] = attrs.field(factory=list, init=False)
    _log_fd: int | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor
        self.directory = Path(self.directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def log_path(self) -> Path:
        """Where the process's stdout and stderr go (appended across restarts)."""
        return self.directory / "process.log"

    @property
    def ready_path(self) -> Path:
        return self.directory / "ready"

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self.transport is not None

    @property
    def pid(self) -> int | None:
        return self.transport.pid if self.transport is not None else None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self) -> Deferred:
        """Spawn the process; fires once it has started its proactor (it writes the ready file)."""
        if self.running:
            raise RuntimeError("process already running")
        if self.ready_path.exists():
            self.ready_path.unlink()
        self.starts += 1
        self.exit_code = self.exit_signal = None
        if self._log_fd is None:
            self._log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(self._log_fd, f"\n=== start {self.starts} ===\n".encode())
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        if self.command is not None:
            args = list(self.command)
        else:
            args = [sys.executable, "-m", "gwproactor.runner", "--app", self.app, "--env-prefix", self.env_prefix,
                    "--ready-file", str(self.ready_path), *self.extra_args]
        self.transport = self.reactor.spawnProcess(_Protocol(self._log_fd, self._exited), args[0], args,
                                                   env=env, path=str(self.directory))
        return Deferred.fromCoroutine(self._wait_ready())

    async def _wait_ready(self) -> None:
        from twisted.internet.task import deferLater

        deadline = self.reactor.seconds() + self.start_timeout
        ready = self.ready_check if self.ready_check is not None else self.ready_path.exists
        while not ready():
            if not self.running:
                raise ProcessStartError(f"{self.app} exited with {self.exit_code} before it was ready:\n{self.log_tail()}")
            if self.reactor.seconds() > deadline:
                raise ProcessStartError(f"{self.app} not ready after {self.start_timeout} s:\n{self.log_tail()}")
            await deferLater(self.reactor, 0.02, lambda: None)

    def _exited(self, code: int | None, signal_number: int | None) -> None:
        self.transport = None
        self.exit_code = code
        self.exit_signal = signal_number
        waiters, self._exit_waiters = self._exit_waiters, []
        for d in waiters:
            d.callback(code)

    def wait_exit(self) -> Deferred:
        """Fires with the exit code (None when killed by a signal) once the process has exited."""
        d: Deferred = Deferred()
        if not self.running:
            d.callback(self.exit_code)
        else:
            self._exit_waiters.append(d)
        return d

    def kill(self) -> Deferred:
        """SIGKILL the process (a crash); fires when it has exited."""
        return self.signal(signal.SIGKILL)

    def terminate(self) -> Deferred:
        """SIGTERM (graceful shutdown); fires with the exit code."""
        return self.signal(signal.SIGTERM)

    def signal(self, signum: int) -> Deferred:
        """Send ``signum``; fires when the process has exited."""
        d = self.wait_exit()
        if self.running:
            try:
                os.kill(self.transport.pid, signum)
            except ProcessLookupError:
                pass
        return d

    def close(self) -> Deferred:
        """Kill the process if it still runs and close the log."""
        d = self.kill() if self.running else self.wait_exit()

        def closed(result: Any) -> Any:
            if self._log_fd is not None:
                os.close(self._log_fd)
                self._log_fd = None
            return result

        return d.addBoth(closed)
