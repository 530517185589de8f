"""Poison events and send ordering at the proactor level (Clock, fake broker): no retry forever, no double sends."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import fail

from gwproactor.links.machine import LinkState
from gwproactor_test.faulty_mqtt import link_faults
from tests.test_proactor_events import SCADA1, Pair, event


class RefusingParent:
    """Makes a pair's parent behave like a 4.x parent whose application raises for some events: no ack."""

    def __init__(self, pair: Pair, refuse: set[str]) -> None:
        self.refuse = refuse
        self.refused = 0
        inbox = pair.parent.inbox
        original = inbox.accept_event

        def accept_event(link: Any, ev: Any) -> Any:
            if getattr(ev, "summary", None) in self.refuse:
                self.refused += 1
                return fail(RuntimeError(f"cannot handle {ev.summary}"))
            return original(link, ev)

        inbox.accept_event = accept_event  # type: ignore[method-assign]


def summaries(proactor: Any) -> list[str]:
    """The test events (``event N``) the proactor's application saw, in order."""
    return [
        e.summary
        for e in proactor.app_events()
        if e.type_name == "gridworks.event.problem" and e.summary.split(" ")[-1].isdigit()
    ]


def test_sender_parks_an_event_its_peer_never_acks_and_stays_active() -> None:
    """A 4.x-like parent refuses one event (no ack): the child parks it after park_after sends, link stays active."""
    p = Pair(batch_max=0, parent_batch_max=0)
    p.start()
    refusing = RefusingParent(p, {"event 3"})
    for n in range(10):
        p.child.generate_event(event(SCADA1, n))
    p.turn(20)
    for _ in range(4):
        p.clock.advance(5)
        p.turn(20)
    link = p.child.links["parent"]
    assert link.state is LinkState.active
    assert [t for t in p.child.deactivations] == []
    assert "event 3" not in summaries(p.parent)
    assert summaries(p.parent) == [f"event {n}" for n in range(10) if n != 3]
    stats = p.child.outbox.stats
    assert refusing.refused == 3  # park_after sends, then no more
    assert (stats.parked, stats.retried, stats.resent_without_cause) == (1, 2, 0)
    assert link.stats.ack_timeouts_discounted == 3 and link.stats.ack_timeouts_counted == 0
    [parked] = p.child.store.parked()
    assert "without an ack" in parked["reason"]
    assert p.child.store.pending_ids() == []
    reports = [e for e in p.parent.seen if e.type_name == "gridworks.event.problem" and "parked" in e.summary]
    assert len(reports) == 1 and parked["id"] in reports[0].details


def test_a_poison_event_for_an_hour_costs_three_sends_and_no_flap() -> None:
    """One hour with one refused event: 3 sends, then parked; no response.timeout, no comm-event pile-up."""
    p = Pair(batch_max=0, parent_batch_max=0)
    p.start()
    refusing = RefusingParent(p, {"event 0"})
    p.child.generate_event(event(SCADA1, 0))
    for n in range(1, 720):
        p.clock.advance(5)
        if n % 60 == 0:
            p.child.generate_event(event(SCADA1, n))  # later events keep arriving
        p.turn(3)
    comm = p.child.links["parent"].stats.comm_events
    assert refusing.refused == 3
    assert comm["gridworks.event.comm.response.timeout"] == 0
    assert comm["gridworks.event.comm.peer.active"] == 1
    assert p.child.outbox.stats.parked == 1
    assert p.child.outbox.stats.resent_without_cause == 0


def test_requeued_parked_event_is_sent_again() -> None:
    """Proactor.requeue_parked sends a parked event again; accepted this time, it leaves the store."""
    p = Pair(batch_max=0, parent_batch_max=0)
    p.start()
    refusing = RefusingParent(p, {"event 0"})
    p.child.generate_event(event(SCADA1, 0))
    p.child.generate_event(event(SCADA1, 1))
    for _ in range(4):
        p.clock.advance(5)
        p.turn(10)
    assert p.child.outbox.stats.parked == 1
    refusing.refuse.clear()
    done: list[Any] = []
    p.child.requeue_parked().addCallback(done.append)
    p.turn(10)
    assert len(done[0]) == 1
    assert summaries(p.parent).count("event 0") == 1
    assert p.child.store.parked() == [] and p.child.store.pending_ids() == []


def test_batched_poison_event_is_isolated_and_parked_alone() -> None:
    """In a batch the peer refuses as a whole, the events go again one by one; only the refused one is parked."""
    p = Pair(batch_max=100, parent_batch_max=100)
    p.start()
    p.turn(20)
    inbox = p.parent.inbox
    original = inbox.accept_batch
    refused = []

    def accept_batch(link: Any, batch: Any) -> Any:
        if any(obj.get("Summary") == "event 2" for obj in batch.events):
            refused.append(len(batch.events))
            return fail(RuntimeError("batch refused"))
        return original(link, batch)

    inbox.accept_batch = accept_batch  # type: ignore[method-assign]
    RefusingParent(p, {"event 2"})  # alone, it is refused too
    for n in range(6):
        p.child.generate_event(event(SCADA1, n))
    p.turn(20)
    for _ in range(6):
        p.clock.advance(5)
        p.turn(20)
    assert p.child.links["parent"].state is LinkState.active
    assert sorted(summaries(p.parent)) == sorted(f"event {n}" for n in range(6) if n != 2)
    assert p.child.outbox.stats.parked == 1
    assert p.child.outbox.stats.resent_without_cause == 0


