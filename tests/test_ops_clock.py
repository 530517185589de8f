"""use_monotonic_time on real (unstarted) reactor instances, default and asyncio, and where the library calls it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.task import Clock, LoopingCall
from twisted.internet.testing import MemoryReactorClock

from gwproactor.config import ProactorSettings
from gwproactor.ops.clock import is_monotonic, use_monotonic_time
from gwproactor.proactor import Proactor
from gwproactor.store import MemoryEventStore

YEAR_S = 365 * 86400.0


def _epoll_reactor() -> Any:
    from twisted.internet.epollreactor import EPollReactor  # the default reactor on Linux

    return EPollReactor()


def _select_reactor() -> Any:
    from twisted.internet.selectreactor import SelectReactor

    return SelectReactor()


def _asyncio_reactor() -> Any:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    # Its own loop: with no loop given it would also make that loop the thread's current one.
    return AsyncioSelectorReactor(asyncio.new_event_loop())


def _is_asyncio(reactor: Any) -> bool:
    return hasattr(reactor, "_asyncioEventloop")


def _dispose(reactor: Any) -> None:
    for call in reactor.getDelayedCalls():
        call.cancel()
    for reader in list(getattr(reactor, "_internalReaders", ())):
        reactor.removeReader(reader)
        reader.connectionLost(None)
    loop = getattr(reactor, "_asyncioEventloop", None)
    if loop is not None:
        loop.close()


@pytest.fixture(params=[_epoll_reactor, _select_reactor, _asyncio_reactor], ids=["epoll", "select", "asyncio"])
def reactor(request: Any) -> Iterator[Any]:
    r = request.param()
    yield r
    _dispose(r)


def _noop() -> None:
    pass


def test_a_new_reactor_runs_on_the_wall_clock(reactor: Any) -> None:
    """The premise: an unconverted reactor's seconds() is time.time(), and so are its DelayedCalls' times."""
    assert not is_monotonic(reactor)
    call = reactor.callLater(10, _noop)
    assert call.getTime() == pytest.approx(time.time() + 10, abs=1)


def test_seconds_becomes_monotonic(reactor: Any) -> None:
    """After the call, seconds() is time.monotonic() plus a constant (the wall time at the switch), and new calls use it."""
    assert use_monotonic_time(reactor) is True
    assert is_monotonic(reactor)
    assert reactor.seconds() == pytest.approx(time.time(), abs=0.5)
    offset = reactor.seconds.offset
    assert reactor.seconds() - time.monotonic() == pytest.approx(offset, abs=1e-3)
    call = reactor.callLater(7, _noop)
    assert call.seconds is reactor.seconds
    assert call.getTime() == pytest.approx(reactor.seconds() + 7, abs=0.5)
    assert reactor.timeout() == pytest.approx(7, abs=0.5)


def test_scheduled_calls_keep_their_times_and_order(reactor: Any) -> None:
    """Calls in the heap and calls not yet in it keep their time and order, and reset() then uses the new clock."""
    in_heap = [reactor.callLater(d, _noop) for d in (30, 10, 20)]
    cancelled = reactor.callLater(25, _noop)  # a cancelled call stays in the heap until its time
    reactor.timeout()  # moves the new calls into the heap, as each reactor iteration does
    cancelled.cancel()
    fresh = reactor.callLater(15, _noop)
    assert in_heap[0] in reactor._pendingTimedCalls
    # The asyncio reactor's callLater moves each new call into the heap at once (it calls timeout()).
    assert fresh in (reactor._pendingTimedCalls if _is_asyncio(reactor) else reactor._newTimedCalls)
    before = {id(c): c.getTime() for c in (*in_heap, fresh, cancelled)}

    assert use_monotonic_time(reactor)

    for c in (*in_heap, fresh, cancelled):
        assert c.getTime() == before[id(c)]
        assert c.seconds is reactor.seconds
    assert reactor.timeout() == pytest.approx(10, abs=0.5)
    pending = sorted(reactor.getDelayedCalls(), key=lambda c: c.getTime())
    assert pending == [in_heap[1], fresh, in_heap[2], in_heap[0]]
    in_heap[0].reset(1)  # reset() counts from the call's own seconds(), now monotonic
    assert in_heap[0].getTime() == pytest.approx(reactor.seconds() + 1, abs=0.5)


def test_nothing_due_fires_early_and_due_calls_still_fire(reactor: Any) -> None:
    """runUntilCurrent after the switch runs exactly the calls already due."""
    ran: list[str] = []
    reactor.callLater(0, ran.append, "due")
    reactor.callLater(60, ran.append, "later")
    reactor.timeout()
    assert use_monotonic_time(reactor)
    reactor.runUntilCurrent()
    assert ran == ["due"]


def test_switching_inside_a_timed_call_fires_nothing_early(reactor: Any) -> None:
    """Switching from inside runUntilCurrent (a proactor started by a timer, a test) keeps pending timers and
    a self-rescheduling poll on time: runUntilCurrent compares them with the time it read before the switch."""
    ran: list[str] = []
    polls = [0]

    def poll() -> None:
        polls[0] += 1
        if polls[0] < 1000:
            reactor.callLater(0.01, poll)

    def switch() -> None:
        assert use_monotonic_time(reactor)
        reactor.callLater(0.01, poll)

    reactor.callLater(0, switch)
    reactor.callLater(60, ran.append, "60 s timer")
    reactor.timeout()
    reactor.runUntilCurrent()
    assert ran == []
    assert polls[0] <= 1, "the poll ran away inside one runUntilCurrent"


def test_a_wall_clock_step_does_not_reach_converted_timers(reactor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once converted, a wall-clock step (time.time jumping a year either way) neither fires nor delays a timer."""
    ran: list[str] = []
    reactor.callLater(60, ran.append, "deadline")
    assert use_monotonic_time(reactor)
    real_time = time.time
    for step in (YEAR_S, -YEAR_S):
        monkeypatch.setattr(time, "time", lambda step=step: real_time() + step)
        reactor.runUntilCurrent()
        assert ran == []
        assert reactor.timeout() == pytest.approx(60, abs=1)


