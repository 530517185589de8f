"""Delivery guarantees pinned at the proactor level, Clock-driven, with the real FileEventStore in a tmp directory.

Each test here was checked against a deliberate breakage of the guarantee it names (see ``docs/delivery.rst``,
"How it is tested"): generate_event durable only after the fsync, store problems reported, the receiver's
duplicate window on disk, forwarded events acked only once durable in the middle, stats complete, and a problem
event for a failing actor (the durability of generate_event and the middle's ack are pinned in
``tests/test_proactor_events.py``).  On a Clock the store fsyncs inline at its group commit (a ``callLater``),
through an injected ``fsync`` (:class:`~tests.test_proactor_events.FsyncRecorder`) when a test must see or fail it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from gwproactor.actors import Actor
from gwproactor.config import ProactorSettings, StoreSettings
from gwproactor.errors import StoreClosed, StoreFull, StoreWriteError
from gwproactor.message import Codec, ProblemEvent, make_message
from gwproactor.proactor import Proactor
from gwproactor.store import FileEventStore, MemoryEventStore
from gwproactor_test.fakes import FakeBroker, FakeMQTTClient
from gwproactor_test.faulty_mqtt import link_faults
from tests.test_proactor_events import ATN, SCADA1, FsyncRecorder, Recording, event, link_to, settings

PROBLEM = ProblemEvent.TYPE_NAME


# --- helpers --------------------------------------------------------------------------------------


def settle(clock: Clock, seconds: float = 0.2, step: float = 0.01) -> None:
    """Advance ``clock`` in small steps (group commits, routing, the fake broker's deliveries)."""
    for _ in range(round(seconds / step)):
        clock.advance(step)


def upstream_settings(store_dir: Path | None = None, **store: Any) -> ProactorSettings:
    """A proactor with one upstream link (to ATN) whose own store lives in ``store_dir``."""
    return ProactorSettings(
        long_name=SCADA1,
        short_name="s",
        links={"parent": link_to(ATN, "a", upstream=True)},
        store=StoreSettings(directory=store_dir, **store),
    )


def stored_events(p: Proactor) -> list[Any]:
    """The events pending in ``p``'s store, decoded, oldest first."""
    return [p.codec.decode_payload(p.store.read(i)) for i in p.store.pending_ids()]


def stored_problems(p: Proactor) -> list[Any]:
    return [e for e in stored_events(p) if e.type_name == PROBLEM]


# --- (a) generate_event fires only once the event is durable -------------------------------------


def test_generate_event_fails_when_the_fsync_fails(tmp_path: Path) -> None:
    """When the fsync covering an event fails, generate_event's Deferred fails (StoreWriteError) instead of firing."""
    clock = Clock()
    fsync = FsyncRecorder()
    store = FileEventStore.open(str(tmp_path), clock=clock, fsync=fsync)
    p = Proactor(upstream_settings(), reactor=clock, store=store, brokers={"default": FakeMQTTClient()})
    fsync.fail = True
    d = p.generate_event(event(SCADA1, 1))
    results: list[Any] = []
    d.addBoth(results.append)
    assert results == [], "not durable before the group commit"
    settle(clock)
    assert len(results) == 1 and results[0].check(StoreWriteError), results
    store.close()


def test_generate_event_fails_when_the_store_refuses_it(tmp_path: Path) -> None:
    """generate_event fails with StoreFull when reject_new refuses the event, and with StoreClosed once the store is closed."""
    clock = Clock()
    store = FileEventStore.open(str(tmp_path), clock=clock, max_bytes=1000, full_policy="reject_new")
    p = Proactor(upstream_settings(), reactor=clock, store=store, brokers={"default": FakeMQTTClient()})
    big = ProblemEvent(src=SCADA1, problem_type="warning", summary="big", details="x" * 2000)
    results: list[Any] = []
    p.generate_event(big).addBoth(results.append)
    settle(clock)
    assert results[0].check(StoreFull), results
    store.close()
    p.generate_event(event(SCADA1, 2)).addBoth(results.append)
    assert results[1].check(StoreClosed), results


# --- (b) store problems become problem events ----------------------------------------------------


def test_full_policy_becomes_a_problem_event(tmp_path: Path) -> None:
    """When drop_oldest applies in the proactor's own store, a problem event saying so is recorded for upstream."""
    clock = Clock()
    p = Proactor(upstream_settings(tmp_path, max_bytes=4096, segment_bytes=4096), reactor=clock,
                 brokers={"default": FakeMQTTClient()})
    for n in range(40):
        p.generate_event(event(SCADA1, n))
    settle(clock)
    assert p.store.stats()["dropped"] > 0
    full = [e for e in stored_problems(p) if e.summary.startswith("event store: event store full: dropped")]
    assert full and full[-1].src == SCADA1 and "policy drop_oldest" in full[-1].details
    p.store.close()


def test_corrupt_record_set_aside_at_open_becomes_a_problem_event(tmp_path: Path) -> None:
    """A corrupt record that recovery sets aside when the proactor opens its store becomes a problem event."""
    clock = Clock()
    first = FileEventStore.open(str(tmp_path), clock=clock, sync="never")
    for n in range(3):
        ev = ProblemEvent(src=SCADA1, problem_type="warning", summary=f"before {n}", details="p" * 100)
        first.append(ev.message_id, Codec().encode_payload(ev))
    first.close()
    [segment] = [f for f in os.listdir(tmp_path) if f.startswith("seg-") and f.endswith(".log")]
    data = bytearray((tmp_path / segment).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = b"XXXXXXXX"  # inside the second record: its CRC fails
    (tmp_path / segment).write_bytes(bytes(data))
    p = Proactor(upstream_settings(tmp_path), reactor=clock, brokers={"default": FakeMQTTClient()})
    assert p.store.stats()["corrupt_records"] == 1
    settle(clock)
    [problem] = [e for e in stored_problems(p) if "recovery set aside" in e.summary]
    assert problem.summary.startswith("event store: event store recovery set aside 1 corrupt records")
    assert segment in problem.details
    p.store.close()


# --- (c) the receiver's duplicate window is on disk ------------------------------------------------


def test_restarted_parent_drops_an_event_it_accepted_before_the_restart(tmp_path: Path) -> None:
    """A parent restarted on the same store directory drops (and acks) an event it accepted before, whose ack was lost."""
    clock = Clock()
    hub = FakeBroker(clock)
    child = Recording(settings(SCADA1, "s", {"parent": link_to(ATN, "a", upstream=True)}), reactor=clock,
                      store=MemoryEventStore(clock=clock), brokers={"default": hub.client("child")})

    def make_parent(client: FakeMQTTClient) -> Recording:
        return Recording(
            ProactorSettings(long_name=ATN, short_name="a", links={"child": link_to(SCADA1, "s")},
                             store=StoreSettings(directory=tmp_path / "parent")),
            reactor=clock, brokers={"default": client},
        )

    first_client = hub.client("parent")
    parent = make_parent(first_client)
    child.startService()
    parent.startService()
    hub.connect_all()
    settle(clock)
    link_faults(parent.links["child"]).hold_acks = True
    ev = event(SCADA1, 1)
    child.generate_event(ev)
    settle(clock)
    assert [e.message_id for e in parent.seen].count(ev.message_id) == 1
    link_faults(parent.links["child"]).discard_held()  # the ack is lost
    done: list[int] = []
    parent.shutdown("restart").addCallback(done.append)
    settle(clock, 10.0, 0.1)
    assert done == [0]
    first_client.disconnect()
    hub.clients.remove(first_client)
    assert ev.message_id in child.store.pending_ids(), "the child still waits for the ack"

    restarted = make_parent(hub.client("parent again"))
    restarted.startService()
    hub.connect_all()
    settle(clock, 30.0, 0.1)  # the child's next ping finds the new parent; the outbox sends its store again
    assert child.links["parent"].is_active
    assert child.store.pending_ids() == [], "the duplicate was acked"
    assert ev.message_id not in [e.message_id for e in restarted.seen]
    assert restarted.counters["duplicates_dropped"] >= 1
    restarted.shutdown("end")
    settle(clock, 10.0, 0.1)


# --- (e) stats report links, outbox and store --------------------------------------------------------


def test_stats_report_links_outbox_and_store(tmp_path: Path) -> None:
    """Proactor.stats() is JSON-ready and reports each link, the outbox window and the store's counters."""
    clock = Clock()
    hub = FakeBroker(clock)
    child = Recording(upstream_settings(tmp_path / "child"), reactor=clock, brokers={"default": hub.client("child")})
    parent = Recording(settings(ATN, "a", {"child": link_to(SCADA1, "s")}), reactor=clock,
                       store=MemoryEventStore(clock=clock), brokers={"default": hub.client("parent")})
    child.startService()
    parent.startService()
    hub.connect_all()
    settle(clock)
    link_faults(parent.links["child"]).hold_acks = True
    for n in range(3):
        child.generate_event(event(SCADA1, n))
    settle(clock)
    stats = json.loads(json.dumps(child.stats()))
    assert stats["links"]["parent"]["state"] == "active"
    assert stats["links"]["parent"]["upstream"] is True
    assert stats["links"]["parent"]["in_flight"] >= 1
    assert stats["outbox"]["active"] is True and stats["outbox"]["in_flight"] >= 1
    assert stats["outbox"]["in_flight"] + stats["outbox"]["queued"] == 3
    assert stats["store"]["pending"] == len(child.store.pending_ids()) >= 3
    assert stats["store"]["fsyncs"] > 0 and stats["store"]["segments"] >= 1
    link_faults(parent.links["child"]).hold_acks = False
    link_faults(parent.links["child"]).release_acks()
    settle(clock)
    stats = child.stats()
    assert stats["outbox"]["in_flight"] == 0 and stats["outbox"]["acked"] >= 3
    assert stats["store"]["pending"] == 0 and stats["store"]["acked"] >= 3
    child.store.close()


# --- (f) a failing actor handler becomes a problem event ---------------------------------------------


@attrs.frozen
class Poke:
    """A payload for these tests."""

    TYPE_NAME: ClassVar[str] = "test.poke"
    n: int


class Failing(Actor):
    """Raises on ``Poke(1)``, returns a failed Deferred on ``Poke(2)``."""

    def receive(self, message: Any) -> Any:
        n = message.payload.n
        if n == 1:
            raise RuntimeError("bad poke 1")
        d: Deferred = Deferred()
        d.errback(ValueError(f"bad poke {n}"))
        return d


@pytest.mark.parametrize(("n", "error"), [(1, "RuntimeError'>: bad poke 1"), (2, "ValueError'>: bad poke 2")])
def test_failing_actor_handler_becomes_a_problem_event(tmp_path: Path, n: int, error: str) -> None:
    """An exception (or failed Deferred) in an actor's receive is recorded as an error problem event naming the actor."""
    clock = Clock()
    p = Proactor(upstream_settings(tmp_path), reactor=clock, brokers={"default": FakeMQTTClient()})
    p.add_actor(Failing("flaky"))
    p.startService()
    p.send(make_message("test", "flaky", Poke(n)))
    settle(clock)
    [problem] = [e for e in stored_problems(p) if "failed on a" in e.summary]
    assert problem.problem_type == "error"
    assert problem.summary == "actor flaky failed on a test.poke message"
    assert error in problem.details
    p.shutdown("end")
    settle(clock, 10.0, 0.1)


def test_received_records_are_held_only_when_every_broker_has_a_send_barrier(tmp_path: Any) -> None:
    """With real broker connections, the received-id records are held and flushed by their send barrier; with a
    broker that has none (a test fake), each record is written at once, as before."""
    from twisted.internet.testing import MemoryReactorClock

    from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings
    from gwproactor.proactor import Proactor
    from gwproactor_test.fakes import FakeMQTTClient

    def settings(directory: Any) -> ProactorSettings:
        return ProactorSettings(
            long_name="d1.hold", short_name="h",
            brokers={"default": BrokerSettings(endpoint="tcp:host=127.0.0.1:port=1")},
            links={"c": LinkSettings(peer_long_name="d1.hold.c", peer_short_name="c")},
            store=StoreSettings(directory=directory, sync_policy="never"),
        )

    reactor = MemoryReactorClock()
    real = Proactor(settings(tmp_path / "real"), reactor=reactor)
    real.startService()
    try:
        received = real.received_ids
        broker = real.brokers["default"]
        assert received.flush in broker._send_barriers
        received.remember("e1")
        assert not (tmp_path / "real" / "received.log").read_bytes()  # held
        broker.mqtt_before_send(None)  # what the adapter calls before a send
        assert b"e1" in (tmp_path / "real" / "received.log").read_bytes()
        received.remember("e2")
        reactor.advance(0)  # the fallback flush, within the reactor turn
        assert b"e2" in (tmp_path / "real" / "received.log").read_bytes()
    finally:
        real.stopService()

    fake = Proactor(settings(tmp_path / "fake"), reactor=MemoryReactorClock(), brokers={"default": FakeMQTTClient()})
    fake.startService()
    try:
        fake.received_ids.remember("e1")
        assert b"e1" in (tmp_path / "fake" / "received.log").read_bytes()  # written at once
    finally:
        fake.stopService()
