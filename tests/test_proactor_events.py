"""Clock-driven tests of event delivery between proactors joined by the in-memory fake broker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from gwproactor.config import LinkSettings, ProactorSettings
from gwproactor.interfaces import IEventStore, ILinkListener, IProactor
from gwproactor.links.machine import LinkState
from gwproactor.message import Codec, Event, ProblemEvent, StartupEvent, make_message, topic_for
from gwproactor.proactor import Proactor
from gwproactor.store import FileEventStore, MemoryEventStore
from gwproactor_test.fakes import FakeBroker
from gwproactor_test.faulty_mqtt import link_faults

ATN, SCADA1, SCADA2 = "d1.isone.ct", "d1.isone.ct.scada1", "d1.isone.ct.scada1.scada2"


class Recording(Proactor):
    """A proactor that records the events its application sees."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[Any] = []
        self.activations: list[str] = []
        self.deactivations: list[tuple[str, str]] = []

    def handle_event(self, link: Any, event: Any) -> Any:
        self.seen.append(event)
        return super().handle_event(link, event)

    def link_activated(self, link: Any) -> None:
        self.activations.append(link.link_name)

    def link_deactivated(self, link: Any, reason: str) -> None:
        self.deactivations.append((link.link_name, reason))

    def app_events(self) -> list[Any]:
        return [e for e in self.seen if e.src != self.name and not e.type_name.startswith("gridworks.event.comm")]


def settings(long_name: str, short_name: str, links: dict[str, LinkSettings]) -> ProactorSettings:
    return ProactorSettings(long_name=long_name, short_name=short_name, links=links)


def link_to(peer_long: str, peer_short: str, upstream: bool = False, window: int = 50, batch_max: int = 100) -> LinkSettings:
    return LinkSettings(
        batch_max=batch_max,
        peer_long_name=peer_long,
        peer_short_name=peer_short,
        upstream=upstream,
        ack_timeout_s=5,
        heartbeat_s=10,
        receive_deadline_s=30,
        window=window,
    )


class Pair:
    """A child (scada1) with an upstream link to a parent (atn), on one Clock and one fake broker."""

    def __init__(self, window: int = 50, batch_max: int = 100, parent_batch_max: int = 100) -> None:
        self.clock = Clock()
        self.hub = FakeBroker(self.clock)
        self.child_client = self.hub.client("child")
        self.parent_client = self.hub.client("parent")
        self.child = Recording(
            settings(SCADA1, "s", {"parent": link_to(ATN, "a", upstream=True, window=window, batch_max=batch_max)}),
            reactor=self.clock,
            store=MemoryEventStore(clock=self.clock),
            brokers={"default": self.child_client},
        )
        self.parent = Recording(
            settings(ATN, "a", {"child": link_to(SCADA1, "s", batch_max=parent_batch_max)}),
            reactor=self.clock,
            store=MemoryEventStore(clock=self.clock),
            brokers={"default": self.parent_client},
        )

    def turn(self, n: int = 10) -> None:
        for _ in range(n):
            self.clock.advance(0)

    def start(self) -> None:
        self.child.startService()
        self.parent.startService()
        self.hub.connect_all()
        self.turn()


def event(src: str, n: int) -> Event:
    return ProblemEvent(src=src, problem_type="warning", summary=f"event {n}", details="")


@attrs.define(eq=False)
class FsyncRecorder:
    """An ``fsync`` for FileEventStore that records the path of each descriptor it syncs, and can be made to fail."""

    paths: list[str] = attrs.field(factory=list)
    fail: bool = False

    def __call__(self, fd: int) -> None:
        if self.fail:
            raise OSError(5, "Input/output error (injected)")
        os.fsync(fd)
        self.paths.append(os.readlink(f"/proc/self/fd/{fd}"))


