"""Unit tests of ReactorLag (Clock-driven)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from gwproactor.ops.lag import LAG_BUCKETS_S, ReactorLag


def test_responsive_reactor_has_no_lag() -> None:
    """Samples taken exactly on time record zero lag, one per interval."""
    clock = Clock()
    lag = ReactorLag(clock, interval_s=0.1)
    lag.start()
    clock.pump([0.1] * 10)
    assert lag.samples == 10
    assert lag.current_s == 0.0 and lag.max_s == 0.0 and lag.p99_s == 0.0
    assert lag.lag_now() == 0.0
    lag.stop()
    assert clock.getDelayedCalls() == []


def test_blocked_reactor_shows_as_one_late_sample() -> None:
    """A 2.5 s stall is measured as ~2.4 s lag on the sample that was due, then lag returns to zero."""
    clock = Clock()
    lag = ReactorLag(clock, interval_s=0.1)
    lag.start()
    clock.advance(2.5)
    assert lag.current_s == pytest.approx(2.4)
    assert lag.max_s == pytest.approx(2.4)
    clock.advance(0.1)
    assert lag.current_s == 0.0
    assert lag.max_s == pytest.approx(2.4)
    lag.stop()


def test_lag_now_rises_while_the_sample_is_overdue() -> None:
    """lag_now reports how overdue the pending sample is before it has run."""
    clock = Clock()
    lag = ReactorLag(clock, interval_s=0.1)
    lag.start()
    clock.rightNow += 3.1  # time passes but no delayed call runs: a blocked reactor
    assert lag.current_s == 0.0
    assert lag.lag_now() == pytest.approx(3.0)
    lag.stop()
    assert lag.lag_now() == 0.0


def test_histogram_p99_and_reset() -> None:
    """Samples land in the right buckets, p99 reflects the worst recent samples, reset clears them."""
    lag = ReactorLag(Clock(), interval_s=0.1, window=100)
    for _ in range(98):
        lag.record(0.0)
    lag.record(0.2)
    lag.record(7.0)
    assert lag.histogram[0] == 98
    assert lag.histogram[LAG_BUCKETS_S.index(0.5)] == 1
    assert lag.histogram[-1] == 1
    assert lag.p99_s == 7.0
    stats = lag.stats()
    assert stats["samples"] == 100 and stats["max_s"] == 7.0 and stats["histogram"][">5"] == 1
    lag.reset()
    assert lag.samples == 0 and lag.max_s == 0.0 and lag.p99_s == 0.0 and sum(lag.histogram) == 0


def test_start_and_stop_are_idempotent() -> None:
    """start twice schedules one timer; stop twice leaves none."""
    clock = Clock()
    lag = ReactorLag(clock)
    lag.start()
    lag.start()
    assert len(clock.getDelayedCalls()) == 1 and lag.running
    lag.stop()
    lag.stop()
    assert clock.getDelayedCalls() == [] and not lag.running


def test_interval_must_be_positive() -> None:
    """A non-positive interval is refused."""
    with pytest.raises(ValueError):
        ReactorLag(Clock(), interval_s=0)