def test_unconverted_reactor_is_what_the_step_breaks(reactor: Any) -> None:
    """Control: on the wall clock, a backward step delays a 60 s timer by a year and a forward step fires it at once."""
    ran: list[str] = []
    call = reactor.callLater(60, ran.append, "deadline")
    reactor.timeout()
    reactor.seconds = lambda: time.time() - YEAR_S
    reactor.runUntilCurrent()
    assert ran == []
    assert call.getTime() - reactor.seconds() == pytest.approx(YEAR_S + 60, abs=1)
    reactor.seconds = lambda: time.time() + YEAR_S
    reactor.runUntilCurrent()
    assert ran == ["deadline"]


def test_looping_calls_keep_their_interval(reactor: Any) -> None:
    """A LoopingCall started on the wall clock (plain and withCount) keeps its start time and next run."""
    plain = LoopingCall(_noop)
    plain.clock = reactor
    plain.start(2.0, now=False)
    counts: list[int] = []
    counted = LoopingCall.withCount(counts.append)
    counted.clock = reactor
    counted.start(1.0, now=True)
    assert counts == [1]
    before = (plain.starttime, plain.call.getTime(), counted.starttime, counted.call.getTime())

    assert use_monotonic_time(reactor)

    assert (plain.starttime, plain.call.getTime(), counted.starttime, counted.call.getTime()) == before
    assert plain.call.seconds is reactor.seconds and counted.call.seconds is reactor.seconds
    plain.stop()
    counted.stop()


def test_idempotent(reactor: Any) -> None:
    """A second call returns True and changes nothing."""
    assert use_monotonic_time(reactor)
    seconds = reactor.seconds
    call = reactor.callLater(10, _noop)
    assert use_monotonic_time(reactor) is True
    assert reactor.seconds is seconds and call.seconds is seconds


def test_a_reactor_with_its_own_clock_is_left_alone(reactor: Any) -> None:
    """A reactor whose seconds was replaced by something else keeps it (False)."""
    own = lambda: 42.0  # noqa: E731
    reactor.seconds = own
    assert use_monotonic_time(reactor) is False
    assert reactor.seconds is own


@pytest.mark.parametrize("thing", [Clock(), MemoryReactorClock(), object(), None], ids=["Clock", "MemoryReactorClock", "object", "None"])
def test_no_op_for_test_clocks_and_other_objects(thing: Any) -> None:
    """Clock, MemoryReactorClock and non-reactors are not touched (False)."""
    seconds = getattr(thing, "seconds", None)
    before = seconds() if seconds is not None else None
    assert use_monotonic_time(thing) is False
    assert not is_monotonic(thing)
    if seconds is not None:
        assert thing.seconds() == before


def _proactor(reactor: Any, **settings: Any) -> Proactor:
    return Proactor(ProactorSettings(long_name="d1.clock", short_name="c", **settings), reactor=reactor,
                    store=MemoryEventStore(clock=reactor))


def test_proactor_start_makes_its_reactor_monotonic(reactor: Any) -> None:
    """Proactor.startService converts its reactor first, before its children schedule anything."""
    proactor = _proactor(reactor)
    assert not is_monotonic(reactor)
    proactor.startService()
    assert is_monotonic(reactor)
    assert all(c.seconds is reactor.seconds for c in reactor.getDelayedCalls())


def test_proactor_opt_out_keeps_the_wall_clock(reactor: Any) -> None:
    """With monotonic_time=False the proactor leaves the reactor's seconds() alone."""
    proactor = _proactor(reactor, monotonic_time=False)
    proactor.startService()
    assert not is_monotonic(reactor)


def test_proactor_on_a_clock_keeps_the_test_time() -> None:
    """On a Clock the proactor's timers stay on the test's time."""
    clock = Clock()
    clock.advance(1000)
    _proactor(clock).startService()
    assert clock.seconds() == 1000
