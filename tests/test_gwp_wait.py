"""Tests of gwproactor_test.wait: await_for on a Clock, and the ready-made waits on a Clock-driven fake pair."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock

from gwproactor.message import ProblemEvent
from gwproactor.store import MemoryEventStore
from gwproactor_test import dummies
from gwproactor_test.fakes import FakeBroker
from gwproactor_test.instrumented import instrumented
from gwproactor_test.wait import (
    WaitTimeout,
    await_for,
    describe_proactors,
    is_quiescent,
    wait_link_active,
    wait_link_state,
    wait_quiescent,
)


class FakePair:
    """Instrumented dummy child and parent on one Clock and one fake broker."""

    def __init__(self, parent_cls: type = dummies.DummyParent) -> None:
        self.clock = Clock()
        self.hub = FakeBroker(self.clock)
        self.child = instrumented(dummies.DummyChild)(
            dummies.child_settings("tcp:host=127.0.0.1:port=1", "/nonexistent"),
            reactor=self.clock,
            store=MemoryEventStore(clock=self.clock),
            brokers={"default": self.hub.client("child")},
        )
        self.parent = instrumented(parent_cls)(
            dummies.parent_settings("tcp:host=127.0.0.1:port=1", "/nonexistent"),
            reactor=self.clock,
            store=MemoryEventStore(clock=self.clock),
            brokers={"default": self.hub.client("parent")},
        )

    def start(self) -> None:
        self.child.startService()
        self.parent.startService()
        self.hub.connect_all()
        self.turn()

    def turn(self, n: int = 20) -> None:
        for _ in range(n):
            self.clock.advance(0)

    def stop(self) -> None:
        self.child.log_capture.stop()
        self.parent.log_capture.stop()


class HoldingParent(dummies.DummyParent):
    """A parent whose application takes its time: ``handle_event`` returns a Deferred the test fires."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[Deferred] = []

    def handle_event(self, link: Any, event: Any) -> Any:
        super().handle_event(link, event)
        d: Deferred = Deferred()
        self.held.append(d)
        return d


@pytest.fixture
def fake_pair() -> Any:
    p = FakePair()
    yield p
    p.stop()


def test_await_for_true_now_fires_at_once() -> None:
    """A condition already true fires the Deferred synchronously, scheduling nothing."""
    clock = Clock()
    d = await_for(lambda: True, 1.0, reactor=clock)
    assert d.called and d.result is None
    assert clock.getDelayedCalls() == []


def test_await_for_polls_until_true() -> None:
    """The condition is polled every interval and the Deferred fires once it holds."""
    clock = Clock()
    state = {"ok": False, "calls": 0}

    def cond() -> bool:
        state["calls"] += 1
        return state["ok"]

    fired: list[Any] = []
    await_for(cond, 1.0, reactor=clock, interval=0.1).addBoth(fired.append)
    clock.advance(0.1)
    clock.advance(0.1)
    assert fired == [] and state["calls"] == 3
    state["ok"] = True
    clock.advance(0.1)
    assert fired == [None]
    assert clock.getDelayedCalls() == []


def test_await_for_timeout_carries_describe() -> None:
    """After the deadline the Deferred fails with WaitTimeout whose message has describe()'s output."""
    clock = Clock()
    failures: list[Any] = []

    def never() -> bool:
        return False

    await_for(never, 0.5, lambda: "the world as seen", reactor=clock, interval=0.1).addErrback(failures.append)
    clock.pump([0.1] * 4)
    assert failures == []
    clock.pump([0.1] * 2)
    assert len(failures) == 1
    error = failures[0].value
    assert isinstance(error, WaitTimeout) and isinstance(error, AssertionError)
    assert "never not true within 0.5 s" in str(error) and "the world as seen" in str(error)
    assert clock.getDelayedCalls() == []


def test_await_for_string_describe_and_broken_describe() -> None:
    """describe may be a string; a describe() that raises is reported instead of hiding the timeout."""
    clock = Clock()
    failures: list[Any] = []
    await_for(lambda: False, 0.1, "plain text", reactor=clock).addErrback(failures.append)

    def broken() -> str:
        raise RuntimeError("boom")

    await_for(lambda: False, 0.1, broken, reactor=clock).addErrback(failures.append)
    clock.pump([0.05] * 4)
    assert "plain text" in str(failures[0].value)
    assert "describe() failed" in str(failures[1].value) and "boom" in str(failures[1].value)


def test_await_for_condition_error_fails() -> None:
    """An exception raised by the condition fails the Deferred with it (now or on a later poll)."""
    clock = Clock()
    failures: list[Any] = []
    await_for(lambda: 1 / 0, 1.0, reactor=clock).addErrback(failures.append)
    calls = {"n": 0}

    def later() -> bool:
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyError("gone")
        return False

    await_for(later, 1.0, reactor=clock).addErrback(failures.append)
    clock.advance(0.01)
    assert failures[0].check(ZeroDivisionError) and failures[1].check(KeyError)
    assert clock.getDelayedCalls() == []


