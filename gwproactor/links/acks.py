"""Ack tracking for one link: a Deferred with a timeout per ack-required message, and round-trip statistics.

Which Deferred fires, when, and with what, is described on :class:`AckTracker`.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gwproactor.errors import AckTimeout, ConfigError

__all__ = ["AckTracker", "RttStats"]

_log = Logger()


@attrs.frozen
class RttStats:
    """Round-trip times (send → ack) in seconds.

    ``count`` counts every measured ack since the tracker was made; ``last``,
    ``p50`` and ``p99`` are ``None`` until the first one.  The percentiles are
    nearest-rank percentiles over the most recent samples (a bounded reservoir).
    """

    count: int
    last: float | None
    p50: float | None
    p99: float | None


def _cancel(entry: _InFlight) -> None:
    """Stop ``entry``'s ack timeout if it is still pending."""
    call, entry.call = entry.call, None
    if call is not None and call.active():
        call.cancel()


def _nearest_rank(ordered: list[float], percent: float) -> float:
    rank = max(1, math.ceil(percent / 100.0 * len(ordered)))
    return ordered[rank - 1]


@attrs.define(eq=False)
class _InFlight:
    message_id: str
    sent_at: float
    tag: object = None
    call: IDelayedCall | None = None  # the ack timeout
    waiters: list[Deferred[float]] = attrs.field(factory=list)
    abandoned: bool = False


