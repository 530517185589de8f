"""The first send of a just-appended event uses its payload as appended; any later send reads the store."""

from __future__ import annotations

from typing import Any

import pytest

from gwproactor.links import outbox as outbox_module
from gwproactor.store import MemoryEventStore
from tests.test_proactor_events import SCADA1, Pair, event


class CountingReads:
    """Counts ``read`` calls on the child's store (the class is patched; other stores are not counted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: Any) -> None:
        self.reads: list[str] = []
        original = MemoryEventStore.read

        def read(this: Any, event_id: str) -> bytes:
            if this is store:
                self.reads.append(event_id)
            return original(this, event_id)

        monkeypatch.setattr(MemoryEventStore, "read", read)


def received(pair: Pair) -> list[str]:
    return [e.summary for e in pair.parent.app_events() if e.type_name == "gridworks.event.problem"
            and e.summary.startswith("event ")]


@pytest.mark.parametrize("batch_max", [0, 100])
def test_first_send_reads_nothing_back(monkeypatch: pytest.MonkeyPatch, batch_max: int) -> None:
    """Events generated while the link is active go out with no store read, alone or in batches."""
    p = Pair(batch_max=batch_max, parent_batch_max=batch_max)
    p.start()
    counting = CountingReads(monkeypatch, p.child.store)
    for n in range(5):
        p.child.generate_event(event(SCADA1, n))
        p.turn(5)
    assert received(p) == [f"event {n}" for n in range(5)]
    assert counting.reads == []
    assert p.child.outbox._fresh == {} and p.child.outbox._fresh_bytes == 0


def test_after_a_deactivation_the_store_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events queued (payload kept) or in flight when the link goes down are sent again from the store."""
    p = Pair(batch_max=0, parent_batch_max=0, window=1)
    p.start()
    counting = CountingReads(monkeypatch, p.child.store)
    first, second = event(SCADA1, 0), event(SCADA1, 1)
    p.child.generate_event(first)  # in flight (window 1) ...
    p.child.generate_event(second)  # ... so this one waits, its payload kept
    assert list(p.child.outbox._fresh) == [second.message_id]
    p.hub.disconnect_all()
    p.turn(5)
    assert p.child.outbox._fresh == {}  # the link left active: nothing kept
    p.hub.connect_all()
    p.turn(40)
    assert {first.message_id, second.message_id} <= set(counting.reads)  # the backlog is read back
    assert received(p) == ["event 0", "event 1"] and p.child.store.pending_ids() == []


def test_an_event_dropped_before_its_first_send_is_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kept payload is sent only while the store still holds the event (a full store may drop it)."""
    p = Pair(batch_max=0, parent_batch_max=0, window=1)
    p.start()
    outbox = p.child.outbox
    sent: list[str] = []
    original = p.child.upstream.send

    def send(payload: Any, **kwargs: Any) -> Any:
        sent.append(payload.summary)
        return original(payload, **kwargs)

    monkeypatch.setattr(p.child.upstream, "send", send)
    # Event 0 takes the only place in the window; event 1 waits with its payload kept.
    p.child.generate_event(event(SCADA1, 0))
    p.child.generate_event(event(SCADA1, 1))
    assert len(outbox._fresh) == 1
    [waiting] = outbox._fresh
    p.child.store.ack(waiting)  # as if the store had dropped it
    p.turn(20)
    assert sent == ["event 0"]
    assert outbox._fresh == {} and outbox._fresh_bytes == 0


def test_kept_payloads_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past FRESH_BYTES of kept payloads, further events are read back from the store when their turn comes."""
    monkeypatch.setattr(outbox_module, "FRESH_BYTES", 1000)
    p = Pair(batch_max=0, parent_batch_max=0, window=1)
    p.start()
    counting = CountingReads(monkeypatch, p.child.store)
    for n in range(20):
        p.child.generate_event(event(SCADA1, n))
    assert 0 < p.child.outbox._fresh_bytes <= 1000
    p.turn(100)
    assert received(p) == [f"event {n}" for n in range(20)]
    assert 0 < len(counting.reads) < 20
    assert p.child.outbox._fresh_bytes == 0
