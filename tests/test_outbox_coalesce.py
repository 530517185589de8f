"""Batch sizing: a sporadic event goes at once; a stream's partial batch coalesces after the ack that lets it go."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from gwproactor.links.outbox import Outbox
from gwproactor.store import MemoryEventStore


@attrs.define(eq=False)
class BatchLink:
    """A link to a batching peer that records the frames sent; the test acks them."""

    batch_max: int = 10
    link_name: str = "parent"
    peer_accepts_batches: bool = True
    is_active: bool = True
    frames: list[tuple[str, list[bytes]]] = attrs.field(factory=list)

    def send_batch(self, batch_id: str, payloads: list[bytes]) -> Deferred:
        self.frames.append((batch_id, payloads))
        return Deferred()

    def send(self, payload: Any) -> Deferred:
        raise AssertionError("only batches in this test")

    def probe(self) -> None:
        pass


def make(coalesce_s: float = 0.002) -> tuple[Outbox, BatchLink, MemoryEventStore, Clock]:
    clock = Clock()
    store = MemoryEventStore(clock=clock)
    link = BatchLink()
    outbox = Outbox(store=store, link=link, codec=None, window=50, clock=clock, coalesce_s=coalesce_s)
    outbox.activated()
    return outbox, link, store, clock


def add(outbox: Outbox, store: MemoryEventStore, event_id: str) -> None:
    store.append(event_id, event_id.encode())
    outbox.added(event_id)


def one_turn(clock: Clock, dt: float = 0.0) -> None:
    """One reactor iteration: time moves on by ``dt``, then the calls due run once (the ones they add wait)."""
    clock.rightNow += dt
    due = [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.called = 1
        call.func(*call.args, **call.kw)


def sizes(link: BatchLink) -> list[int]:
    return [len(payloads) for _, payloads in link.frames]


def test_a_sporadic_event_goes_at_once() -> None:
    """Nothing unacked: an event is sent in the call that adds it, with no reactor turn and no coalescing."""
    outbox, link, store, clock = make()
    add(outbox, store, "a")
    assert sizes(link) == [1] and clock.getDelayedCalls() == []
    outbox.acked(link.frames[0][0])
    add(outbox, store, "b")  # after the ack, idle again: at once too
    assert sizes(link) == [1, 1] and outbox.stats.coalesced == 0 and clock.getDelayedCalls() == []


def test_a_stream_coalesces_while_events_keep_joining() -> None:
    """Events queued behind an unacked frame are held after its ack while each reactor turn adds one."""
    outbox, link, store, clock = make()
    add(outbox, store, "e0")
    add(outbox, store, "e1")  # behind the unacked frame: waits (Nagle)
    outbox.acked(link.frames[0][0])
    assert sizes(link) == [1] and outbox.stats.coalesced == 1  # held, not sent with the ack
    for n in range(2, 5):
        add(outbox, store, f"e{n}")
        one_turn(clock)  # a turn in which an event joined: held on
        assert sizes(link) == [1]
    one_turn(clock)  # a turn with no new event: it goes
    assert sizes(link) == [1, 4] and clock.getDelayedCalls() == []
    outbox.acked(link.frames[1][0])
    assert store.pending_ids() == []


def test_a_coalescing_batch_goes_once_full() -> None:
    """A held partial batch goes as soon as it reaches batch_max, without waiting for a turn."""
    outbox, link, store, clock = make()
    add(outbox, store, "e0")
    add(outbox, store, "e1")
    outbox.acked(link.frames[0][0])
    for n in range(2, 11):
        add(outbox, store, f"e{n}")
    assert sizes(link) == [1, 10] and clock.getDelayedCalls() == []


def test_coalescing_lasts_at_most_coalesce_s() -> None:
    """Events joining every turn hold a partial batch at most coalesce_s after the ack."""
    outbox, link, store, clock = make(coalesce_s=0.002)
    add(outbox, store, "e0")
    add(outbox, store, "e1")
    outbox.acked(link.frames[0][0])
    add(outbox, store, "e2")
    one_turn(clock, 0.001)
    assert sizes(link) == [1]
    add(outbox, store, "e3")
    one_turn(clock, 0.001)  # 2 ms after the ack, though e3 joined in this turn
    assert sizes(link) == [1, 3] and clock.getDelayedCalls() == []


def test_deactivation_cancels_coalescing_and_nothing_leaves_the_store() -> None:
    """The link leaving active while a batch is held cancels the turn call; the events stay pending and go later."""
    outbox, link, store, clock = make()
    add(outbox, store, "e0")
    add(outbox, store, "e1")
    outbox.acked(link.frames[0][0])
    outbox.deactivated()
    assert clock.getDelayedCalls() == [] and store.pending_ids() == ["e1"]
    outbox.activated()  # idle: the backlog goes at once
    assert sizes(link) == [1, 1] and link.frames[1][1] == [b"e1"]


def test_with_coalesce_s_zero_a_partial_batch_goes_with_the_ack() -> None:
    """With coalesce_s 0 (or no clock) the partial batch goes with the ack, as plain Nagle does."""
    outbox, link, store, _clock = make(coalesce_s=0)
    add(outbox, store, "e0")
    add(outbox, store, "e1")
    outbox.acked(link.frames[0][0])
    assert sizes(link) == [1, 1] and outbox.stats.coalesced == 0