@attrs.define(eq=False)
class HeldFsync:
    """An ``fsync_runner`` for FileEventStore that holds every fsync batch until :meth:`release_all`."""

    batches: list[tuple[Callable[[], list], Deferred]] = attrs.field(factory=list)

    def __call__(self, batch: Callable[[], list]) -> Deferred:
        d: Deferred = Deferred()
        self.batches.append((batch, d))
        return d

    def release_all(self) -> int:
        """Run the held batches (and those their completion starts); returns how many ran."""
        n = 0
        while self.batches:
            batch, d = self.batches.pop(0)
            d.callback(batch())
            n += 1
        return n


def test_proactor_interfaces() -> None:
    """A wired proactor provides IProactor, its links' listener ILinkListener; its store provides IEventStore."""
    p = Pair()
    assert verifyObject(IProactor, p.child)
    assert not ILinkListener.providedBy(p.child)
    for link in p.child.links.values():
        assert verifyObject(ILinkListener, link.listener) and link.listener is not p.child
    assert verifyObject(IEventStore, p.child.store)


def test_pair_comes_up_active() -> None:
    """Both sides of a pair reach active and call link_activated once."""
    p = Pair()
    p.start()
    assert p.child.link_states() == {"parent": "active"}
    assert p.parent.link_states() == {"child": "active"}
    assert p.child.activations == ["parent"] and p.parent.activations == ["child"]


def test_events_delivered_once_and_leave_store() -> None:
    """Events generated while active reach the parent's application once, in order, and leave the child's store."""
    p = Pair()
    p.start()
    for n in range(20):
        p.child.generate_event(event(SCADA1, n))
    p.turn()
    assert [e.summary for e in p.parent.app_events() if e.type_name == "gridworks.event.problem"] == [
        f"event {n}" for n in range(20)
    ]
    assert p.child.store.pending_ids() == []
    assert p.child.outbox.stats.acked >= 20


def test_generate_event_fires_when_durable(tmp_path: Path) -> None:
    """generate_event's Deferred fires with the event id only after an fsync of the segment file holding the event."""
    clock = Clock()
    fsync = FsyncRecorder()
    store = FileEventStore.open(str(tmp_path), clock=clock, fsync=fsync)
    child = Recording(
        settings(SCADA1, "s", {"parent": link_to(ATN, "a", upstream=True)}),
        reactor=clock,
        store=store,
        brokers={"default": FakeBroker(clock).client("child")},
    )
    ev = event(SCADA1, 1)
    d = child.generate_event(ev)
    assert not d.called, "written, not yet synced: the group commit runs on a later turn"
    assert ev.message_id in store.pending_ids()
    at_firing: list[tuple[str, list[str]]] = []
    d.addCallback(lambda result: at_firing.append((result, list(fsync.paths))))
    clock.advance(0)
    [(result, synced)] = at_firing
    assert result == ev.message_id
    segments = [path for path in synced if os.path.basename(path).startswith("seg-") and path.endswith(".log")]
    assert segments, f"no segment was fsynced before the Deferred fired: {synced}"
    assert ev.message_id.encode() in Path(segments[-1]).read_bytes()
    store.close()


def test_backlog_drains_after_parent_comes_up() -> None:
    """Events generated while the parent is away wait in the store and are all delivered when it comes up."""
    p = Pair()
    p.child.startService()
    p.child_client.connect()
    p.turn()
    for n in range(120):
        p.child.generate_event(event(SCADA1, n))
    assert len(p.child.store.pending_ids()) >= 120
    p.parent.startService()
    p.parent_client.connect()
    # the child pings again within a heartbeat and finds the parent
    p.clock.advance(10)
    p.turn(50)
    got = [e.summary for e in p.parent.app_events() if e.type_name == "gridworks.event.problem"]
    assert got == [f"event {n}" for n in range(120)]
    assert p.child.store.pending_ids() == []
    assert p.child.outbox.stats.reuploaded >= 120


