"""Unit tests of actor supervision: restart with backoff, escalation, held messages (Clock-driven)."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from gwproactor.actors import Actor
from gwproactor.actors.supervision import ESCALATED, IGNORED, RESTARTED, RestartPolicy, Supervisor
from gwproactor.interfaces import IActor
from gwproactor.message import make_message


class Flaky(Actor):
    """Records its lifecycle; stopService may return a Deferred the test controls."""

    def __init__(self, name: str = "flaky") -> None:
        super().__init__(name)
        self.events: list[str] = []
        self.stop_deferred: Deferred | None = None
        self.fail_start = 0

    def startService(self) -> None:
        if self.fail_start:
            self.fail_start -= 1
            raise RuntimeError("cannot start")
        super().startService()
        self.events.append("start")

    def stopService(self) -> Any:
        super().stopService()
        self.events.append("stop")
        return self.stop_deferred


@attrs.frozen
class Note:
    """An application payload for these tests."""

    TYPE_NAME: ClassVar[str] = "test.note"
    n: int


def boom(text: str = "boom") -> Failure:
    return Failure(RuntimeError(text))


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Calls:
    """Records the supervisor's callbacks."""

    def __init__(self) -> None:
        self.escalated: list[tuple[str, str]] = []
        self.restarted: list[tuple[str, int, str]] = []

    def on_escalate(self, actor: Any, reason: str) -> None:
        self.escalated.append((actor.name, reason))

    def on_restart(self, actor: Any, count: int, failure: Failure) -> None:
        self.restarted.append((actor.name, count, failure.getErrorMessage()))


def make(clock: Clock, **policy: Any) -> tuple[Supervisor, Calls]:
    calls = Calls()
    sup = Supervisor(clock, RestartPolicy(**policy), on_escalate=calls.on_escalate, on_restart=calls.on_restart)
    return sup, calls


def test_fake_actor_provides_iactor() -> None:
    """The test actor is a real IActor."""
    verifyObject(IActor, Flaky())


