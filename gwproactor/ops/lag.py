"""Reactor responsiveness: a periodic timer that measures how late the reactor runs it."""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

#: Upper bounds (seconds) of the lag histogram buckets; the last bucket counts everything above.
LAG_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


@attrs.define(eq=False)
class ReactorLag:
    """Measures reactor lag: how much later than asked a timer runs.

    Every ``interval_s`` a delayed call is scheduled; when it runs, the
    difference between the time it ran and the time it was due is one lag
    sample.  A blocked reactor shows up as one large sample when it unblocks,
    and, while still blocked, through :meth:`lag_now` (how overdue the pending
    sample is).

    :param clock: provides ``seconds`` and ``callLater`` (the reactor, or a
        :class:`~twisted.internet.task.Clock` in tests).
    :param interval_s: seconds between samples.
    :param window: how many recent samples :attr:`p99_s` is computed over.
    """

    clock: IReactorTime
    interval_s: float = 0.1
    window: int = 600
    #: The most recent sample (seconds).
    current_s: float = attrs.field(default=0.0, init=False)
    #: The largest sample since start or :meth:`reset`.
    max_s: float = attrs.field(default=0.0, init=False)
    #: Number of samples since start or :meth:`reset`.
    samples: int = attrs.field(default=0, init=False)
    #: Sample counts per bucket of :data:`LAG_BUCKETS_S` (one more for "above the last bound").
    histogram: list[int] = attrs.field(factory=lambda: [0] * (len(LAG_BUCKETS_S) + 1), init=False)
    _recent: deque[float] = attrs.field(init=False)
    _due: float | None = attrs.field(default=None, init=False)
    _call: IDelayedCall | None = attrs.field(default=None, init=False)
    log: Logger = attrs.field(factory=lambda: Logger(namespace="gwproactor.ops.lag"), init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {self.interval_s!r}")
        self._recent = deque(maxlen=self.window)

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._call is not None

    def start(self) -> None:
        """Begin sampling (no-op if running)."""
        if self._call is None:
            self._schedule()

    def stop(self) -> None:
        """Stop sampling (no-op if stopped); leaves no delayed call behind."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        self._due = None

    def reset(self) -> None:
        """Forget the maximum, the histogram and the recent samples (keeps :attr:`current_s`)."""
        self.max_s = 0.0
        self.samples = 0
        self.histogram = [0] * (len(LAG_BUCKETS_S) + 1)
        self._recent.clear()

    def _schedule(self) -> None:
        self._due = self.clock.seconds() + self.interval_s
        self._call = self.clock.callLater(self.interval_s, self._tick)

    def _tick(self) -> None:
        lag = max(0.0, self.clock.seconds() - (self._due or 0.0))
        self.record(lag)
        self._schedule()

    def record(self, lag_s: float) -> None:
        """Add one sample (normally called by the timer; public for tests and other probes)."""
        self.current_s = lag_s
        self.max_s = max(self.max_s, lag_s)
        self.samples += 1
        self._recent.append(lag_s)
        for i, bound in enumerate(LAG_BUCKETS_S):
            if lag_s <= bound:
                self.histogram[i] += 1
                break
        else:
            self.histogram[-1] += 1

    def lag_now(self) -> float:
        """The larger of the last sample and how overdue the pending sample is right now.

        Use this to judge responsiveness: it rises while the reactor is blocked
        even before the late sample runs.
        """
        overdue = 0.0
        if self._due is not None:
            overdue = max(0.0, self.clock.seconds() - self._due)
        return max(self.current_s, overdue)

    @property
    def p99_s(self) -> float:
        """The 99th percentile of the recent samples (0.0 with no samples)."""
        if not self._recent:
            return 0.0
        ordered = sorted(self._recent)
        index = min(len(ordered) - 1, int(0.99 * len(ordered)))
        return ordered[index]

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot: current, max, p99 (seconds), sample count and histogram."""
        buckets = [f"<={bound:g}" for bound in LAG_BUCKETS_S] + [f">{LAG_BUCKETS_S[-1]:g}"]
        return {
            "current_s": round(self.current_s, 6),
            "max_s": round(self.max_s, 6),
            "p99_s": round(self.p99_s, 6),
            "samples": self.samples,
            "interval_s": self.interval_s,
            "histogram": dict(zip(buckets, self.histogram, strict=True)),
        }