@attrs.define(eq=False)
class AckTracker:
    """Deferreds that fire when the peer acks a message, or fail when it does not in time.

    One tracker per link; messages are keyed by their ``MessageId``.

    * :meth:`expect` returns a Deferred.  It fires with the round-trip time in
      seconds when :meth:`acked` is called for that id, errbacks with
      :class:`~gwproactor.errors.AckTimeout` after ``timeout`` seconds without an
      ack (and ``on_timeout(message_id, tag)`` is called first, so the link can leave
      ``active`` before anyone reacts to the failure), or errbacks with the
      exception given to :meth:`fail_all` (typically
      :class:`~gwproactor.errors.LinkDown`).
    * **The caller owns the returned Deferred and must consume its failure**
      (``d.addErrback(lambda f: f.trap(AckTimeout, LinkDown))`` or equivalent);
      the tracker itself never leaves an unhandled failure behind, so
      timeouts and :meth:`fail_all` produce no "Unhandled error in Deferred"
      logs for callers that do.
    * Cancelling the returned Deferred means "I no longer care": that caller is
      forgotten, and when no caller is left the id is no longer tracked (a later
      ack for it counts as unknown).
    * :meth:`expect` for an id already in flight (the message was sent again
      before its ack) returns a *new* Deferred that settles together with the
      first one; the timeout still runs from the first :meth:`expect` and the
      round-trip time is measured from it too.  Counted in ``duplicate_expects``.

    Counters: ``acked_count`` (acks matched in time; ``"acked"`` in :meth:`stats`), ``timeouts``, ``late_acks`` (an ack
    for an id that timed out or was failed, remembered for the last
    ``late_window`` such ids; the first such ack only), ``unknown_acks`` (any
    other ack, duplicates included), ``failed`` (Deferreds settled by
    :meth:`fail_all`).

    :param clock: provides ``seconds`` and ``callLater`` (a reactor, or a ``Clock`` in tests).
    :param timeout: seconds to wait for each ack; must be positive.
    :param on_timeout: ``on_timeout(message_id, tag)`` when an ack times out, where ``tag`` is what
        :meth:`expect` was given (the link passes a send sequence number, to judge whether the
        timeout is evidence against the peer).  An exception from it is logged and otherwise ignored.
    :param rtt_window: how many recent round-trip samples the percentiles use.
    :param late_window: how many timed-out / failed ids are remembered to tell late acks from unknown ones.
    """

    clock: IReactorTime
    timeout: float
    on_timeout: Callable[[str, object], None]
    rtt_window: int = 1000
    late_window: int = 1000
    acked_count: int = attrs.field(default=0, init=False)
    timeouts: int = attrs.field(default=0, init=False)
    late_acks: int = attrs.field(default=0, init=False)
    unknown_acks: int = attrs.field(default=0, init=False)
    failed: int = attrs.field(default=0, init=False)
    duplicate_expects: int = attrs.field(default=0, init=False)
    _in_flight: dict[str, _InFlight] = attrs.field(factory=dict, init=False)
    _expired: OrderedDict[str, None] = attrs.field(factory=OrderedDict, init=False)
    _samples: deque[float] = attrs.field(init=False)
    _rtt_count: int = attrs.field(default=0, init=False)
    _rtt_last: float | None = attrs.field(default=None, init=False)

    @_samples.default
    def _make_samples(self) -> deque[float]:
        return deque(maxlen=self.rtt_window)

    def __attrs_post_init__(self) -> None:
        if not self.timeout > 0:
            raise ConfigError(f"ack timeout must be a positive number of seconds, got {self.timeout!r}")
        if self.rtt_window < 1 or self.late_window < 0:
            raise ConfigError(
                f"rtt_window must be >= 1 and late_window >= 0, got {self.rtt_window!r} and {self.late_window!r}"
            )

    # -- queries -------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """How many message ids are waiting for their ack."""
        return len(self._in_flight)

    def in_flight_after(self, tag: int) -> int:
        """How many ids in flight carry an integer tag greater than ``tag`` (untagged ones count too)."""
        return sum(1 for e in self._in_flight.values() if not isinstance(e.tag, int) or e.tag > tag)

    def is_expected(self, message_id: str) -> bool:
        """True if ``message_id`` is waiting for its ack."""
        return message_id in self._in_flight

    @property
    def last_rtt(self) -> float | None:
        """The round-trip time of the latest ack that came in time, in seconds (cheap: no percentiles)."""
        return self._rtt_last

    @property
    def rtt(self) -> RttStats:
        """Round-trip time statistics (see :class:`RttStats`); sorts the sample window, so not per message."""
        if not self._samples:
            return RttStats(count=self._rtt_count, last=self._rtt_last, p50=None, p99=None)
        ordered = sorted(self._samples)
        return RttStats(
            count=self._rtt_count,
            last=self._rtt_last,
            p50=_nearest_rank(ordered, 50),
            p99=_nearest_rank(ordered, 99),
        )

    def stats(self) -> dict[str, int | float | None]:
        """Return the counters and RTT figures as a flat dict (for stats endpoints and logs)."""
        rtt = self.rtt
        return {
            "in_flight": self.in_flight,
            "acked": self.acked_count,
            "timeouts": self.timeouts,
            "late_acks": self.late_acks,
            "unknown_acks": self.unknown_acks,
            "failed": self.failed,
            "duplicate_expects": self.duplicate_expects,
            "rtt_count": rtt.count,
            "rtt_last_s": rtt.last,
            "rtt_p50_s": rtt.p50,
            "rtt_p99_s": rtt.p99,
        }

    # -- actions -------------------------------------------------------------

    def expect(self, message_id: str, tag: object = None) -> Deferred[float]:
        """Start waiting for the ack of ``message_id`` (call when the message is sent).

        ``tag`` is handed back to ``on_timeout`` if the ack does not come (the first
        :meth:`expect`'s tag, for an id already in flight).

        :return: a Deferred firing with the round-trip time in seconds, or failing
            with :class:`~gwproactor.errors.AckTimeout` or the :meth:`fail_all` reason.
            The caller must handle its failure.
        """
        entry = self._in_flight.get(message_id)
        if entry is None:
            entry = _InFlight(message_id=message_id, sent_at=self.clock.seconds(), tag=tag)
            entry.call = self.clock.callLater(self.timeout, self._timed_out, entry)
            self._in_flight[message_id] = entry
            self._expired.pop(message_id, None)
        else:
            self.duplicate_expects += 1
        waiter: Deferred[float] = Deferred(canceller=lambda d: self._waiter_cancelled(entry, d))
        entry.waiters.append(waiter)
        return waiter

    def acked(self, message_id: str) -> bool:
        """Record the peer's ack of ``message_id``.

        :return: True if it settled a waiting Deferred (which fires with the
            round-trip time); False for a late or unknown ack (counted).
        """
        entry = self._in_flight.pop(message_id, None)
        if entry is None:
            if message_id in self._expired:
                del self._expired[message_id]
                self.late_acks += 1
            else:
                self.unknown_acks += 1
            return False
        rtt = max(0.0, self.clock.seconds() - entry.sent_at)
        self.acked_count += 1
        self._rtt_count += 1
        self._rtt_last = rtt
        self._samples.append(rtt)
        _cancel(entry)
        waiters, entry.waiters = entry.waiters, []
        for waiter in waiters:
            waiter.callback(rtt)
        return True

    def fail_all(self, reason: BaseException | Failure) -> int:
        """Fail every waiting Deferred with ``reason`` (e.g. ``LinkDown(...)`` on link loss or stop).

        Their timers are cancelled; acks that arrive later for these ids count as late.

        :return: how many message ids were waiting.
        """
        failure = reason if isinstance(reason, Failure) else Failure(reason)
        entries = list(self._in_flight.values())
        self._in_flight.clear()
        for entry in entries:
            self._abandon(entry, failure)
        return len(entries)

    def fail(self, message_id: str, reason: BaseException | Failure) -> bool:
        """Fail the Deferreds waiting for ``message_id`` with ``reason`` (e.g. its publish was lost).

        :return: True if ``message_id`` was waiting.
        """
        entry = self._in_flight.pop(message_id, None)
        if entry is None:
            return False
        self._abandon(entry, reason if isinstance(reason, Failure) else Failure(reason))
        return True

    def _abandon(self, entry: _InFlight, failure: Failure) -> None:
        entry.abandoned = True
        _cancel(entry)
        self._remember_expired(entry.message_id)
        waiters, entry.waiters = entry.waiters, []
        self.failed += len(waiters)
        for waiter in waiters:
            waiter.errback(failure)

    # -- internals -----------------------------------------------------------


    def _remember_expired(self, message_id: str) -> None:
        if self.late_window == 0:
            return
        self._expired[message_id] = None
        self._expired.move_to_end(message_id)
        while len(self._expired) > self.late_window:
            self._expired.popitem(last=False)

    def _timed_out(self, entry: _InFlight) -> None:
        entry.call = None
        if entry.abandoned:
            return
        if self._in_flight.get(entry.message_id) is entry:
            del self._in_flight[entry.message_id]
        waiters, entry.waiters = entry.waiters, []
        self.timeouts += 1
        self._remember_expired(entry.message_id)
        try:
            self.on_timeout(entry.message_id, entry.tag)
        except Exception:
            _log.failure("on_timeout callback failed for {message_id}", message_id=entry.message_id)
        failure = Failure(AckTimeout(f"no ack within {self.timeout:g} s; the peer may be gone or overloaded"))
        for waiter in waiters:
            waiter.errback(failure)

    def _waiter_cancelled(self, entry: _InFlight, waiter: Deferred[float]) -> None:
        if waiter in entry.waiters:
            entry.waiters.remove(waiter)
        if not entry.waiters and not entry.abandoned:
            entry.abandoned = True
            if self._in_flight.get(entry.message_id) is entry:
                del self._in_flight[entry.message_id]
            _cancel(entry)
        # the waiter itself errbacks with CancelledError (no canceller result), which its owner handles

