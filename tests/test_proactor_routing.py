"""Unit tests of the proactor's actor hosting and routing (Clock-driven), plus thread and asyncio helpers."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import attrs
import pytest
import pytest_twisted
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from gwproactor.actors import Actor
from gwproactor.errors import DuplicateActorError, UnknownActorError
from gwproactor.interfaces import IActor, IProactor
from gwproactor.message import make_message
from gwproactor.config import ProactorSettings
from gwproactor.proactor import Proactor
from gwproactor.store import MemoryEventStore


@attrs.frozen
class Note:
    """An application payload for these tests."""

    TYPE_NAME: ClassVar[str] = "test.note"
    text: str


class Recorder(Actor):
    """Records what it receives; optionally fails on some messages."""

    def __init__(self, name: str, fail_on: str | None = None, deferred_fail_on: str | None = None) -> None:
        super().__init__(name)
        self.received: list[Any] = []
        self.fail_on = fail_on
        self.deferred_fail_on = deferred_fail_on
        self.waiters: list[tuple[int, Deferred]] = []

    def receive(self, message: Any) -> Any:
        self.received.append(message)
        for n, d in list(self.waiters):
            if len(self.received) >= n:
                self.waiters.remove((n, d))
                d.callback(self.received)
        text = message.payload.text
        if text == self.fail_on:
            raise RuntimeError("boom in receive")
        if text == self.deferred_fail_on:
            return fail(RuntimeError("boom in deferred"))
        return succeed(None)

    def wait_for(self, n: int) -> Deferred:
        d: Deferred = Deferred()
        if len(self.received) >= n:
            d.callback(self.received)
        else:
            self.waiters.append((n, d))
        return d

    def texts(self) -> list[str]:
        return [m.payload.text for m in self.received]


def note(src: str, dst: str, text: str) -> Any:
    return make_message(src, dst, Note(text))


def make_proactor(name: str, reactor: Any) -> Proactor:
    """A proactor with no links and an in-memory store."""
    return Proactor(
        ProactorSettings(long_name=name, short_name="t"), reactor=reactor, store=MemoryEventStore(clock=reactor)
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def proactor(clock: Clock) -> Proactor:
    return make_proactor("d1.test", clock)


@pytest.fixture
def captured_logs():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def test_interfaces_verified(proactor: Proactor) -> None:
    """Proactor provides IProactor and Actor provides IActor."""
    assert verifyObject(IProactor, proactor)
    assert verifyObject(IActor, Actor("a"))


def test_routes_by_destination(proactor: Proactor, clock: Clock) -> None:
    """A message is delivered to the actor named by Header.Dst, on a later reactor turn."""
    a, b = proactor.add_actor(Recorder("a")), proactor.add_actor(Recorder("b"))
    proactor.startService()
    proactor.send(note("a", "b", "hello"))
    assert b.received == []
    clock.advance(0)
    assert b.texts() == ["hello"] and a.received == []
    assert proactor.stats()["router"]["delivered"] == 1


def test_fifo_per_sender(proactor: Proactor, clock: Clock) -> None:
    """Messages from one sender arrive in the order they were sent, even past one delivery batch."""
    b = proactor.add_actor(Recorder("b"))
    proactor.startService()
    for i in range(1200):
        proactor.send(note("a", "b", str(i)))
    for _ in range(5):
        clock.advance(0)
    assert b.texts() == [str(i) for i in range(1200)]


def test_queued_before_start(proactor: Proactor, clock: Clock) -> None:
    """Messages sent before startService are queued and delivered after start."""
    b = proactor.add_actor(Recorder("b"))
    proactor.send(note("a", "b", "early"))
    clock.advance(0)
    assert b.received == []
    assert proactor.stats()["queued"] == 1
    proactor.startService()
    clock.advance(0)
    assert b.texts() == ["early"]


def test_dead_letters_counted_and_log_rate_limited(proactor: Proactor, clock: Clock, captured_logs: list) -> None:
    """Unknown destinations are counted as dead letters; the log line is rate-limited per destination."""
    proactor.startService()
    for _ in range(5):
        proactor.send(note("a", "nobody", "x"))
    clock.advance(0)
    stats = proactor.stats()["router"]
    assert stats["dead_letters"] == 5
    assert stats["dead_letters_by_dst"] == {"nobody": 5}
    dead = [e for e in captured_logs if "dead letter" in e.get("log_format", "")]
    assert len(dead) == 1
    clock.advance(11)
    proactor.send(note("a", "nobody", "x"))
    clock.advance(0)
    dead = [e for e in captured_logs if "dead letter" in e.get("log_format", "")]
    assert len(dead) == 2 and dead[-1]["suppressed"] == 4


def test_failure_isolated(proactor: Proactor, clock: Clock, captured_logs: list) -> None:
    """An exception or failed Deferred in receive is logged and counted, and delivery goes on."""
    bad = proactor.add_actor(Recorder("bad", fail_on="raise", deferred_fail_on="defer"))
    good = proactor.add_actor(Recorder("good"))
    failures: list = []
    proactor._actor_failed = lambda actor, message, failure: failures.append((actor.name, failure.value))
    proactor.router.on_failure = proactor._actor_failed
    proactor.startService()
    proactor.send(note("x", "bad", "raise"))
    proactor.send(note("x", "good", "1"))
    proactor.send(note("x", "bad", "defer"))
    proactor.send(note("x", "good", "2"))
    proactor.send(note("x", "bad", "fine"))
    clock.advance(0)
    assert good.texts() == ["1", "2"]
    assert bad.texts() == ["raise", "defer", "fine"]
    stats = proactor.stats()["router"]
    assert stats["failures"] == 2 and stats["actors"]["bad"]["failures"] == 2
    assert [name for name, _ in failures] == ["bad", "bad"]
    logged = [e for e in captured_logs if e.get("log_failure") is not None and e.get("actor") == "bad"]
    assert len(logged) == 2


def test_duplicate_names_refused(proactor: Proactor) -> None:
    """Adding a second actor with a taken name raises DuplicateActorError and changes nothing."""
    first = proactor.add_actor(Recorder("a"))
    with pytest.raises(DuplicateActorError):
        proactor.add_actor(Recorder("a"))
    assert proactor.get_actor("a") is first
    assert proactor.actor_names == ["a"]


def test_unknown_actor_lookup(proactor: Proactor) -> None:
    """get_actor of an unknown name raises UnknownActorError (a KeyError)."""
    with pytest.raises(UnknownActorError):
        proactor.get_actor("missing")
    with pytest.raises(KeyError):
        proactor.get_actor("missing")


def test_non_actor_refused(proactor: Proactor) -> None:
    """Objects that do not provide IActor are refused."""
    with pytest.raises(TypeError):
        proactor.add_actor(object())


def test_actor_send_needs_proactor() -> None:
    """An actor that is not hosted explains how to fix it when asked to send."""
    with pytest.raises(RuntimeError, match="add_actor"):
        Actor("lonely").send_to("x", Note("hi"))


def test_actor_send_to(proactor: Proactor, clock: Clock) -> None:
    """Actor.send_to wraps a payload with the actor as Src and routes it."""
    a, b = proactor.add_actor(Recorder("a")), proactor.add_actor(Recorder("b"))
    proactor.startService()
    a.send_to("b", Note("via send_to"))
    clock.advance(0)
    assert b.texts() == ["via send_to"] and b.received[0].header.src == "a"


def test_stop_in_reverse_order(proactor: Proactor, clock: Clock) -> None:
    """stopService stops hosted services one after another, last added first."""
    order: list[str] = []

    class Slow(Actor):
        def stopService(self):
            super().stopService()
            order.append(self.name)
            d: Deferred = Deferred()
            clock.callLater(1, d.callback, None)
            return d

    for name in ("first", "second", "third"):
        proactor.add_actor(Slow(name))
    proactor.startService()
    done = proactor.stopService()
    assert order == ["third"]
    clock.advance(1)
    assert order == ["third", "second"]
    clock.advance(1)
    clock.advance(1)
    assert order == ["third", "second", "first"]
    assert done.called


def test_actor_added_while_running_is_started(proactor: Proactor) -> None:
    """An actor added to a running proactor is started at once."""
    proactor.startService()
    late = proactor.add_actor(Recorder("late"))
    assert late.running


@pytest_twisted.ensureDeferred
async def test_send_threadsafe_from_thread() -> None:
    """send_threadsafe from a worker thread (and from the reactor thread) reaches the actor."""
    from twisted.internet import reactor

    p = make_proactor("d1.threads", reactor)
    b = p.add_actor(Recorder("b"))
    p.startService()
    try:
        threads_seen: list[str] = []

        def in_thread() -> None:
            threads_seen.append(threading.current_thread().name)
            for i in range(100):
                p.send_threadsafe(note("worker", "b", str(i)))

        await p.run_blocking(in_thread)
        p.send_threadsafe(note("reactor", "b", "from reactor thread"))
        await b.wait_for(101)
        assert b.texts() == [str(i) for i in range(100)] + ["from reactor thread"]
        assert threads_seen and threads_seen[0] != threading.current_thread().name
    finally:
        await p.stopService()


@pytest_twisted.ensureDeferred
async def test_run_blocking_returns_result_and_errors() -> None:
    """run_blocking returns the callable's result, and its exception as a failure."""
    from twisted.internet import reactor

    p = make_proactor("d1.blocking", reactor)
    assert await p.run_blocking(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await p.run_blocking(lambda: 1 / 0)


@pytest_twisted.ensureDeferred
async def test_actor_awaits_asyncio_coroutine() -> None:
    """Under the asyncio reactor an actor can await an asyncio coroutine inside receive."""
    from twisted.internet import reactor

    if type(reactor).__name__ != "AsyncioSelectorReactor":
        pytest.skip("needs --reactor=asyncio (CI runs the suite a second time with it)")
    import asyncio

    done: Deferred = Deferred()

    class AsyncActor(Actor):
        def receive(self, message: Any) -> Deferred:
            async def work() -> str:
                loop = asyncio.get_running_loop()
                future = loop.create_future()
                loop.call_soon(future.set_result, message.payload.text.upper())
                return await future

            d = Deferred.fromFuture(asyncio.ensure_future(work()))
            d.addCallback(done.callback)
            return d

    p = make_proactor("d1.asyncio", reactor)
    p.add_actor(AsyncActor("aio"))
    p.startService()
    try:
        p.send(note("x", "aio", "hello"))
        assert await done == "HELLO"
    finally:
        await p.stopService()


def test_router_counts_per_actor_stats(proactor: Proactor, clock: Clock) -> None:
    """Per-actor delivered counts are kept in the router stats."""
    proactor.add_actor(Recorder("a"))
    proactor.add_actor(Recorder("b"))
    proactor.startService()
    for dst in ("a", "b", "b"):
        proactor.send(note("x", dst, "m"))
    clock.advance(0)
    actors = proactor.stats()["router"]["actors"]
    assert actors["a"]["delivered"] == 1 and actors["b"]["delivered"] == 2


def test_service_is_not_started_twice(proactor: Proactor) -> None:
    """Proactor is a MultiService: a plain child service is started with it."""
    child = Service()
    child.setServiceParent(proactor)
    proactor.startService()
    assert child.running
