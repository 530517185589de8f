"""systemd integration: ``sd_notify`` over the ``NOTIFY_SOCKET`` datagram socket, and a watchdog service.

No subprocess, no thread: datagrams go out on a non-blocking ``AF_UNIX`` socket from the reactor thread.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Iterable

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from gwproactor.ops.lag import ReactorLag

#: At most one "pat withheld" log line per this many seconds (per reason kind).
WITHHELD_LOG_INTERVAL_S = 30.0
#: Default seconds between periodic STATUS= lines (they also go out on change).
STATUS_INTERVAL_S = 10.0
#: How often the status text is checked for a change.
STATUS_CHECK_S = 1.0
#: Default lag threshold cap: pats are withheld while the reactor lags this much (or a quarter of the interval).
LAG_THRESHOLD_CAP_S = 1.0

_FROM_ENV: Any = object()


def notify_socket_from_env(environ: Any = None) -> str | None:
    """The ``NOTIFY_SOCKET`` path from the environment, or None when unset or empty."""
    value = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    return value or None


def watchdog_usec_from_env(environ: Any = None, pid: int | None = None) -> int | None:
    """``WATCHDOG_USEC`` as an int, or None when unset, invalid, or meant for another process.

    ``WATCHDOG_PID``, when set, must equal our pid (``pid``, default :func:`os.getpid`).
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid:
        try:
            if int(watchdog_pid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    return usec if usec > 0 else None


def _socket_address(path: str) -> str | bytes:
    """The ``sendto`` address for ``path``: ``@name`` is the abstract-namespace socket ``\\0name``."""
    if path.startswith("@"):
        return b"\0" + path[1:].encode("utf-8")
    return path


@attrs.define(eq=False)
class Notifier:
    """Sends ``sd_notify`` datagrams to ``path`` (default: ``$NOTIFY_SOCKET``).

    Every method is a no-op returning False when there is no socket path (not
    run by systemd).  Send errors are counted and logged (rate-limited), never
    raised.

    :param path: a filesystem path or an abstract-namespace name starting with ``@``.
    """

    path: str | None = attrs.field(factory=notify_socket_from_env)
    #: Datagrams sent / that failed to send.
    sent: int = attrs.field(default=0, init=False)
    errors: int = attrs.field(default=0, init=False)
    _socket: socket.socket | None = attrs.field(default=None, init=False, repr=False)
    _error_logged: bool = attrs.field(default=False, init=False, repr=False)
    log: Logger = attrs.field(factory=lambda: Logger(namespace="gwproactor.ops.systemd"), init=False, repr=False)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return bool(self.path)

    def notify(self, **fields: Any) -> bool:
        """Send ``KEY=value`` lines in one datagram; keys are upper-cased (``status=`` → ``STATUS=``).

        Newlines in values are replaced by spaces.  Returns True if the datagram was sent.
        """
        if not fields:
            raise ValueError("notify needs at least one field, e.g. notify(READY=1)")
        lines = []
        for key, value in fields.items():
            text = str(int(value) if isinstance(value, bool) else value).replace("\n", " ")
            lines.append(f"{key.upper()}={text}")
        return self.send("\n".join(lines))

    def send(self, text: str) -> bool:
        """Send ``text`` as one datagram (no-op when disabled); returns True if sent."""
        if not self.path:
            return False
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto(text.encode("utf-8"), _socket_address(self.path))
        except OSError as e:
            self.errors += 1
            if not self._error_logged:
                self._error_logged = True
                self.log.warn(
                    "sd_notify to {path} failed: {error} (further failures are counted, not logged)",
                    path=self.path,
                    error=str(e),
                )
            return False
        self._error_logged = False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (with ``STATUS=`` if given)."""
        return self.notify(READY=1) if status is None else self.notify(READY=1, STATUS=status)

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1`` (with ``STATUS=`` if given)."""
        return self.notify(STOPPING=1) if status is None else self.notify(STOPPING=1, STATUS=status)

    def status(self, text: str) -> bool:
        """``STATUS=text``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: one keep-alive pat."""
        return self.notify(WATCHDOG=1)

    def close(self) -> None:
        """Close the socket (a later send opens a new one)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class IWatchable(Interface):
    """Something the systemd watchdog waits on: it must have patted within ``timeout_s``."""

    name = Attribute("Name used in logs and stats.")
    timeout_s = Attribute("Seconds after the last pat (or after the watchdog started) before it counts as stuck.")
    last_pat = Attribute("Clock time (seconds) of the last pat, or None if it never patted.")


@implementer(IWatchable)
@attrs.define(eq=False)
class Watch:
    """A watched actor's pat: call it (or :meth:`pat`) at least every ``timeout_s`` seconds."""

    name: str
    timeout_s: float
    clock: Any = attrs.field(repr=False)
    last_pat: float | None = attrs.field(default=None)

    def pat(self) -> None:
        """Record that the watched thing is alive now."""
        self.last_pat = self.clock.seconds()

    __call__ = pat


def link_status(proactor: Any) -> Callable[[], str]:
    """A ``status`` callable for :class:`SystemdService`: ``"links: a=active, b=awaiting_peer"``."""

    def status() -> str:
        states = proactor.link_states()
        if not states:
            return "running (no links)"
        return "links: " + ", ".join(f"{name}={state}" for name, state in sorted(states.items()))

    return status


class SystemdService(Service):
    """Tells systemd when the process is ready, keeps its watchdog fed while healthy, and reports status.

    - ``READY=1`` once ``ready`` fires (at start when ``ready`` is None).
    - ``WATCHDOG=1`` every ``watchdog_usec / 2``, but only while the reactor lag
      (:meth:`ReactorLag.lag_now`) is below ``lag_threshold_s`` and every watched
      object has patted within its ``timeout_s``.  Withheld pats are logged
      (rate-limited) with the reason; systemd then kills and restarts the process.
    - ``STATUS=<status()>`` when the text changes (checked every second) and at
      least every ``status_interval_s``.
    - ``STOPPING=1`` on :meth:`stopService`.

    :param reactor: provides ``seconds`` / ``callLater`` (a Clock in tests).
    :param notifier: a :class:`Notifier` (default: one on ``$NOTIFY_SOCKET``).
    :param ready: a Deferred, or a callable returning one (or a plain value).
    :param status: returns the current status text (e.g. :func:`link_status`).
    :param monitor: the :class:`ReactorLag` to consult (default: a new one);
        started here if it is not running, and then stopped here too.
    :param watched: :class:`IWatchable` objects; add more with :meth:`watch`.
    :param watchdog_usec: the systemd watchdog interval; default ``$WATCHDOG_USEC``
        (ignored when ``$WATCHDOG_PID`` names another process); None disables pats.
    :param lag_threshold_s: default ``min(1 s, interval / 4)``.
    """

    log = Logger(namespace="gwproactor.ops.systemd")

    def __init__(
        self,
        reactor: Any,
        notifier: Notifier | None = None,
        ready: Any = None,
        status: Callable[[], str] | None = None,
        monitor: ReactorLag | None = None,
        watched: Iterable[Any] = (),
        watchdog_usec: Any = _FROM_ENV,
        *,
        lag_threshold_s: float | None = None,
        status_interval_s: float = STATUS_INTERVAL_S,
        name: str = "systemd",
    ) -> None:
        self.name = name
        self.reactor = reactor
        self.notifier = notifier if notifier is not None else Notifier()
        self._ready = ready
        self._status = status
        self.monitor = monitor if monitor is not None else ReactorLag(reactor)
        self.watched: list[Any] = list(watched)
        self.watchdog_usec = watchdog_usec_from_env() if watchdog_usec is _FROM_ENV else watchdog_usec
        self.pat_interval_s = self.watchdog_usec / 2_000_000 if self.watchdog_usec else None
        if lag_threshold_s is None:
            lag_threshold_s = LAG_THRESHOLD_CAP_S
            if self.watchdog_usec:
                lag_threshold_s = min(LAG_THRESHOLD_CAP_S, self.watchdog_usec / 4_000_000)
        self.lag_threshold_s = lag_threshold_s
        self.status_interval_s = status_interval_s
        self.is_ready = False
        self.pats_sent = 0
        self.pats_withheld = 0
        self.last_withheld_reason: str | None = None
        self._owns_monitor = False
        self._started_at: float | None = None
        self._watchdog_loop: LoopingCall | None = None
        self._status_loop: LoopingCall | None = None
        self._last_status: str | None = None
        self._last_status_at: float | None = None
        self._withheld_logged_at: float | None = None
        self._withholding = False
        self._ready_d: Deferred | None = None

    def watch(self, name: str, timeout_s: float) -> Watch:
        """Watch something that must pat at least every ``timeout_s``; returns its (callable) :class:`Watch`.

        It has ``timeout_s`` from the watchdog start (or from now, if later) for its first pat.
        """
        w = Watch(name, timeout_s, self.reactor)
        if self.running:
            w.pat()
        self.watched.append(w)
        return w

    # --- lifecycle -----------------------------------------------------------

    def startService(self) -> None:
        """Start the lag monitor, the watchdog and status timers, and wait for ``ready``."""
        super().startService()
        self._started_at = self.reactor.seconds()
        if not self.monitor.running:
            self.monitor.start()
            self._owns_monitor = True
        ready = self._ready
        if callable(ready):
            d = maybeDeferred(ready)
        elif isinstance(ready, Deferred):
            d = Deferred()
            ready.addBoth(self._pass_on, d)
        else:
            d = Deferred()
            d.callback(ready)
        self._ready_d = d
        d.addCallbacks(self._became_ready, self._ready_failed)
        if self.pat_interval_s:
            self._watchdog_loop = LoopingCall(self._watchdog_tick)
            self._watchdog_loop.clock = self.reactor
            self._watchdog_loop.start(self.pat_interval_s, now=True)

    @staticmethod
    def _pass_on(result: Any, d: Deferred) -> Any:
        """Fire our own Deferred from a shared one, leaving the shared one's result untouched."""
        if not d.called:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)
        return result

    def _became_ready(self, _: Any) -> None:
        if not self.running:
            return
        self.is_ready = True
        text = self._status_text()
        if text is None:
            self.notifier.ready()
        else:
            self.notifier.ready(text)
            self._last_status, self._last_status_at = text, self.reactor.seconds()
        self.log.info("ready; told systemd (socket {path})", path=self.notifier.path)
        if self._status is not None:
            self._status_loop = LoopingCall(self.update_status)
            self._status_loop.clock = self.reactor
            self._status_loop.start(STATUS_CHECK_S, now=False)

    def _ready_failed(self, failure: Failure) -> None:
        if not self.running:
            return
        self.log.failure("startup did not complete; READY=1 not sent", failure)
        self.notifier.status(f"startup failed: {failure.getErrorMessage()}")

    def stopService(self) -> None:
        """Send ``STOPPING=1`` and stop the timers (and the lag monitor if it was started here)."""
        super().stopService()
        for loop in (self._watchdog_loop, self._status_loop):
            if loop is not None and loop.running:
                loop.stop()
        self._watchdog_loop = self._status_loop = None
        if self._owns_monitor:
            self.monitor.stop()
            self._owns_monitor = False
        self.notifier.stopping()
        self.notifier.close()

    # --- status ----------------------------------------------------------------

    def _status_text(self) -> str | None:
        if self._status is None:
            return None
        try:
            return str(self._status())
        except Exception:
            self.log.failure("the status callable failed")
            return None

    def update_status(self, force: bool = False) -> None:
        """Send ``STATUS=`` if the text changed, ``force`` is set, or ``status_interval_s`` passed."""
        text = self._status_text()
        if text is None:
            return
        now = self.reactor.seconds()
        due = self._last_status_at is None or now - self._last_status_at >= self.status_interval_s - 1e-6
        if force or due or text != self._last_status:
            self.notifier.status(text)
            self._last_status, self._last_status_at = text, now

    # --- watchdog --------------------------------------------------------------

    def withhold_reason(self) -> str | None:
        """Why a pat would be withheld now (None when healthy)."""
        lag = self.monitor.lag_now()
        if lag >= self.lag_threshold_s:
            return f"reactor lag {lag:.3f} s >= {self.lag_threshold_s:.3f} s"
        now = self.reactor.seconds()
        stuck = []
        for w in self.watched:
            last = w.last_pat
            if last is None:
                last = self._started_at if self._started_at is not None else now
            age = now - last
            if age > w.timeout_s:
                stuck.append(f"{w.name} silent {age:.1f} s > {w.timeout_s:g} s")
        if stuck:
            return "not patted: " + "; ".join(stuck)
        return None

    def _watchdog_tick(self) -> None:
        reason = self.withhold_reason()
        if reason is None:
            if self._withholding:
                self.log.info("watchdog pats resumed after {withheld} withheld", withheld=self.pats_withheld)
                self._withholding = False
            self.notifier.watchdog()
            self.pats_sent += 1
            return
        self.pats_withheld += 1
        self.last_withheld_reason = reason
        now = self.reactor.seconds()
        if (
            not self._withholding
            or self._withheld_logged_at is None
            or now - self._withheld_logged_at >= WITHHELD_LOG_INTERVAL_S
        ):
            self.log.warn(
                "systemd watchdog pat withheld: {reason} ({withheld} withheld so far)",
                reason=reason,
                withheld=self.pats_withheld,
            )
            self._withheld_logged_at = now
        self._withholding = True

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the watchdog and notification counters."""
        return {
            "notify_socket": self.notifier.path,
            "ready": self.is_ready,
            "watchdog_interval_s": self.pat_interval_s,
            "lag_threshold_s": self.lag_threshold_s,
            "pats_sent": self.pats_sent,
            "pats_withheld": self.pats_withheld,
            "last_withheld_reason": self.last_withheld_reason,
            "notify_sent": self.notifier.sent,
            "notify_errors": self.notifier.errors,
            "lag": self.monitor.stats(),
            "watched": [w.name for w in self.watched],
        }