def test_await_for_cancel_stops_polling() -> None:
    """Cancelling the Deferred cancels the pending poll."""
    clock = Clock()
    d = await_for(lambda: False, 5.0, reactor=clock)
    failures: list[Any] = []
    d.addErrback(failures.append)
    d.cancel()
    assert failures[0].check(CancelledError)
    assert clock.getDelayedCalls() == []


def test_wait_link_active_and_quiescent_on_fake_pair(fake_pair: FakePair) -> None:
    """wait_link_active fires once the fake pair is up; wait_quiescent once every event is acked."""
    p = fake_pair
    active: list[Any] = []
    wait_link_active(p.child, "parent", 1.0, reactor=p.clock).addBoth(active.append)
    assert active == []
    p.start()
    p.clock.advance(0.01)
    assert active == [None]
    for n in range(5):
        p.child.generate_event(ProblemEvent(src=p.child.name, problem_type="warning", summary=f"{n}", details=""))
    assert not is_quiescent(p.child, p.parent)
    quiet: list[Any] = []
    wait_quiescent(p.child, p.parent, timeout=1.0, reactor=p.clock).addBoth(quiet.append)
    p.turn()
    p.clock.advance(0.01)
    assert quiet == [None]
    assert is_quiescent(p.child, p.parent)


def test_quiescent_false_while_acks_held(fake_pair: FakePair) -> None:
    """Held acks keep the pair from being quiescent; the timeout message describes both sides."""
    p = fake_pair
    p.start()
    p.parent.hold_acks("child")
    p.child.generate_event(ProblemEvent(src=p.child.name, problem_type="warning", summary="x", details=""))
    p.turn()
    failures: list[Any] = []
    wait_quiescent(p.child, p.parent, timeout=0.5, reactor=p.clock).addErrback(failures.append)
    p.clock.pump([0.1] * 6)
    text = str(failures[0].value)
    assert p.child.name in text and p.parent.name in text
    assert '"held"' in text and '"acks": 1' in text


def test_not_quiescent_while_an_event_is_being_accepted() -> None:
    """A proactor whose handle_event has not fired yet is not quiescent, and describe_proactors counts the event."""
    p = FakePair(parent_cls=HoldingParent)
    try:
        p.start()
        for d in p.parent.held:  # the child's startup and comm events
            d.callback(None)
        p.parent.held.clear()
        p.turn()
        assert is_quiescent(p.parent)
        p.child.generate_event(ProblemEvent(src=p.child.name, problem_type="warning", summary="slow", details=""))
        p.turn()
        assert len(p.parent.held) == 1
        assert not is_quiescent(p.parent)
        assert '"accepting": 1' in describe_proactors(p.parent)
        p.parent.held[0].callback(None)
        p.turn()
        assert is_quiescent(p.parent) and is_quiescent(p.child, p.parent)
        assert '"accepting": 0' in describe_proactors(p.parent)
    finally:
        p.stop()


def test_wait_link_state_timeout_describes(fake_pair: FakePair) -> None:
    """A link that never reaches the state fails with the link's state and transitions in the message."""
    p = fake_pair
    p.child.startService()
    failures: list[Any] = []
    wait_link_state(p.child, "parent", "active", 0.2, reactor=p.clock, others=(p.parent,)).addErrback(failures.append)
    p.clock.pump([0.05] * 6)
    text = str(failures[0].value)
    assert "link parent active not true" in text
    assert '"state": "connecting"' in text and "start -> connecting" in text


def test_describe_proactors_summarises_each(fake_pair: FakePair) -> None:
    """describe_proactors lists each proactor's links, store, outbox and instrumented counters."""
    p = fake_pair
    p.start()
    text = describe_proactors(p.child, p.parent)
    for key in ('"state": "active"', '"store_pending"', '"outbox"', '"recent_transitions"', '"instrumented"',
                "message_from_peer -> active"):
        assert key in text, key
    assert text.index(f"--- {p.child.name}:") < text.index(f"--- {p.parent.name}:")


def test_clock_fixture(clock: Clock) -> None:
    """The plugin's clock fixture is a fresh Clock at time 0 that await_for can drive."""
    assert isinstance(clock, Clock) and clock.seconds() == 0
    fired: list[Any] = []
    flag = {"ok": False}
    await_for(lambda: flag["ok"], 1.0, reactor=clock).addBoth(fired.append)
    flag["ok"] = True
    clock.advance(0.01)
    assert fired == [None]