def test_receiver_parks_an_event_its_application_refuses_and_acks_it() -> None:
    """Our parent's handle_event raises for one event: it is parked in the parent's store, acked, reported."""
    p = Pair(batch_max=0, parent_batch_max=0)
    original = p.parent.handle_event

    def handle_event(link: Any, ev: Any) -> Any:
        if getattr(ev, "summary", "") == "event 1":
            raise ValueError("no room for event 1")
        return original(link, ev)

    p.parent.handle_event = handle_event  # type: ignore[method-assign]
    p.start()
    for n in range(3):
        p.child.generate_event(event(SCADA1, n))
    p.turn(20)
    p.clock.advance(30)
    p.turn(20)
    assert p.child.store.pending_ids() == []  # acked, including the refused one
    assert p.child.outbox.stats.resent == 0 and p.child.links["parent"].state is LinkState.active
    [parked] = p.parent.store.parked()
    assert "no room for event 1" in parked["reason"]
    assert p.parent.counters["events_parked"] == 1
    problems = [e.summary for e in p.parent.seen if e.type_name == "gridworks.event.problem"]
    assert any("parked" in s for s in problems)
    # Fixed application, re-queued: handle_event sees it (link None at the top of the tree).
    p.parent.handle_event = original  # type: ignore[method-assign]
    p.parent.requeue_parked()
    p.turn(10)
    assert summaries(p.parent).count("event 1") == 1
    assert p.parent.store.parked() == [] and p.parent.store.pending_ids() == []


