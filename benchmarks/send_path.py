"""CPU per event of a child's send path, in one process: generate_event, the store, the outbox, the ack.

A child :class:`~gwproactor.proactor.Proactor` with an upstream link to a gwproactor parent (batches
announced), a real :class:`~gwproactor.store.FileEventStore` (sync ``never``: no fsync thread) in a temporary
directory, and the test package's in-memory broker client on a ``Clock``.  The parent is simulated: each frame
the child publishes is answered with its ack, handed straight back to the child's subscription.  Two modes:

* ``idle``: one event at a time, acked before the next is generated (the sporadic case of the idle round trip:
  every event goes alone, at once);
* ``per-turn``: events generated one per reactor turn while frames are in flight (acks come back one turn
  later), so frames carry several events;
* ``burst``: all events generated in one reactor turn, then drained in batches.

What it measures is the library's Python work per event (MQTT framing, sockets and the reactor are not in it)::

    .venv/bin/python benchmarks/send_path.py [--events 20000] [--rounds 5] [--profile idle|per-turn]

Prints one JSON object: microseconds of CPU (``time.process_time``) per event, and frames per event.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock  # noqa: E402

from gwproactor.config import LinkSettings, ProactorSettings  # noqa: E402
from gwproactor.demo.apps import Reading  # noqa: E402
from gwproactor.message import Hello, make_ack, make_message, topic_for  # noqa: E402
from gwproactor.proactor import Proactor  # noqa: E402
from gwproactor.store import FileEventStore  # noqa: E402
from gwproactor_test.fakes import FakeMQTTClient  # noqa: E402

CHILD, PARENT = "d1.isone.ct.newhaven.orange1.scada", "d1.isone.ct.newhaven.orange1"


class Harness:
    """The child, its fake broker client, and a parent that acks every ack-required frame."""

    def __init__(self, directory: str) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.broker = FakeMQTTClient(name="child")
        self.frames = 0
        self._late: list[bytes] = []
        self.store = FileEventStore.open(directory, clock=self.clock, sync="never")
        self.child = Proactor(
            ProactorSettings(long_name=CHILD, short_name="s",
                             links={"parent": LinkSettings(peer_long_name=PARENT, peer_short_name="a", upstream=True)}),
            reactor=self.clock, store=self.store, brokers={"default": self.broker})
        self.child.startService()
        self.broker.connect()
        self.codec = self.child.codec
        self.ack_topic = topic_for(PARENT, "s", "gridworks.ack")
        hello = make_message(PARENT, "s", Hello(capabilities=["batch1"], version="bench"), ack_required=False)
        self.broker.deliver(topic_for(PARENT, "s", Hello.TYPE_NAME), self.codec.encode(hello))
        self.answer()
        self.clock.advance(0)
        self.answer()
        assert self.child.upstream.state.value == "active"
        assert self.child.upstream.peer_accepts_batches
        self.frames = 0

    def answer(self, later: bool = False) -> int:
        """Ack every ack-required frame the child published since the last call; returns how many.

        With ``later``, the acks of this call's frames are delivered at the next call (one turn late).
        """
        acks = []
        for published in self.broker.take_published():
            header = json.loads(published.payload)["Header"]
            if header.get("AckRequired"):
                acks.append(self.codec.encode(make_ack(PARENT, "s", header["MessageId"])))
        self.frames += len(acks)
        if later:
            acks, self._late = self._late, acks
        for ack in acks:
            self.broker.deliver(self.ack_topic, ack)
        return len(acks)

    def close(self) -> None:
        self.child.stopService()
        self.store.close()


def one_round(events: int, mode: str, profile: cProfile.Profile | None) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as directory:
        h = Harness(directory)
        readings = [Reading(src=CHILD, seq=n, value=20.5) for n in range(events)]
        generate, answer, advance = h.child.generate_event, h.answer, h.clock.advance
        if profile is not None:
            profile.enable()
        t0 = time.process_time()
        if mode == "idle":
            for reading in readings:
                generate(reading)
                answer()
        elif mode == "burst":
            for reading in readings:
                generate(reading)
            while h.child.store.pending_ids():
                advance(0)
                answer(later=True)
        else:
            for reading in readings:
                generate(reading)
                advance(0)
                answer(later=True)
            while h.child.store.pending_ids():
                advance(0)
                answer(later=True)
        cpu = time.process_time() - t0
        if profile is not None:
            profile.disable()
        assert not h.child.store.pending_ids()
        frames = h.frames
        h.close()
    return cpu / events * 1e6, frames / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", choices=("idle", "per-turn", "burst"), default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import machine_info, profile_top

    out: dict[str, Any] = {
        "benchmark": "send_path",
        "settings": {"events": args.events, "rounds": args.rounds, "store": "FileEventStore, sync never",
                     "broker": "gwproactor_test.fakes.FakeMQTTClient", "peer": "acks every frame at once"},
        "machine": machine_info(),
    }
    for mode in ("idle", "per-turn", "burst"):
        results = [one_round(args.events, mode, None) for _ in range(args.rounds)]
        cpus = [c for c, _ in results]
        out[mode] = {"cpu_us_per_event_best": round(min(cpus), 2),
                     "cpu_us_per_event_median": round(statistics.median(cpus), 2),
                     "frames_per_event": round(results[0][1], 3)}
    if args.profile:
        profile = cProfile.Profile()
        one_round(args.events, args.profile, profile)
        out["profile_top_tottime"] = profile_top(profile, 30)["tottime"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
