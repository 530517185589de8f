"""Tests of the per-link ack tracker (gwproactor.links.acks) on a deterministic Clock."""

from __future__ import annotations

import gc

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gwproactor.errors import AckTimeout, ConfigError, LinkDown
from gwproactor.links.acks import AckTracker, RttStats

_sync = SynchronousTestCase()
successResultOf = _sync.successResultOf
failureResultOf = _sync.failureResultOf
assertNoResult = _sync.assertNoResult


class Recorder:
    """Collects the message ids given to on_timeout."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.tags: list[object] = []

    def __call__(self, message_id: str, tag: object) -> None:
        self.ids.append(message_id)
        self.tags.append(tag)


def unhandled(events: list[dict]) -> list[dict]:
    return [e for e in events if "Unhandled error in Deferred" in (e.get("log_format") or "")]


def make(timeout: float = 5.0, **kw: int) -> tuple[Clock, Recorder, AckTracker]:
    clock = Clock()
    recorder = Recorder()
    return clock, recorder, AckTracker(clock, timeout, recorder, **kw)


def test_ack_in_time_fires_with_round_trip_time() -> None:
    """An ack within the timeout fires the Deferred with the RTT in seconds and leaves no timer behind."""
    clock, timeouts, tracker = make()
    d = tracker.expect("m1")
    assert tracker.in_flight == 1 and tracker.is_expected("m1")
    assertNoResult(d)
    clock.advance(0.25)
    assert tracker.acked("m1") is True
    assert successResultOf(d) == pytest.approx(0.25)
    assert tracker.in_flight == 0 and not tracker.is_expected("m1")
    assert tracker.acked_count == 1
    assert tracker.rtt == RttStats(count=1, last=pytest.approx(0.25), p50=pytest.approx(0.25), p99=pytest.approx(0.25))
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert timeouts.ids == []


def test_timeout_errbacks_with_ack_timeout_and_calls_on_timeout() -> None:
    """No ack within the timeout: on_timeout(id, tag) is called and the Deferred fails with AckTimeout."""
    clock, timeouts, tracker = make(timeout=5.0)
    d = tracker.expect("m1", tag=7)
    clock.advance(4.999)
    assertNoResult(d)
    assert timeouts.ids == []
    clock.advance(0.001)
    failure = failureResultOf(d, AckTimeout)
    assert "5 s" in str(failure.value)
    assert timeouts.ids == ["m1"] and timeouts.tags == [7]
    assert (tracker.timeouts, tracker.in_flight) == (1, 0)
    assert clock.getDelayedCalls() == []


def test_on_timeout_runs_before_the_waiter_errback() -> None:
    """on_timeout is called before the caller's errback, so the link leaves active before the caller reacts."""
    order: list[str] = []
    clock = Clock()
    tracker = AckTracker(clock, 1.0, lambda mid, tag: order.append("on_timeout"))
    d = tracker.expect("m1")
    d.addErrback(lambda f: order.append("errback"))
    clock.advance(1.0)
    assert order == ["on_timeout", "errback"]


def test_late_ack_after_timeout_is_counted() -> None:
    """An ack after the timeout returns False and counts as late (once); a second one counts as unknown."""
    clock, _, tracker = make(timeout=1.0)
    d = tracker.expect("m1")
    clock.advance(1.0)
    failureResultOf(d, AckTimeout)
    assert tracker.acked("m1") is False
    assert (tracker.late_acks, tracker.unknown_acks, tracker.acked_count) == (1, 0, 0)
    assert tracker.acked("m1") is False
    assert (tracker.late_acks, tracker.unknown_acks) == (1, 1)
    assert tracker.rtt.count == 0


def test_unknown_ack_is_counted() -> None:
    """An ack for an id never expected returns False and counts as unknown, as does a duplicate ack."""
    _, _, tracker = make()
    assert tracker.acked("nobody-sent-this") is False
    d = tracker.expect("m1")
    assert tracker.acked("m1") is True
    successResultOf(d)
    assert tracker.acked("m1") is False
    assert (tracker.unknown_acks, tracker.late_acks, tracker.acked_count) == (2, 0, 1)


def test_late_window_is_bounded() -> None:
    """Only the last late_window expired ids are remembered; older late acks count as unknown."""
    clock, _, tracker = make(timeout=1.0, late_window=2)
    for mid in ("a", "b", "c"):
        tracker.expect(mid).addErrback(lambda f: None)
    clock.advance(1.0)
    assert tracker.acked("a") is False
    assert tracker.acked("b") is False
    assert tracker.acked("c") is False
    assert (tracker.unknown_acks, tracker.late_acks) == (1, 2)


