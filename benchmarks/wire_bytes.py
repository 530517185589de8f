"""Bytes on the wire per event for a backlog drain: compressed batches, plain batches, one event per frame (4.x).

Runs a child and a parent proactor on a ``Clock`` joined by the in-memory fake broker, so the figures are
exact and do not depend on the machine: every MQTT PUBLISH in both directions (events, batches, acks,
pings, hellos) is counted as it would be on the wire at QoS 0 (fixed header, remaining-length varint,
topic length, topic, payload).  The "4.x framing" row is gwproactor with ``batch_max = 0``: one event per
frame and one ack per event, which is how a gridworks-proactor 4.x child sends to its parent.

    .venv/bin/python benchmarks/wire_bytes.py [--events 10000]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock  # noqa: E402

from gwproactor.config import LinkSettings, ProactorSettings  # noqa: E402
from gwproactor.demo.apps import Reading  # noqa: E402
from gwproactor.proactor import Proactor  # noqa: E402
from gwproactor.store import MemoryEventStore  # noqa: E402
from gwproactor_test.fakes import FakeBroker  # noqa: E402

CHILD, PARENT = "d1.isone.ct.newhaven.orange1.scada", "d1.isone.ct.newhaven.orange1"


def publish_bytes(topic: str, payload: bytes) -> int:
    """Size of a QoS 0 MQTT 3.1.1 PUBLISH packet carrying ``payload`` on ``topic``."""
    remaining = 2 + len(topic.encode()) + len(payload)
    varint = 1 if remaining < 128 else 2 if remaining < 16_384 else 3 if remaining < 2_097_152 else 4
    return 1 + varint + remaining


def run(events: int, batch_max: int, compress: bool) -> dict:
    clock = Clock()
    clock.advance(1_000_000)
    hub = FakeBroker(clock)
    clients = {"child": hub.client("child"), "parent": hub.client("parent")}

    def link(peer: str, short: str, upstream: bool) -> LinkSettings:
        return LinkSettings(peer_long_name=peer, peer_short_name=short, upstream=upstream, batch_max=batch_max,
                            compress=compress, window=50)

    child = Proactor(ProactorSettings(long_name=CHILD, short_name="s", links={"parent": link(PARENT, "a", True)}),
                     reactor=clock, store=MemoryEventStore(clock=clock), brokers={"default": clients["child"]})
    parent = Proactor(ProactorSettings(long_name=PARENT, short_name="a", links={"child": link(CHILD, "s", False)}),
                      reactor=clock, store=MemoryEventStore(clock=clock), brokers={"default": clients["parent"]})
    child.startService()
    parent.startService()
    hub.connect_all()
    for _ in range(20):
        clock.advance(0)
    child.outbox.deactivated()
    for n in range(events):
        child.generate_event(Reading(src=CHILD, seq=n, value=20.0 + (n % 50) / 10))
    for client in clients.values():
        client.take_published()
    child.outbox.activated()
    while child.store.pending_ids():
        clock.advance(0.01)
    assert parent.counters["events_received"] >= events
    frames = [f for client in clients.values() for f in client.take_published()]
    size = sum(publish_bytes(f.topic, f.payload) for f in frames)
    return {"frames": len(frames), "bytes": size, "bytes_per_event": round(size / events, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import machine_info

    compressed = run(args.events, 100, True)
    plain = run(args.events, 100, False)
    per_frame = run(args.events, 0, False)
    print(json.dumps({
        "benchmark": "wire_bytes",
        "settings": {"events": args.events, "batch_max": 100, "window": 50, "event": "gridworks.event.demo.reading"},
        "machine": machine_info(),
        "compressed_batches": compressed,
        "plain_batches": plain,
        "one_event_per_frame_4x": per_frame,
        "ratio_4x_over_compressed": round(per_frame["bytes"] / compressed["bytes"], 2),
        "ratio_4x_over_plain": round(per_frame["bytes"] / plain["bytes"], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