def test_policy_backoff_is_exponential_and_capped() -> None:
    """backoff doubles from backoff_initial_s and stops at backoff_cap_s."""
    policy = RestartPolicy(backoff_initial_s=1, backoff_cap_s=5)
    assert [policy.backoff(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    with pytest.raises(ValueError):
        RestartPolicy(max_restarts=-1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.max_restarts = 3  # type: ignore[misc]


def test_policy_backoff_edge_cases_are_kept() -> None:
    """A zero initial delay or cap restarts at once; a cap below the initial delay is the delay."""
    assert [RestartPolicy(backoff_initial_s=0, backoff_cap_s=5).backoff(n) for n in (1, 3)] == [0, 0]
    assert [RestartPolicy(backoff_initial_s=2, backoff_cap_s=0).backoff(n) for n in (1, 3)] == [0, 0]
    assert [RestartPolicy(backoff_initial_s=4, backoff_cap_s=3).backoff(n) for n in (1, 2)] == [3, 3]


def test_failed_actor_is_stopped_then_restarted_after_the_backoff(clock: Clock) -> None:
    """A failure stops the actor at once and starts it again after backoff_initial_s, then on_restart runs."""
    sup, calls = make(clock, backoff_initial_s=2)
    actor = Flaky()
    actor.startService()
    d = sup.failed(actor, boom())
    assert actor.events == ["start", "stop"] and sup.is_restarting("flaky")
    clock.advance(1.9)
    assert actor.events == ["start", "stop"]
    clock.advance(0.1)
    assert actor.events == ["start", "stop", "start"] and actor.running
    assert d.result == RESTARTED and not sup.is_restarting("flaky")
    assert calls.restarted == [("flaky", 1, "boom")] and calls.escalated == []
    assert sup.restarts("flaky") == 1 and clock.getDelayedCalls() == []


def test_restart_waits_for_the_stop_deferred(clock: Clock) -> None:
    """The backoff starts only once stopService's Deferred has fired."""
    sup, _ = make(clock, backoff_initial_s=1)
    actor = Flaky()
    actor.startService()
    actor.stop_deferred = Deferred()
    d = sup.failed(actor, boom())
    clock.advance(5)
    assert actor.events == ["start", "stop"] and not d.called
    actor.stop_deferred.callback(None)
    clock.advance(1)
    assert actor.events == ["start", "stop", "start"] and d.result == RESTARTED


def test_stop_that_never_finishes_is_escalated(clock: Clock) -> None:
    """A stopService Deferred that does not fire within stop_timeout_s escalates the failure."""
    sup, calls = make(clock, stop_timeout_s=3)
    actor = Flaky()
    actor.startService()
    actor.stop_deferred = Deferred()
    d = sup.failed(actor, boom())
    clock.advance(3)
    assert d.result == ESCALATED
    assert calls.escalated and "stopping actor 'flaky' for a restart failed" in calls.escalated[0][1]


def test_backoff_grows_with_restarts_within_the_period(clock: Clock) -> None:
    """Consecutive restarts within the period wait 1, 2, 4 s."""
    sup, calls = make(clock, backoff_initial_s=1, backoff_cap_s=30, max_restarts=5, period_s=60)
    actor = Flaky()
    actor.startService()
    waits = []
    for _ in range(3):
        start = clock.seconds()
        d = sup.failed(actor, boom())
        while not d.called:
            clock.advance(0.5)
        waits.append(clock.seconds() - start)
    assert waits == [1, 2, 4]
    assert [c[1] for c in calls.restarted] == [1, 2, 3]


def test_past_the_limit_the_failure_is_escalated_once(clock: Clock) -> None:
    """The (max_restarts + 1)-th failure within the period calls on_escalate; later failures are ignored."""
    sup, calls = make(clock, max_restarts=2, period_s=60, backoff_initial_s=1)
    actor = Flaky()
    actor.startService()
    for _ in range(2):
        sup.failed(actor, boom())
        clock.advance(10)
    d = sup.failed(actor, boom("third"))
    assert d.result == ESCALATED
    assert calls.escalated == [("flaky", "actor 'flaky' failed again after 2 restarts within 60 s: third")]
    assert sup.failed(actor, boom()).result == IGNORED
    assert len(calls.escalated) == 1
    assert sup.stats()["flaky"] == {
        "failures": 4,
        "restarts": 2,
        "restarting": False,
        "escalated": True,
        "held": 0,
        "held_dropped": 0,
    }


def test_restarts_older_than_the_period_are_forgotten(clock: Clock) -> None:
    """Failures spread wider than period_s never escalate."""
    sup, calls = make(clock, max_restarts=2, period_s=60, backoff_initial_s=1)
    actor = Flaky()
    actor.startService()
    for _ in range(6):
        assert sup.failed(actor, boom()) is not None
        clock.advance(31)
    assert calls.escalated == [] and sup.restarts("flaky") == 6


def test_failures_during_a_restart_are_ignored(clock: Clock) -> None:
    """A second failure while the actor is restarting does not start a second restart."""
    sup, calls = make(clock, backoff_initial_s=1)
    actor = Flaky()
    actor.startService()
    sup.failed(actor, boom())
    assert sup.failed(actor, boom()).result == IGNORED
    clock.advance(1)
    assert actor.events == ["start", "stop", "start"] and len(calls.restarted) == 1


def test_start_failure_counts_as_another_failure(clock: Clock) -> None:
    """If startService raises, that failure goes through the policy again (and escalates past it)."""
    sup, calls = make(clock, max_restarts=2, backoff_initial_s=1)
    actor = Flaky()
    actor.startService()
    actor.fail_start = 10
    d = sup.failed(actor, boom())
    clock.advance(1)
    clock.advance(2)
    assert d.result == ESCALATED
    assert calls.restarted == [] and "cannot start" in calls.escalated[0][1]


def test_messages_for_a_restarting_actor_are_held_and_redelivered_in_order(clock: Clock) -> None:
    """hold() keeps messages while the actor restarts and hands them to redeliver, in order, after restart."""
    redelivered: list[Any] = []
    sup = Supervisor(clock, RestartPolicy(backoff_initial_s=1), redeliver=redelivered.append)
    actor = Flaky()
    actor.startService()
    m1, m2 = make_message("a", "flaky", Note(1)), make_message("a", "flaky", Note(2))
    other = make_message("a", "x", Note(3))
    assert sup.hold(m1) is False  # not restarting: deliver now
    sup.failed(actor, boom())
    assert sup.hold(m1) and sup.hold(m2) and not sup.hold(other)
    assert redelivered == []
    clock.advance(1)
    assert redelivered == [m1, m2]
    assert sup.stats()["flaky"]["held"] == 0


def test_held_messages_are_bounded_and_dropped_on_escalation(clock: Clock) -> None:
    """Past max_held messages are dropped and counted; held messages are dropped when the restart escalates."""
    sup = Supervisor(clock, RestartPolicy(stop_timeout_s=1), max_held=2)
    actor = Flaky()
    actor.startService()
    actor.stop_deferred = Deferred()
    sup.failed(actor, boom())
    for i in range(3):
        assert sup.hold(make_message("a", "flaky", Note(i)))
    assert sup.stats()["flaky"]["held"] == 2 and sup.stats()["flaky"]["held_dropped"] == 1
    clock.advance(1)
    assert sup.stats()["flaky"]["held_dropped"] == 3


def test_stop_cancels_pending_restarts(clock: Clock) -> None:
    """After stop(), a pending restart is abandoned and new failures are ignored; no timers remain."""
    sup, calls = make(clock, backoff_initial_s=5)
    actor = Flaky()
    actor.startService()
    d = sup.failed(actor, boom())
    sup.stop()
    assert d.result == IGNORED and not sup.is_restarting("flaky")
    assert clock.getDelayedCalls() == []
    assert sup.failed(actor, boom()).result == IGNORED
    assert actor.events == ["start", "stop"] and calls.restarted == []


def test_callback_errors_do_not_break_supervision(clock: Clock) -> None:
    """Exceptions from on_restart / on_escalate are logged, not raised."""

    def explode(*args: Any) -> None:
        raise ValueError("callback broke")

    sup = Supervisor(clock, RestartPolicy(max_restarts=1, backoff_initial_s=1), on_escalate=explode, on_restart=explode)
    actor = Flaky()
    actor.startService()
    d = sup.failed(actor, boom())
    clock.advance(1)
    assert d.result == RESTARTED
    assert sup.failed(actor, boom()).result == ESCALATED