def test_fail_all_errbacks_every_waiter_and_cancels_timers() -> None:
    """fail_all fails every waiting Deferred with the reason, cancels the timeouts, and later acks are late."""
    clock, timeouts, tracker = make(timeout=5.0)
    d1 = tracker.expect("m1")
    d2 = tracker.expect("m2")
    clock.advance(1.0)
    assert tracker.fail_all(LinkDown("broker connection lost")) == 2
    assert str(failureResultOf(d1, LinkDown).value) == "broker connection lost"
    failureResultOf(d2, LinkDown)
    assert (tracker.in_flight, tracker.failed, tracker.timeouts) == (0, 2, 0)
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert timeouts.ids == []
    assert tracker.acked("m1") is False
    assert tracker.late_acks == 1
    assert tracker.fail_all(LinkDown("again")) == 0


def test_fail_all_accepts_a_failure() -> None:
    """fail_all also takes a Failure as the reason."""
    _, _, tracker = make()
    d = tracker.expect("m1")
    tracker.fail_all(Failure(LinkDown("stopped")))
    failureResultOf(d, LinkDown)


def test_handled_failures_leave_no_unhandled_errors(log_events: list[dict]) -> None:
    """With the caller's errback in place, timeouts and fail_all leave no 'Unhandled error in Deferred' behind."""
    clock, _, tracker = make(timeout=1.0)
    caught: list[type] = []
    for mid in ("t1", "t2"):
        tracker.expect(mid).addErrback(lambda f: caught.append(f.trap(AckTimeout, LinkDown)))
    clock.advance(1.0)
    for mid in ("f1", "f2"):
        tracker.expect(mid).addErrback(lambda f: caught.append(f.trap(AckTimeout, LinkDown)))
    dup = tracker.expect("f1")
    dup.addErrback(lambda f: caught.append(f.trap(AckTimeout, LinkDown)))
    tracker.fail_all(LinkDown("stop"))
    del dup
    gc.collect()
    assert caught == [AckTimeout, AckTimeout, LinkDown, LinkDown, LinkDown]
    assert unhandled(log_events) == []


def test_unhandled_error_detection_works(log_events: list[dict]) -> None:
    """Control: a failed Deferred nobody handles is reported, so the test above can see one."""
    d: Deferred[None] = Deferred()
    d.errback(LinkDown("nobody handles this"))
    del d
    gc.collect()
    assert len(unhandled(log_events)) == 1


def test_rtt_percentiles() -> None:
    """p50 and p99 are nearest-rank percentiles of the acked round-trip times; last is the latest."""
    clock, _, tracker = make(timeout=10.0)
    assert tracker.rtt == RttStats(count=0, last=None, p50=None, p99=None)
    # RTTs 0.01 .. 1.00 s, acked in a shuffled order
    order = [(i * 37) % 100 + 1 for i in range(100)]
    for n in order:
        start = clock.seconds()
        d = tracker.expect(f"m{n}")
        clock.advance(n / 100)
        assert tracker.acked(f"m{n}")
        assert successResultOf(d) == pytest.approx(n / 100)
        assert clock.seconds() - start == pytest.approx(n / 100)
    rtt = tracker.rtt
    assert rtt.count == 100
    assert rtt.last == pytest.approx(order[-1] / 100)
    assert rtt.p50 == pytest.approx(0.50)
    assert rtt.p99 == pytest.approx(0.99)
    stats = tracker.stats()
    assert stats["acked"] == 100 and stats["rtt_p99_s"] == pytest.approx(0.99)


def test_rtt_reservoir_is_bounded() -> None:
    """Percentiles use only the last rtt_window samples; count keeps counting all of them."""
    clock, _, tracker = make(timeout=10.0, rtt_window=10)
    for n in range(1, 101):
        tracker.expect(str(n))
        clock.advance(n / 100)
        tracker.acked(str(n))
    rtt = tracker.rtt
    assert rtt.count == 100
    assert rtt.p50 == pytest.approx(0.95)
    assert rtt.p99 == pytest.approx(1.00)