def test_window_bounds_in_flight() -> None:
    """Without batching, no more than `window` events are unacked at once."""
    p = Pair(window=5, batch_max=0)
    p.start()
    link_faults(p.parent.links["child"]).hold_acks = True
    for n in range(30):
        p.child.generate_event(event(SCADA1, n))
    p.turn()
    assert p.child.outbox.in_flight == 5
    assert p.child.outbox.queued == 25
    link_faults(p.parent.links["child"]).hold_acks = False
    link_faults(p.parent.links["child"]).release_acks()
    p.turn(30)
    assert p.child.store.pending_ids() == []


def test_duplicates_dropped_but_acked() -> None:
    """An event received twice reaches the application once; both copies are acked."""
    p = Pair()
    p.start()
    codec = Codec()
    ev = event(SCADA1, 7)
    frame = codec.encode(make_message(SCADA1, "a", ev))
    topic = topic_for(SCADA1, "a", ev.type_name)
    before = len(p.parent.app_events())
    p.child_client.published.clear()
    p.hub.route(topic, frame)
    p.hub.route(topic, frame)
    p.turn()
    assert len(p.parent.app_events()) == before + 1
    assert p.parent.counters["duplicates_dropped"] == 1
    acks = [m for m in (codec.decode(x.payload) for x in p.parent_client.published) if m.payload.type_name == "gridworks.ack"]
    assert [a.payload.ack_message_id for a in acks].count(ev.message_id) == 2


def test_ack_timeout_resends_and_dedups() -> None:
    """Events whose acks are lost are sent again after the link recovers; the parent's app still sees each once."""
    p = Pair()
    p.start()
    parent_link = p.parent.links["child"]
    p.clock.advance(3)
    link_faults(parent_link).hold_outgoing = True  # the parent goes silent: acks and pings held
    for n in range(5):
        p.child.generate_event(event(SCADA1, n))
    p.turn()
    p.clock.advance(5)  # t=8, ack timeout: the child probes the parent
    p.clock.advance(5)  # t=13, the probe's ack is held too
    assert ("parent", "ack_timeout") in p.child.deactivations
    assert p.child.links["parent"].state is LinkState.awaiting_peer
    link_faults(parent_link).discard_held()  # those acks are lost
    link_faults(parent_link).hold_outgoing = False
    p.clock.advance(5)  # the next probe is acked: active again
    p.turn(20)
    assert p.child.links["parent"].state is LinkState.active
    assert p.child.store.pending_ids() == []
    got = [e.summary for e in p.parent.app_events() if e.type_name == "gridworks.event.problem"]
    assert got == [f"event {n}" for n in range(5)]
    # Every event sent again had a cause (timeout or link loss), and each reached the parent twice.
    stats = p.child.outbox.stats
    assert stats.resent >= 1 and stats.resent_without_cause == 0
    assert p.parent.counters["duplicates_dropped"] == stats.resent


def test_comm_events_travel_upstream() -> None:
    """The child's comm events about its upstream link reach the parent."""
    p = Pair()
    p.start()
    p.turn(20)
    types = [e.type_name for e in p.parent.seen if e.src == SCADA1]
    assert "gridworks.event.comm.peer.active" in types
    assert "gridworks.event.startup" in types


def test_undecodable_stored_event_set_aside() -> None:
    """A stored event that cannot be decoded is set aside with a problem event, not retried forever."""
    p = Pair()
    p.child.store.append("bad-id", b"{not json")
    p.start()
    p.turn(20)
    assert "bad-id" not in p.child.store.pending_ids()
    assert p.child.outbox.stats.set_aside == 1
    summaries = [e.summary for e in p.parent.seen if e.type_name == "gridworks.event.problem"]
    assert any("set aside" in s for s in summaries)


