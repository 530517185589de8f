"""The proactor's operational wiring: supervision, rate-limited problems, the HTTP server, the fakes' interfaces."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import attrs
import pytest_twisted
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gwproactor.actors import Actor
from gwproactor.actors.supervision import RestartPolicy
from gwproactor.config import HTTPSettings, ProactorSettings
from gwproactor.interfaces import IMQTTClient, IProactor
from gwproactor.message import make_message
from gwproactor.proactor import Proactor
from gwproactor.store import MemoryEventStore
from gwproactor_test.fakes import FakeBroker, FakeMQTTClient, ProactorStub


@attrs.frozen
class Poke:
    """A payload for these tests."""

    TYPE_NAME: ClassVar[str] = "test.poke"
    n: int


class Flaky(Actor):
    """Fails on every message whose number is in ``bad``; counts starts."""

    def __init__(self, name: str, bad: set[int]) -> None:
        super().__init__(name)
        self.bad = bad
        self.starts = 0
        self.got: list[int] = []

    def startService(self) -> None:
        super().startService()
        self.starts += 1

    def receive(self, message: Any) -> None:
        self.got.append(message.payload.n)
        if message.payload.n in self.bad:
            raise RuntimeError(f"bad {message.payload.n}")


class Recording(Proactor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[Any] = []

    def handle_event(self, link: Any, event: Any) -> Any:
        self.seen.append(event)


def make(clock: Clock, policy: RestartPolicy | None = None, **settings: Any) -> Recording:
    return Recording(
        ProactorSettings(long_name="d1.ops", short_name="o", **settings),
        reactor=clock,
        store=MemoryEventStore(clock=clock),
        restart_policy=policy,
    )


def poke(n: int) -> Any:
    return make_message("test", "flaky", Poke(n))


def test_fakes_provide_interfaces() -> None:
    """FakeMQTTClient, FakeBroker clients and ProactorStub subclasses provide their interfaces."""

    @implementer(IProactor)
    class Stub(ProactorStub):
        pass

    assert verifyObject(IMQTTClient, FakeMQTTClient())
    assert verifyObject(IMQTTClient, FakeBroker(Clock()).client())
    assert verifyObject(IProactor, Stub())
    assert verifyObject(IProactor, make(Clock()))


def test_failing_actor_is_restarted_and_gets_held_messages() -> None:
    """An actor that fails is restarted after the backoff; messages sent meanwhile reach it afterwards."""
    clock = Clock()
    p = make(clock, RestartPolicy(max_restarts=3, period_s=60, backoff_initial_s=1, backoff_cap_s=4))
    flaky = p.add_actor(Flaky("flaky", bad={1}))
    p.startService()
    p.send(poke(1))
    clock.advance(0)
    p.send(poke(2))
    clock.advance(0)
    assert flaky.got == [1]  # 2 is held while the actor restarts
    clock.advance(1)
    clock.advance(0)
    assert flaky.starts == 2 and flaky.got == [1, 2]
    assert p.counters["actor_restarts"] == 1
    restarts = [e for e in p.seen if e.type_name == "gridworks.event.problem" and "restarted" in e.summary]
    assert len(restarts) == 1


def test_actor_failing_past_policy_shuts_down_with_exit_1() -> None:
    """Past the restart policy the proactor shuts down in order with exit status 1."""
    clock = Clock()
    p = make(clock, RestartPolicy(max_restarts=1, period_s=60, backoff_initial_s=1, backoff_cap_s=1))
    p.add_actor(Flaky("flaky", bad={1, 2, 3}))
    p.startService()
    exit_codes: list[int] = []
    p.when_shut_down().addCallback(exit_codes.append)
    for n in (1, 2, 3):
        p.send(poke(n))
        for _ in range(3):
            clock.advance(1)
    for _ in range(10):
        clock.advance(1)
    assert p.counters["actor_escalations"] == 1
    assert exit_codes == [1]


def test_problem_reports_are_rate_limited() -> None:
    """Twelve identical problems in a minute make five problem events; the next one says how many were suppressed."""
    clock = Clock()
    p = make(clock)
    for _ in range(12):
        p.report_problem("warning", "same thing", "again")
    problems = [e for e in p.seen if e.type_name == "gridworks.event.problem"]
    assert len(problems) == 5
    assert p.counters["problems_suppressed"] == 7
    clock.advance(61)
    p.report_problem("warning", "same thing", "later")
    last = [e for e in p.seen if e.type_name == "gridworks.event.problem"][-1]
    assert "7 more like this" in last.details


@pytest_twisted.ensureDeferred
async def test_http_server_from_settings() -> None:
    """With http.enabled the proactor serves /health and /stats (links, outbox and store included) on the configured port."""
    import treq
    from twisted.internet import reactor

    from gwproactor.config import LinkSettings
    from gwproactor_test.broker import free_port

    port = free_port("127.0.0.1")
    p = Proactor(
        ProactorSettings(
            long_name="d1.web",
            short_name="w",
            http=HTTPSettings(enabled=True, port=port),
            links={"parent": LinkSettings(peer_long_name="d1", peer_short_name="a", upstream=True)},
        ),
        reactor=reactor,
        store=MemoryEventStore(clock=reactor),
        brokers={"default": FakeMQTTClient()},
    )
    p.startService()
    try:
        await p.web.when_listening()
        response = await treq.get(f"http://127.0.0.1:{port}/health")
        body = json.loads(await response.content())
        assert response.code == 503 and body["ok"] is False and body["links"] == {"parent": "connecting"}
        response = await treq.get(f"http://127.0.0.1:{port}/stats")
        stats = json.loads(await response.content())
        assert stats["name"] == "d1.web"
        assert stats["links"]["parent"]["state"] == "connecting" and stats["links"]["parent"]["upstream"] is True
        assert stats["outbox"]["active"] is False and stats["outbox"]["in_flight"] == 0
        assert stats["store"]["pending"] == len(p.store.pending_ids()) >= 1  # the startup event waits for the link
    finally:
        await p.stopService()


def test_http_disabled_by_default() -> None:
    """Without http.enabled no web service is made."""
    assert make(Clock()).web is None


def test_no_restart_while_shutting_down() -> None:
    """Failures during a shutdown are not restarted."""
    clock = Clock()
    p = make(clock)
    flaky = p.add_actor(Flaky("flaky", bad={1}))
    p.startService()
    p.shutdown("test")
    assert p.actor_failed(flaky, Failure(RuntimeError("x"))).result == "ignored"
    assert p.counters["actor_restarts"] == 0


@pytest_twisted.ensureDeferred
async def test_systemd_ready_and_stopping(tmp_path: Any, monkeypatch: Any) -> None:
    """Under systemd (NOTIFY_SOCKET) the runner's proactor sends READY=1 once started and STOPPING=1 when it stops."""
    from twisted.internet import reactor
    from twisted.internet.protocol import DatagramProtocol

    from gwproactor_test.wait import await_for

    received: list[bytes] = []

    class Systemd(DatagramProtocol):
        def datagramReceived(self, data: bytes, addr: Any) -> None:
            received.append(data)

    path = str(tmp_path / "notify")
    port = reactor.listenUNIXDatagram(path, Systemd())
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    p = Proactor(ProactorSettings(long_name="d1.sd", short_name="sd"), reactor=reactor, store=MemoryEventStore(clock=reactor))
    assert p.systemd is None  # the constructor never reads NOTIFY_SOCKET
    from gwproactor.runner import attach_systemd

    assert attach_systemd(p) is p.systemd is not None
    try:
        p.startService()
        await await_for(lambda: any(b"READY=1" in r for r in received), 10, describe=lambda: repr(received))
        await await_for(lambda: sum(b"WATCHDOG=1" in r for r in received) >= 2, 10, describe=lambda: repr(received))
        await p.stopService()
        await await_for(lambda: any(b"STOPPING=1" in r for r in received), 10, describe=lambda: repr(received))
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_store_fsyncs_in_its_own_thread_by_default(tmp_path) -> None:
    """On a real reactor the proactor's store fsyncs in its thread; with fsync_in_thread off, or on a Clock, inline."""
    from twisted.internet import reactor

    from gwproactor.config import StoreSettings

    for setting, reactor_, threaded in ((True, reactor, True), (False, reactor, False), (True, Clock(), False)):
        directory = tmp_path / f"{setting}-{type(reactor_).__name__}"
        p = Proactor(
            ProactorSettings(long_name="d1.ops", short_name="o",
                             store=StoreSettings(directory=directory, fsync_in_thread=setting)),
            reactor=reactor_,
        )
        assert (p.store._fsync_thread is not None) is threaded, (setting, reactor_)
        await p.store.close()
