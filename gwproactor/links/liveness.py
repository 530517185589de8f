"""Liveness timers of one link: a heartbeat ping when we have sent nothing for a while, and a receive deadline.

The heartbeat keeps an idle but healthy link active on the peer's side; the receive deadline notices a silent peer
even while we keep sending.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from gwproactor.errors import ConfigError

__all__ = ["Liveness"]

_log = Logger()

# Timers fire this close to their due time count as due (guards against float
# rounding rescheduling a timer for a delay that rounds to "now" forever).
_EPSILON = 1e-9


@attrs.define(eq=False)
class Liveness:
    """The heartbeat and receive-deadline timers of one link.

    * **Heartbeat**: when nothing was sent on the link for ``heartbeat_s``
      seconds, ``send_ping()`` is called.  Call :meth:`sent` for every frame sent
      on the link: it only records the time (cheap, per frame); the heartbeat
      timer looks at that time when it fires and sleeps again for the remainder.
    * **Receive deadline**: when nothing was received from the peer for
      ``receive_deadline_s`` seconds, ``on_deadline()`` is called once.  Only
      :meth:`received` (call it for every frame from the peer) resets it; our own
      sending never does, so a dead peer is noticed while we stream.  After the
      deadline fired it is re-armed by the next :meth:`received` only.
    * :meth:`ping_now` sends a ping at once (after an ack timeout, or when the
      link becomes fully subscribed, to find out quickly whether the peer is there).

    Both timers run between :meth:`start` and :meth:`stop`; :meth:`stop` leaves no
    delayed call behind.  Exceptions from ``send_ping`` / ``on_deadline`` are
    logged and do not stop the timers.

    :param clock: provides ``seconds`` and ``callLater``.
    :param heartbeat_s: idle time before a ping; positive.
    :param receive_deadline_s: silence from the peer before ``on_deadline``; positive
        (make it longer than the *peer's* heartbeat interval).
    """

    clock: IReactorTime
    heartbeat_s: float
    receive_deadline_s: float
    send_ping: Callable[[], None]
    on_deadline: Callable[[], None]
    pings_sent: int = attrs.field(default=0, init=False)
    """Pings sent by the heartbeat or :meth:`ping_now`."""
    deadlines_expired: int = attrs.field(default=0, init=False)
    """How many times the receive deadline fired."""
    _running: bool = attrs.field(default=False, init=False)
    _last_sent: float = attrs.field(default=0.0, init=False)
    _last_received: float = attrs.field(default=0.0, init=False)
    _heartbeat_call: IDelayedCall | None = attrs.field(default=None, init=False)
    _deadline_call: IDelayedCall | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if not self.heartbeat_s > 0 or not self.receive_deadline_s > 0:
            raise ConfigError(
                "heartbeat_s and receive_deadline_s must be positive numbers of seconds, "
                f"got {self.heartbeat_s!r} and {self.receive_deadline_s!r}"
            )

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    @property
    def deadline_armed(self) -> bool:
        """True while the receive deadline is counting down (running and not yet expired)."""
        return self._deadline_call is not None

    @property
    def last_sent(self) -> float:
        """Clock time of the last frame sent (or of :meth:`start`)."""
        return self._last_sent

    @property
    def last_received(self) -> float:
        """Clock time of the last frame received (or of :meth:`start`)."""
        return self._last_received

    def start(self) -> None:
        """Start both timers, counting from now.  No-op if already running."""
        if self._running:
            return
        self._running = True
        now = self.clock.seconds()
        self._last_sent = now
        self._last_received = now
        self._heartbeat_call = self.clock.callLater(self.heartbeat_s, self._heartbeat_due)
        self._deadline_call = self.clock.callLater(self.receive_deadline_s, self._deadline_due)

    def stop(self) -> None:
        """Cancel both timers.  No-op if not running."""
        self._running = False
        for call in (self._heartbeat_call, self._deadline_call):
            if call is not None and call.active():
                call.cancel()
        self._heartbeat_call = None
        self._deadline_call = None

    def sent(self) -> None:
        """Record that a frame was sent on the link (postpones the heartbeat)."""
        self._last_sent = self.clock.seconds()

    def received(self) -> None:
        """Record that a frame arrived from the peer (resets, or re-arms, the receive deadline)."""
        self._last_received = self.clock.seconds()
        if self._running and self._deadline_call is None:
            self._deadline_call = self.clock.callLater(self.receive_deadline_s, self._deadline_due)

    def ping_now(self) -> None:
        """Send a ping at once (when running); the heartbeat then counts from now."""
        if self._running:
            self._ping()

    # -- internals -----------------------------------------------------------

    def _ping(self) -> None:
        self.pings_sent += 1
        self._last_sent = self.clock.seconds()
        try:
            self.send_ping()
        except Exception:
            _log.failure("send_ping failed")

    def _heartbeat_due(self) -> None:
        self._heartbeat_call = None
        if not self._running:
            return
        now = self.clock.seconds()
        remaining = self._last_sent + self.heartbeat_s - now
        if remaining <= _EPSILON:
            self._ping()
            remaining = self.heartbeat_s
            if not self._running or self._heartbeat_call is not None:
                return  # send_ping stopped (or restarted) us
        self._heartbeat_call = self.clock.callLater(remaining, self._heartbeat_due)

    def _deadline_due(self) -> None:
        self._deadline_call = None
        if not self._running:
            return
        now = self.clock.seconds()
        remaining = self._last_received + self.receive_deadline_s - now
        if remaining > _EPSILON:
            self._deadline_call = self.clock.callLater(remaining, self._deadline_due)
            return
        self.deadlines_expired += 1
        try:
            self.on_deadline()
        except Exception:
            _log.failure("on_deadline callback failed")
