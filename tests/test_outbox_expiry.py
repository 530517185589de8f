"""Time to live: stored events that outlived their type's TTL are dropped unsent, counted and reported."""

from __future__ import annotations

from typing import ClassVar

import attrs
import pytest

from gwproactor.links.expiry import Expiry
from gwproactor.message import Event, default_registry, now_ms
from tests.test_proactor_events import SCADA1, Pair


@default_registry.register
@attrs.define(frozen=True)
class ShortLived(Event):
    """A test event worth sending for one minute only."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.test.short.lived"
    TTL_S: ClassVar[float] = 60.0
    n: int = 0


def received(p: Pair) -> list[int]:
    return sorted(e.n for e in p.parent.seen if isinstance(e, ShortLived))


@pytest.mark.parametrize("batch_max", [0, 100])
def test_expired_events_are_dropped_counted_and_reported(batch_max: int) -> None:
    """A backlog of TTL'd events: the ones older than their TTL are dropped unsent, the fresh ones arrive."""
    p = Pair(batch_max=batch_max, parent_batch_max=batch_max)
    p.start()
    p.turn(20)
    assert p.child.links["parent"].peer_accepts_batches is (batch_max > 1)
    p.child.outbox.deactivated()  # a backlog builds up (as while the link is down)
    old = now_ms() - 120_000
    for n in range(5):
        p.child.generate_event(ShortLived(src=SCADA1, n=n, time_created_ms=old))
    for n in range(5, 8):
        p.child.generate_event(ShortLived(src=SCADA1, n=n))
    p.child.outbox.activated()
    p.turn(40)
    assert p.child.outbox.stats.batches_sent >= (1 if batch_max > 1 else 0)
    assert received(p) == [5, 6, 7]
    assert p.child.outbox.stats.expired == 5
    assert p.child.store.pending_ids() == []
    reports = [e for e in p.parent.seen if getattr(e, "summary", "").startswith("events expired")]
    assert len(reports) >= 1 and "gridworks.event.test.short.lived: " in reports[0].details


def test_events_without_a_ttl_never_expire() -> None:
    """An event type with no TTL_S is sent however old it is."""
    e = Expiry.from_registry(default_registry.classes())
    assert e.ttls.get(ShortLived.TYPE_NAME) == 60.0
    assert not e.expired("gridworks.event.startup", 0)
    assert e.expired(ShortLived.TYPE_NAME, now_ms() - 61_000)
    assert not e.expired(ShortLived.TYPE_NAME, now_ms() - 59_000)


def test_expired_raw_parses_only_ttl_types() -> None:
    """The batch path looks for TTL'd TypeNames in the stored bytes before parsing them."""
    e = Expiry(ttls={"a.b": 1.0}, wall=lambda: 1000.0)
    assert e.expired_raw(b'{"TypeName":"a.b","TimeCreatedMs":1}') == "a.b"
    assert e.expired_raw(b'{"TypeName":"a.b","TimeCreatedMs":999500}') is None
    assert e.expired_raw(b'{"TypeName":"c","TimeCreatedMs":1}') is None
    assert not Expiry()