def test_broker_restart_delivers_everything() -> None:
    """Events generated across a broker outage are all delivered once the broker is back."""
    p = Pair()
    p.start()
    for n in range(10):
        p.child.generate_event(event(SCADA1, n))
    p.hub.disconnect_all()
    for n in range(10, 20):
        p.child.generate_event(event(SCADA1, n))
    assert p.child.links["parent"].state is LinkState.connecting
    p.hub.connect_all()
    p.turn(30)
    got = sorted(int(e.summary.split()[1]) for e in p.parent.app_events() if e.type_name == "gridworks.event.problem")
    assert got == list(range(20))
    assert p.child.store.pending_ids() == []


def test_no_upstream_events_go_to_handle_event() -> None:
    """Without an upstream link, generate_event hands the event to handle_event."""
    p = Pair()
    ev = StartupEvent(src=ATN)
    d = p.parent.generate_event(ev)
    assert d.result == ev.message_id
    assert p.parent.seen[-1] is ev


def test_two_upstream_links_refused() -> None:
    """Configuring two upstream links is a clear ConfigError."""
    from gwproactor.errors import ConfigError

    clock = Clock()
    with pytest.raises(ConfigError, match="upstream"):
        Proactor(
            settings(SCADA1, "s", {"a": link_to(ATN, "a", upstream=True), "b": link_to("d1.x", "x", upstream=True)}),
            reactor=clock,
            store=MemoryEventStore(clock=clock),
            brokers={"default": FakeBroker(clock).client()},
        )


def test_tree_forwarding_preserves_src(tmp_path: Path) -> None:
    """scada2 → scada1 → atn: scada2's events reach atn once with their Src kept; scada1 acks only once they are durable in its store."""
    clock = Clock()
    hub = FakeBroker(clock)
    held = HeldFsync()
    scada2 = Recording(
        settings(SCADA2, "s2", {"scada1": link_to(SCADA1, "s", upstream=True)}),
        reactor=clock,
        store=MemoryEventStore(clock=clock),
        brokers={"default": hub.client("scada2")},
    )
    scada1 = Recording(
        settings(SCADA1, "s", {"atn": link_to(ATN, "a", upstream=True), "scada2": link_to(SCADA2, "s2")}),
        reactor=clock,
        store=FileEventStore.open(str(tmp_path / "scada1"), clock=clock, fsync_runner=held),
        brokers={"default": hub.client("scada1")},
    )
    atn = Recording(
        settings(ATN, "a", {"scada1": link_to(SCADA1, "s")}),
        reactor=clock,
        store=MemoryEventStore(clock=clock),
        brokers={"default": hub.client("atn")},
    )

    def turn(n: int = 40, release: bool = True) -> None:
        for _ in range(n):
            if release:
                held.release_all()
            clock.advance(0.01)  # scada1's group commits are 10 ms apart

    for p in (scada2, scada1, atn):
        p.startService()
    hub.connect_all()
    turn()
    ids = [scada2.generate_event(event(SCADA2, n)).result for n in range(15)]
    turn(release=False)
    assert held.batches, "scada1 wrote the events and waits for their fsync"
    assert set(ids) <= set(scada2.store.pending_ids()), "scada1 acked events that are not durable in its store"
    turn()
    from_scada2 = [e for e in atn.seen if e.src == SCADA2 and e.type_name == "gridworks.event.problem"]
    assert [e.summary for e in from_scada2] == [f"event {n}" for n in range(15)]
    assert scada2.store.pending_ids() == [] and scada1.store.pending_ids() == []
    scada1.store.close()


def test_batches_between_gwproactor_peers() -> None:
    """A backlog drains in batched frames once both peers announced batching; each event arrives once."""
    p = Pair(window=50)
    p.child.startService()
    p.child_client.connect()
    p.turn()
    for n in range(450):
        p.child.generate_event(event(SCADA1, n))
    p.parent.startService()
    p.parent_client.connect()
    p.clock.advance(10)
    p.turn(60)
    got = [e.summary for e in p.parent.app_events() if e.type_name == "gridworks.event.problem"]
    assert got == [f"event {n}" for n in range(450)]
    assert p.child.store.pending_ids() == []
    assert p.child.outbox.stats.batches_sent >= 5
    assert p.child.outbox.stats.batches_sent < 450 / 10
    assert p.child.links["parent"].peer_accepts_batches
    assert p.parent.counters["batches_received"] == p.child.outbox.stats.batches_sent


