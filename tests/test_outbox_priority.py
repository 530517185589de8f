"""Live-first: a fresh alarm overtakes a backlog; bulk events wait for normal ones; exactly-once unchanged."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import pytest

from gwproactor.links.outbox import PRIORITIES
from gwproactor.message import Event, default_registry
from tests.test_proactor_events import SCADA1, Pair, event


@default_registry.register
@attrs.define(frozen=True)
class Alarm(Event):
    """A test alarm."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.test.alarm"
    PRIORITY: ClassVar[str] = "alarm"
    n: int = 0


@default_registry.register
@attrs.define(frozen=True)
class BulkRecord(Event):
    """A test bulk record."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.test.bulk"
    PRIORITY: ClassVar[str] = "bulk"
    n: int = 0


def order(p: Pair) -> list[str]:
    out = []
    for e in p.parent.seen:
        if isinstance(e, Alarm):
            out.append(f"alarm {e.n}")
        elif isinstance(e, BulkRecord):
            out.append(f"bulk {e.n}")
        elif getattr(e, "summary", "").startswith("event "):
            out.append(e.summary)
    return out


@pytest.mark.parametrize("batch_max", [0, 20])
def test_a_fresh_alarm_overtakes_the_backlog(batch_max: int) -> None:
    """300 backlog events drain through a window of 5; an alarm generated after the first turns arrives early."""
    p = Pair(window=5 if batch_max == 0 else 40, batch_max=batch_max, parent_batch_max=batch_max)
    p.start()
    p.turn(20)
    p.child.outbox.deactivated()
    for n in range(300):
        p.child.generate_event(event(SCADA1, n))
    original = p.parent.handle_event

    def handle_event(link: Any, ev: Any) -> Any:
        result = original(link, ev)
        if len(order(p)) == 20:  # mid-drain: the alarm happens now
            p.child.generate_event(Alarm(src=SCADA1, n=1))
        return result

    p.parent.handle_event = handle_event  # type: ignore[method-assign]
    p.child.outbox.activated()
    p.turn(400)
    got = order(p)
    assert sorted(got) == sorted([f"event {n}" for n in range(300)] + ["alarm 1"])
    # It overtakes all but what was already in flight (a window, or a few batch frames).
    assert 20 <= got.index("alarm 1") < 20 + (6 if batch_max == 0 else 81), got[:110]
    assert p.child.store.pending_ids() == []


def test_bulk_waits_for_normal_and_each_class_keeps_its_order() -> None:
    """Queued together: alarms first, then normal events, then bulk; oldest first within each class."""
    p = Pair(window=1, batch_max=0, parent_batch_max=0)
    p.start()
    p.turn(20)
    p.child.outbox.deactivated()
    for n in range(3):
        p.child.generate_event(BulkRecord(src=SCADA1, n=n))
        p.child.generate_event(event(SCADA1, n))
        p.child.generate_event(Alarm(src=SCADA1, n=n))
    p.child.outbox.activated()
    p.turn(100)
    got = [x for x in order(p)]
    assert got == ["alarm 0", "alarm 1", "alarm 2", "event 0", "event 1", "event 2", "bulk 0", "bulk 1", "bulk 2"]


def test_unknown_priority_is_refused() -> None:
    """Outbox.added refuses a priority that is not one of PRIORITIES."""
    p = Pair()
    with pytest.raises(ValueError, match="alarm, normal, bulk"):
        p.child.outbox.added("x", "urgent")
    assert PRIORITIES == ("alarm", "normal", "bulk")


def test_priority_of_nothing_pending_is_forgotten(tmp_path: Any) -> None:
    """Once acked, an alarm's class is forgotten (the outbox keeps classes only for pending events)."""
    p = Pair(batch_max=0, parent_batch_max=0)
    p.start()
    for n in range(50):
        p.child.generate_event(Alarm(src=SCADA1, n=n))
    p.turn(100)
    assert p.child.store.pending_ids() == [] and p.child.outbox._priority == {}