def test_duplicate_expect_gets_its_own_deferred_settled_together() -> None:
    """expect() of an id in flight returns a new Deferred; one ack fires both with the RTT from the first expect."""
    clock, _, tracker = make(timeout=5.0)
    first = tracker.expect("m1")
    clock.advance(1.0)
    second = tracker.expect("m1")
    assert second is not first
    assert (tracker.in_flight, tracker.duplicate_expects) == (1, 1)
    first.addCallback(lambda rtt: "first caller changed its own result")
    clock.advance(0.5)
    assert tracker.acked("m1") is True
    assert successResultOf(first) == "first caller changed its own result"
    assert successResultOf(second) == pytest.approx(1.5)
    assert tracker.acked_count == 1


def test_duplicate_expect_keeps_the_first_deadline() -> None:
    """The timeout of a re-expected id still runs from the first expect(), and both Deferreds fail."""
    clock, timeouts, tracker = make(timeout=5.0)
    first = tracker.expect("m1")
    clock.advance(4.0)
    second = tracker.expect("m1")
    clock.advance(1.0)
    failureResultOf(first, AckTimeout)
    failureResultOf(second, AckTimeout)
    assert timeouts.ids == ["m1"] and tracker.timeouts == 1


def test_cancelling_the_only_waiter_stops_tracking() -> None:
    """Cancelling the Deferred forgets the id: no timer left, no on_timeout, a later ack is unknown."""
    clock, timeouts, tracker = make(timeout=5.0)
    d = tracker.expect("m1")
    d.cancel()
    failureResultOf(d, CancelledError)
    assert tracker.in_flight == 0
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert timeouts.ids == []
    assert tracker.acked("m1") is False
    assert tracker.unknown_acks == 1


def test_cancelling_one_of_two_waiters_keeps_the_other() -> None:
    """With two waiters for one id, cancelling one leaves the other waiting for the ack."""
    _, _, tracker = make()
    first = tracker.expect("m1")
    second = tracker.expect("m1")
    first.cancel()
    failureResultOf(first, CancelledError)
    assert tracker.in_flight == 1
    assert tracker.acked("m1") is True
    successResultOf(second)


def test_expect_again_after_timeout_is_tracked_afresh() -> None:
    """An id re-sent after its timeout is tracked again from the new expect()."""
    clock, _, tracker = make(timeout=2.0)
    failureResultOf(_advance_after(tracker.expect("m1"), clock, 2.0), AckTimeout)
    d = tracker.expect("m1")
    clock.advance(1.0)
    assert tracker.acked("m1") is True
    assert successResultOf(d) == pytest.approx(1.0)
    assert tracker.late_acks == 0


def _advance_after(d: Deferred, clock: Clock, seconds: float) -> Deferred:
    clock.advance(seconds)
    return d


def test_on_timeout_exception_is_logged_and_waiter_still_fails(log_events: list[dict]) -> None:
    """An exception raised by on_timeout is logged; the waiter still fails with AckTimeout."""
    clock = Clock()

    def broken(message_id: str, tag: object) -> None:
        raise RuntimeError("boom")

    tracker = AckTracker(clock, 1.0, broken)
    d = tracker.expect("m1")
    clock.advance(1.0)
    failureResultOf(d, AckTimeout)
    logged = [e for e in log_events if e.get("log_format", "").startswith("on_timeout callback failed")]
    assert len(logged) == 1
    assert logged[0]["message_id"] == "m1"
    assert logged[0]["log_failure"].check(RuntimeError)
    assert unhandled(log_events) == []


def test_waiter_callbacks_may_expect_new_ids_during_fail_all() -> None:
    """A caller that re-sends from its errback during fail_all gets a tracked new Deferred."""
    _, _, tracker = make()
    resent: list[Deferred[float]] = []
    tracker.expect("m1").addErrback(lambda f: resent.append(tracker.expect("m2")))
    tracker.fail_all(LinkDown("down"))
    assert tracker.in_flight == 1 and tracker.is_expected("m2")
    assert tracker.acked("m2") is True
    successResultOf(resent[0])


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout": 0}, {"timeout": -1.0}, {"timeout": 1.0, "rtt_window": 0}, {"timeout": 1.0, "late_window": -1}],
)
def test_bad_settings_raise_config_error(kwargs: dict) -> None:
    """Non-positive timeouts or windows are refused with ConfigError."""
    with pytest.raises(ConfigError):
        AckTracker(Clock(), on_timeout=lambda mid, tag: None, **kwargs)
