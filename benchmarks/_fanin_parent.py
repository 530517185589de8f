"""The parent of the fan-in benchmark: one gwproactor with K downstream links on one broker connection.

Run by ``fanin.py`` and ``tests/test_live_fanin.py`` in a process of its own::

    python benchmarks/_fanin_parent.py --port 1883 --k 100 --prefix d1.fan --directory DIR

Links are named ``c<i>`` (``i`` zero-padded to 4 digits), to peers ``<prefix>.c<i>`` / ``c<i>``, all on the one
broker ``default``; the parent itself is ``<prefix>`` / ``f``.  It writes ``DIR/ready`` (its pid) once started,
then one JSON line a second to ``DIR/status.jsonl``: ``t`` (wall clock), ``cpu_s`` (this process's CPU time),
``rss_mib``, ``active`` (links active now), ``events`` (events its application accepted), and on SIGTERM a last
line with ``final`` true and the summed link counters.  With ``--record-file PATH`` it appends ``<link> <src> <id>``
for every event its application accepts.  With ``--profile PATH`` (or ``GWP_FANIN_PROFILE=PATH``) it
runs under cProfile from ``--profile-after`` seconds after its start until it stops, and writes the stats to PATH.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings
from gwproactor.demo.apps import Reading  # noqa: F401 - registers the demo reading type with the codec
from gwproactor.proactor import Proactor


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class FaninParent(Proactor):
    """Counts active links and accepted events, in O(1) per transition and per event."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.active = 0
        self.events = 0
        self.all_active_t: float | None = None
        self.record_fd: int | None = None

    def link_activated(self, link: Any) -> None:
        self.active += 1
        if self.active == len(self.links) and self.all_active_t is None:
            self.all_active_t = time.time()

    def link_deactivated(self, link: Any, reason: str) -> None:
        self.active -= 1

    def handle_event(self, link: Any, event: Any) -> Any:
        if link is not None:  # not the parent's own comm events, which it keeps (it has no upstream)
            self.events += 1
            if self.record_fd is not None:
                os.write(self.record_fd, f"{link.link_name} {event.src} {event.message_id}\n".encode())
        return None


def make_settings(args: argparse.Namespace) -> ProactorSettings:
    links = {
        f"c{i:04d}": LinkSettings(peer_long_name=f"{args.prefix}.c{i:04d}", peer_short_name=f"c{i:04d}")
        for i in range(args.k)
    }
    return ProactorSettings(
        long_name=args.prefix,
        short_name="f",
        brokers={"default": BrokerSettings(endpoint=f"tcp:host=127.0.0.1:port={args.port}")},
        links=links,
        store=StoreSettings(directory=Path(args.directory) / "store", sync_policy="group"),
    )


def link_totals(proactor: FaninParent) -> dict[str, Any]:
    totals: dict[str, int] = {}
    for link in proactor.links.values():
        for key, value in link.acks.stats().items():
            if isinstance(value, int):
                totals[f"acks.{key}"] = totals.get(f"acks.{key}", 0) + value
    return totals


async def main(reactor: Any, args: argparse.Namespace) -> None:
    directory = Path(args.directory)
    directory.mkdir(parents=True, exist_ok=True)
    t_process = time.time()
    proactor = FaninParent(make_settings(args), reactor=reactor)
    if args.record_file:
        proactor.record_fd = os.open(args.record_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    status = open(directory / "status.jsonl", "a")  # noqa: SIM115 - closed at the end of main

    def write_status(final: bool = False) -> None:
        line: dict[str, Any] = {"t": time.time(), "cpu_s": time.process_time(), "rss_mib": round(rss_mib(), 2),
                                "active": proactor.active, "events": proactor.events,
                                "all_active_t": proactor.all_active_t, "t_process": t_process, "final": final}
        if final:
            line["links"] = link_totals(proactor)
            line["counters"] = dict(proactor.counters)
            line["states"] = {s: list(proactor.link_states().values()).count(s)
                              for s in set(proactor.link_states().values())}
            broker = next(iter(proactor.brokers.values()))
            stats = getattr(broker, "stats", None)
            line["broker_connection"] = stats() if callable(stats) else None
        status.write(json.dumps(line, default=str) + "\n")
        status.flush()

    profile_path = args.profile or os.environ.get("GWP_FANIN_PROFILE", "")
    profiler = None
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        reactor.callLater(args.profile_after, profiler.enable)

    proactor.startService()
    gc.freeze()  # what `gwproactor run` does once started
    (directory / "ready").write_text(str(os.getpid()))
    loop = task.LoopingCall(write_status)
    loop.clock = reactor
    loop.start(1.0, now=True)
    stopped: defer.Deferred = defer.Deferred()

    async def stop() -> None:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_path)
        loop.stop()
        write_status(final=True)
        await proactor.stopService()
        status.close()
        if proactor.record_fd is not None:
            os.close(proactor.record_fd)
        stopped.callback(None)

    # SIGTERM stops the reactor (Twisted's handler); the final line is written before it shuts down.
    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.Deferred.fromCoroutine(stop()))
    await stopped


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--prefix", default="d1.fan")
    parser.add_argument("--directory", required=True)
    parser.add_argument("--record-file", default="", help="one line per accepted event: link, src, id")
    parser.add_argument("--profile", default="")
    parser.add_argument("--profile-after", type=float, default=0.0)
    parsed = parser.parse_args()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, parsed)))
    sys.exit(0)