@pytest.mark.parametrize("batch_max", [0, 100])
def test_an_event_neither_handled_nor_parked_is_not_acked_and_comes_again(
    batch_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """handle_event raises and parking fails too: no ack (alone or in a batch); the resend is accepted once."""
    p = Pair(batch_max=batch_max, parent_batch_max=batch_max)
    store_class = type(p.parent.store)
    original_handle, original_park = p.parent.handle_event, store_class.park
    broken = {"on": True}

    def handle_event(link: Any, ev: Any) -> Any:
        if broken["on"] and getattr(ev, "summary", "") == "event 1":
            raise ValueError("no room for event 1")
        return original_handle(link, ev)

    def park(store: Any, *args: Any, **kwargs: Any) -> Any:
        if broken["on"] and store is p.parent.store:
            raise OSError(28, "No space left on device")
        return original_park(store, *args, **kwargs)

    p.parent.handle_event = handle_event  # type: ignore[method-assign]
    monkeypatch.setattr(store_class, "park", park)
    p.start()
    for n in range(3):
        p.child.generate_event(event(SCADA1, n))
    p.turn(20)
    pending = p.child.store.pending_ids()
    # Alone: only event 1 stays; batched: event 0 went alone (nothing was in flight), 1 and 2 in one batch, refused whole.
    assert len(pending) == (1 if batch_max == 0 else 2)
    assert p.parent.counters["events_parked"] == 0
    broken["on"] = False
    for _ in range(3):
        p.clock.advance(5)
        p.turn(20)
    assert p.child.store.pending_ids() == []
    assert sorted(summaries(p.parent)) == ["event 0", "event 1", "event 2"]


def test_response_timeout_goes_out_once_after_the_link_is_back() -> None:
    """The comm event of a flap is stored while the outbox is inactive, then sent once on reactivation."""
    p = Pair(batch_max=0, parent_batch_max=0)
    p.start()
    parent_link = p.parent.links["child"]
    p.clock.advance(3)
    link_faults(parent_link).hold_outgoing = True  # the parent goes silent: acks and pings held
    p.child.generate_event(event(SCADA1, 0))
    p.turn()
    p.clock.advance(5)  # no ack: a probe goes out
    p.clock.advance(4.9)
    assert p.child.deactivations == []
    p.clock.advance(0.1)  # no ack for the probe either
    assert ("parent", "ack_timeout") in p.child.deactivations
    assert p.child.links["parent"].state is LinkState.awaiting_peer
    sent_while_down = [m for m in p.child_client.take_published() if "response-timeout" in m.topic]
    assert sent_while_down == []
    link_faults(parent_link).hold_outgoing = False
    link_faults(parent_link).discard_held()
    p.clock.advance(5)
    p.turn(20)
    assert p.child.links["parent"].state is LinkState.active
    got = [e for e in p.parent.seen if e.type_name == "gridworks.event.comm.response.timeout"]
    assert len(got) == 1
    sent = [m for m in p.child_client.take_published() if "response-timeout" in m.topic]
    assert len(sent) == 1  # stored while down, sent once when the link was back
    assert p.parent.counters["duplicates_dropped"] == p.child.outbox.stats.resent  # event 0: retried, then resent
    assert p.child.outbox.stats.resent_without_cause == 0


def test_comm_event_of_an_idle_flap_is_not_sent_on_the_dead_link() -> None:
    """Nothing in flight when the peer goes silent: the response.timeout is stored, not published while down."""
    p = Pair(batch_max=0, parent_batch_max=0)
    p.start()
    p.turn(20)
    parent_link = p.parent.links["child"]
    link_faults(parent_link).hold_outgoing = True
    p.child_client.take_published()
    for _ in range(30):  # idle, no event in flight: the heartbeat ping and its probe go unanswered
        p.clock.advance(1)
    assert p.child.deactivations == [("parent", "ack_timeout")]
    assert [m for m in p.child_client.take_published() if "response-timeout" in m.topic] == []
    link_faults(parent_link).hold_outgoing = False
    link_faults(parent_link).discard_held()
    p.clock.advance(5)
    p.turn(20)
    assert p.child.links["parent"].state is LinkState.active
    sent = [m for m in p.child_client.take_published() if "response-timeout" in m.topic]
    assert len(sent) == 1


@pytest.mark.gwp_allow_resent_without_cause
def test_resent_without_cause_counts_a_send_with_no_timeout_or_loss_between() -> None:
    """The outbox counter itself: re-activating without a loss in between re-sends the window without cause."""
    p = Pair(batch_max=0, parent_batch_max=0)
    p.start()
    link_faults(p.parent.links["child"]).hold_acks = True
    p.child.generate_event(event(SCADA1, 0))
    p.child.generate_event(event(SCADA1, 1))
    p.turn()
    outbox = p.child.outbox
    assert outbox.in_flight == 2
    outbox.activated()  # a bug of this kind: the window is sent again with no cause
    assert outbox.stats.resent_without_cause == 2
    assert outbox.stats.resent == 0


def test_no_hello_reaches_a_peer_that_offered_no_capabilities() -> None:
    """Batching child, 4.x-like parent (batch_max 0): the child offers batching in its pings only; no hello is sent."""
    p = Pair(batch_max=100, parent_batch_max=0)
    p.start()
    for n in range(5):
        p.child.generate_event(event(SCADA1, n))
    p.turn(20)
    p.clock.advance(10)
    p.turn(20)
    published = p.child_client.take_published()
    assert [m for m in published if m.topic.endswith("gwproactor-hello")] == []
    pings = [m for m in published if m.topic.endswith("gridworks-ping")]
    assert any(b'"Capabilities":["batch1","zlib1"]' in m.payload for m in pings)  # the offer, on activation
    assert p.child.links["parent"].peer_accepts_batches is False
    assert summaries(p.parent) == [f"event {n}" for n in range(5)]


def test_batching_is_negotiated_again_after_a_flap() -> None:
    """Two gwproactor peers: capabilities are offered in pings, answered by a hello, and again after a flap."""
    p = Pair(batch_max=100, parent_batch_max=100)
    p.start()
    p.turn(20)
    link = p.child.links["parent"]
    assert link.peer_accepts_batches
    parent_link = p.parent.links["child"]
    link_faults(parent_link).hold_outgoing = True
    for _ in range(21):  # heartbeat ping at 10 s, unanswered; its probe unanswered at 20 s
        p.clock.advance(1)
    assert not link.is_active and not link.peer_accepts_batches
    link_faults(parent_link).discard_held()
    link_faults(parent_link).hold_outgoing = False
    p.clock.advance(5)
    p.turn(20)
    assert link.is_active and link.peer_accepts_batches


def test_a_read_error_keeps_the_event_pending_instead_of_setting_it_aside() -> None:
    """An OS error reading a stored event (StoreReadError) keeps it pending; it goes after the next activation."""
    from gwproactor.errors import StoreReadError

    p = Pair(batch_max=0, parent_batch_max=0)
    p.start()
    p.turn(20)
    p.child.outbox.deactivated()
    p.child.generate_event(event(SCADA1, 0))
    store = p.child.store
    failing = {"on": True}

    class FailingReads:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def read(self, event_id: str) -> bytes:
            if failing["on"]:
                raise StoreReadError("EMFILE while reading")
            return store.read(event_id)

    p.child.outbox.store = FailingReads()
    p.child.outbox.activated()
    p.turn(10)
    assert p.child.outbox.stats.read_errors >= 1 and p.child.outbox.stats.set_aside == 0
    assert len(store.pending_ids()) >= 1  # event 0 (and the problem events about it) kept
    failing["on"] = False
    p.child.outbox.deactivated()
    p.child.outbox.activated()
    p.turn(10)
    assert summaries(p.parent) == ["event 0"] and store.pending_ids() == []
