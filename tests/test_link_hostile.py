"""Hostile frames on a link's topics: bounded size, rate-limited and truncated reports, bounded counters."""

from __future__ import annotations

import json
from typing import Any

from gwproactor.links.machine import LinkState
from gwproactor.message import topic_for
from gwproactor.ops.counters import OTHER, BoundedCounter
from tests.test_link import CHILD_SHORT, PARENT_LONG, Harness
from tests.test_proactor_events import SCADA1, Pair


def forged(h: Harness, type_name: str, extra: dict[str, Any] | None = None) -> bytes:
    payload = {"MessageId": "m", "TimeCreatedMs": 1, "Src": PARENT_LONG, "TypeName": type_name, **(extra or {})}
    header = {"Src": PARENT_LONG, "Dst": CHILD_SHORT, "MessageType": type_name, "MessageId": "m",
              "AckRequired": False, "TypeName": "gridworks.header", "Version": "001"}
    return json.dumps({"Header": header, "Payload": payload, "TypeName": "gw"}).encode()


def deliver(h: Harness, type_name: str, payload: bytes) -> None:
    h.broker.deliver(topic_for(PARENT_LONG, CHILD_SHORT, type_name), payload)


def test_oversized_frame_is_dropped_before_decoding() -> None:
    """A frame over max_frame_bytes is counted as oversized and never reaches the codec."""
    h = Harness()
    h.link.max_frame_bytes = 1000
    h.activate()
    decoded: list[Any] = []

    class Spy:
        def decode(self, data: bytes) -> Any:
            decoded.append(data)
            return h.codec.decode(data)

    h.link.codec = Spy()
    deliver(h, "gridworks.ping", b"{" + b" " * 2000 + b"}")
    assert decoded == [] and h.link.stats.oversized == 1 and h.link.stats.decode_errors == 0
    assert h.listener.problems and "max_frame_bytes" in h.listener.problems[-1][2]
    assert h.link.state is LinkState.active


def test_bad_frame_reports_are_rate_limited_and_say_how_many_were_left_out() -> None:
    """1,000 undecodable frames in a minute: 5 reports; the first report after the minute counts the rest."""
    h = Harness()
    h.activate()
    before = len(h.listener.problems)
    for _ in range(1000):
        deliver(h, "gridworks.ping", b"not json")
    assert len(h.listener.problems) - before == 5
    assert h.link.stats.decode_errors == 1000 and h.link.stats.bad_frames_suppressed == 995
    h.clock.advance(61)
    deliver(h, "gridworks.ping", b"not json")
    assert "995 more undecodable frames were not reported" in h.listener.problems[-1][2]


def test_huge_values_are_cut_in_reports() -> None:
    """A 1 MB type name and a 60 kB topic give reports of a few hundred characters."""
    h = Harness()
    h.activate()
    deliver(h, "gridworks.x", forged(h, "x" * 1_000_000))
    h.broker.deliver(topic_for(PARENT_LONG, CHILD_SHORT, "y" * 60_000), b"{}")
    reports = h.listener.problems[-2:]
    assert len(reports) == 2
    assert all(len(summary) + len(details) < 1600 for _, summary, details in reports)
    assert "characters)" in reports[0][2] and "characters)" in reports[1][2]


def test_counters_keyed_by_peer_chosen_names_are_bounded() -> None:
    """1,000 forged event type names: the link's and the proactor's counters keep at most their bound of keys."""
    p = Pair(batch_max=0, parent_batch_max=0)
    p.start()
    link = p.parent.links["child"]
    for n in range(1000):
        body = {
            "Header": {"Src": SCADA1, "Dst": "a", "MessageType": f"gridworks.event.forged{n}", "MessageId": f"id{n}",
                       "AckRequired": True, "TypeName": "gridworks.header", "Version": "001"},
            "Payload": {"MessageId": f"id{n}", "TimeCreatedMs": 1, "Src": SCADA1, "TypeName": f"gridworks.event.forged{n}"},
            "TypeName": "gw",
        }
        p.child_client.publish(topic_for(SCADA1, "a", f"gridworks.event.forged{n}"), json.dumps(body).encode(), 0)
    p.turn(20)
    assert link.stats.messages_in[OTHER] > 0 and len(link.stats.messages_in) <= 101
    assert len(p.parent.event_counts) <= 201
    assert p.parent.counters["events_received"] >= 1000  # every one was still accepted and acked


def test_bounded_counter_folds_new_keys_into_other() -> None:
    """BoundedCounter keeps its first max_keys keys and counts every later new key under OTHER."""
    c = BoundedCounter(max_keys=3)
    c.update(["a", "b", "c", "d", "e", "a"])
    assert dict(c) == {"a": 2, "b": 1, "c": 1, OTHER: 2}
