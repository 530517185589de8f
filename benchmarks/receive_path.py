"""CPU per event of a parent's receive path, in one process: frame intake, decode, dedup, accept, the ack.

A parent :class:`~gwproactor.proactor.Proactor` with one downstream link, a real
:class:`~gwproactor.store.FileEventStore` (its received-id window written per event, sync ``never``) in a
temporary directory, and the test package's in-memory broker on a ``Clock``; pre-encoded
``gridworks.event.demo.reading`` frames (one event per frame, as a 4.x child or a fan-in child sends
them) are handed to the parent's subscription one at a time, and each is acked.  What it measures is the
library's Python work per event; the MQTT framing (about 3.5 µs to read a PUBLISH and 2.5 µs to write
one, ``benchmarks/README.rst``), the socket calls and the reactor are not in it::

    .venv/bin/python benchmarks/receive_path.py [--events 20000] [--rounds 5] [--profile]

Prints one JSON object: microseconds of CPU (``time.process_time``) per event, best and median of the rounds.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock  # noqa: E402

from gwproactor.config import LinkSettings, ProactorSettings  # noqa: E402
from gwproactor.demo.apps import Reading  # noqa: E402
from gwproactor.message import Ping, make_message, topic_for  # noqa: E402
from gwproactor.proactor import Proactor  # noqa: E402
from gwproactor.store import FileEventStore  # noqa: E402
from gwproactor_test.fakes import FakeMQTTClient  # noqa: E402

CHILD, PARENT = "d1.isone.ct.newhaven.orange1.scada", "d1.isone.ct.newhaven.orange1"


def one_round(events: int, profile: cProfile.Profile | None) -> float:
    """Accept ``events`` events; return CPU microseconds per event."""
    clock = Clock()
    clock.advance(1_000_000)
    broker = FakeMQTTClient(name="parent")
    with tempfile.TemporaryDirectory() as directory:
        store = FileEventStore.open(directory, clock=clock, sync="never")
        parent = Proactor(
            ProactorSettings(long_name=PARENT, short_name="a",
                             links={"child": LinkSettings(peer_long_name=CHILD, peer_short_name="s")}),
            reactor=clock, store=store, brokers={"default": broker})
        parent.startService()
        broker.connect()
        clock.advance(0)
        codec = parent.codec
        broker.deliver(topic_for(CHILD, "a", Ping.TYPE_NAME), codec.encode(make_message(CHILD, "a", Ping())))
        clock.advance(0)
        assert parent.links["child"].state.value == "active", parent.links["child"].state
        topic = topic_for(CHILD, "a", Reading.TYPE_NAME)
        frames = [codec.encode(make_message(CHILD, "a", Reading(src=CHILD, seq=n, value=20.5)))
                  for n in range(events)]
        broker.take_published()
        deliver = broker.deliver
        if profile is not None:
            profile.enable()
        t0 = time.process_time()
        for frame in frames:
            deliver(topic, frame)
        cpu = time.process_time() - t0
        if profile is not None:
            profile.disable()
        acks = sum(1 for p in broker.take_published() if p.topic.endswith("gridworks-ack"))
        assert parent.counters["events_received"] == events and acks == events, (parent.counters, acks)
        parent.stopService()
        store.close()
    return cpu / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one more round; top functions in the JSON")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import machine_info, profile_top

    rounds = [one_round(args.events, None) for _ in range(args.rounds)]
    out = {
        "benchmark": "receive_path",
        "settings": {"events": args.events, "rounds": args.rounds, "framing": "one event per frame",
                     "store": "FileEventStore, sync never", "broker": "gwproactor_test.fakes.FakeMQTTClient"},
        "machine": machine_info(),
        "cpu_us_per_event_best": round(min(rounds), 2),
        "cpu_us_per_event_median": round(statistics.median(rounds), 2),
        "rounds_us": [round(r, 2) for r in rounds],
    }
    if args.profile:
        profile = cProfile.Profile()
        one_round(args.events, profile)
        out["profile_top_tottime"] = profile_top(profile, 25)["tottime"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