def test_streaming_events_fill_batches_while_a_frame_is_unacked() -> None:
    """Idle, an event goes at once; while a frame is unacked, new events wait for its ack (or a full batch)."""
    p = Pair(window=50, batch_max=10)
    p.start()
    outbox = p.child.outbox
    assert p.child.links["parent"].peer_accepts_batches
    sent0 = outbox.stats.batches_sent
    p.child.generate_event(event(SCADA1, 0))
    assert outbox.stats.batches_sent == sent0 + 1, "idle: sent without waiting"
    for n in range(1, 4):
        p.child.generate_event(event(SCADA1, n))
    assert outbox.stats.batches_sent == sent0 + 1 and outbox.queued == 3, "partial batch waits for the ack"
    for n in range(4, 14):
        p.child.generate_event(event(SCADA1, n))
    assert outbox.stats.batches_sent == sent0 + 2 and outbox.queued == 3, "a full batch goes at once"
    p.turn()
    got = [e.summary for e in p.parent.app_events() if e.type_name == "gridworks.event.problem"]
    assert got == [f"event {n}" for n in range(14)]
    assert outbox.stats.batches_sent == sent0 + 3, "the rest went in one frame once acks came"
    assert p.child.store.pending_ids() == []


def test_no_batches_to_a_peer_that_did_not_announce() -> None:
    """A peer that does not announce batching (like a 4.x peer) gets one event per frame."""
    p = Pair(parent_batch_max=0)
    p.start()
    for n in range(30):
        p.child.generate_event(event(SCADA1, n))
    p.turn(20)
    assert not p.child.links["parent"].peer_accepts_batches
    assert p.child.outbox.stats.batches_sent == 0
    assert p.parent.counters["batches_received"] == 0
    assert p.child.store.pending_ids() == []


def test_batch_with_undecodable_event_acked_and_reported() -> None:
    """An undecodable event inside a batch is reported; the rest of the batch is accepted and the batch acked."""
    p = Pair()
    p.start()
    p.child.store.append("bad", b'{"TypeName": "gridworks.event.problem", "MessageId": 3}')
    for n in range(3):
        p.child.generate_event(event(SCADA1, n))
    p.child.outbox.deactivated()  # reload the store, as after a reconnect
    p.child.outbox.activated()
    p.turn(20)
    assert p.child.store.pending_ids() == []
    assert p.parent.counters["undecodable_batch_events"] == 1
    got = [e.summary for e in p.parent.app_events() if e.type_name == "gridworks.event.problem"]
    assert [g for g in got if g.startswith("event")] == ["event 0", "event 1", "event 2"]


def test_dbg_request_changes_levels_and_records_event() -> None:
    """A 4.x DBG request changes the child's log levels by category and produces a DBG event upstream."""
    from twisted.logger import LogLevel

    from gwproactor.message import DBGPayload

    p = Pair()
    p.start()
    acked = p.parent.send_to_link("child", DBGPayload(levels={"io_loop": 10, "lifecycle": -1}), ack_required=True)
    p.turn(20)
    assert acked.called
    assert p.child.log_levels.enabled("io_loop", LogLevel.debug)
    assert not p.child.log_levels.enabled("lifecycle", LogLevel.debug)
    dbg = [e for e in p.parent.seen if e.type_name == "gridworks.event.proactor.dbg"]
    assert len(dbg) == 1 and dbg[0].src == SCADA1
    assert dbg[0].command["Levels"]["io_loop"] == 10
    assert "io_loop=debug" in dbg[0].msg
