"""Event delivery benchmark: live throughput, backlog drain, idle round trip, RSS and disk per event.

The child proactor runs in this process (so it can be timed and measured); the
parent runs in a separate process (``gwproactor.demo.apps:DemoParent`` through the
runner); both talk through a private Mosquitto on loopback.  Prints one JSON object.

    python benchmarks/delivery.py                 # all scenarios
    python benchmarks/delivery.py --only live --n 10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer, task

from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings
from gwproactor.demo.apps import Reading
from gwproactor.proactor import Proactor
from gwproactor_test.broker import PrivateBroker
from gwproactor_test.process import ProactorProcess
from gwproactor_test.wait import await_for

CHILD, PARENT = "d1.bench.child", "d1.bench"
SYNC = "group"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def parent_env(broker: PrivateBroker, store_dir: Path) -> dict[str, str]:
    return {
        "GWP_LONG_NAME": PARENT,
        "GWP_SHORT_NAME": "p",
        "GWP_BROKERS__DEFAULT__ENDPOINT": broker.endpoint(),
        "GWP_LINKS__CHILD__PEER_LONG_NAME": CHILD,
        "GWP_LINKS__CHILD__PEER_SHORT_NAME": "c",
        "GWP_STORE__DIRECTORY": str(store_dir),
    }


def make_child(broker: PrivateBroker, store_dir: Path, reactor: Any, sync: str = "group", window: int = 50) -> Proactor:
    settings = ProactorSettings(
        long_name=CHILD,
        short_name="c",
        brokers={"default": BrokerSettings(endpoint=broker.endpoint())},
        links={"parent": LinkSettings(peer_long_name=PARENT, peer_short_name="p", upstream=True, window=window)},
        store=StoreSettings(directory=store_dir, sync_policy=sync),
    )
    return Proactor(settings, reactor=reactor)


async def wait_active(proactor: Proactor, timeout: float = 30) -> None:
    await await_for(lambda: proactor.upstream.is_active, timeout, describe=lambda: json.dumps(proactor.link_states()))


async def wait_drained(proactor: Proactor, timeout: float) -> None:
    await await_for(lambda: proactor.store.stats()["pending"] == 0, timeout,
                    describe=lambda: json.dumps(proactor.stats()["outbox"]))


async def generate(proactor: Proactor, n: int, per_turn: int | None) -> list[defer.Deferred]:
    ds = []
    for i in range(n):
        ds.append(proactor.generate_event(Reading(src=proactor.name, seq=i, value=1.0)))
        if per_turn and (i + 1) % per_turn == 0:
            await task.deferLater(proactor.reactor, 0, lambda: None)
    return ds


async def scenario_live(reactor: Any, broker: PrivateBroker, tmp: Path, n: int, per_turn: int | None) -> dict:
    parent = ProactorProcess("gwproactor.demo.apps:DemoParent", parent_env(broker, tmp / "live-parent"), tmp / "live-pp", reactor=reactor)
    await parent.start()
    child = make_child(broker, tmp / "live-child", reactor, sync=SYNC)
    child.startService()
    try:
        await wait_active(child)
        base_timeouts = child.upstream.acks.timeouts
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        await generate(child, n, per_turn)
        await wait_drained(child, 300)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        out = child.stats()["outbox"]
        return {
            "n": n,
            "mode": "one burst" if not per_turn else f"{per_turn} per reactor turn",
            "seconds": round(elapsed, 3),
            "acked_events_per_s": round(n / elapsed),
            "child_cpu_ms_per_event": round(cpu * 1000 / n, 3),
            "ack_timeouts": child.upstream.acks.timeouts - base_timeouts,
            "resent": out["resent"],
        }
    finally:
        await child.stopService()
        await parent.terminate()
        await parent.close()


async def scenario_reupload(reactor: Any, broker: PrivateBroker, tmp: Path, n: int) -> dict:
    store_dir = tmp / f"reupload-child-{n}"
    child = make_child(broker, store_dir, reactor, sync=SYNC)
    child.startService()
    rss_before = current_rss_mib()
    try:
        t0 = time.perf_counter()
        ds = await generate(child, n, per_turn=1000)
        await defer.gatherResults(ds)
        append_s = time.perf_counter() - t0
        disk = dir_bytes(store_dir)
        rss_pending = current_rss_mib()
        await child.stopService()
        t0 = time.perf_counter()
        child = make_child(broker, store_dir, reactor, sync=SYNC)
        reopen_s = time.perf_counter() - t0
        child.startService()
        parent = ProactorProcess("gwproactor.demo.apps:DemoParent", parent_env(broker, tmp / f"re-parent-{n}"), tmp / f"re-pp-{n}", reactor=reactor)
        await parent.start()
        t0 = time.perf_counter()
        await wait_active(child, 60)
        await wait_drained(child, 600)
        drain_s = time.perf_counter() - t0
        await parent.terminate()
        await parent.close()
        return {
            "n": n,
            "store_fill_seconds": round(append_s, 3),
            "bytes_on_disk_per_event": round(disk / n, 1),
            "reopen_seconds": round(reopen_s, 3),
            "rss_mib_before_fill": round(rss_before, 1),
            "rss_mib_with_pending": round(rss_pending, 1),
            "drain_seconds": round(drain_s, 3),
            "drain_events_per_s": round(n / drain_s),
        }
    finally:
        if child.running:
            await child.stopService()


async def scenario_idle_rtt(reactor: Any, broker: PrivateBroker, tmp: Path, count: int) -> dict:
    parent = ProactorProcess("gwproactor.demo.apps:DemoParent", parent_env(broker, tmp / "rtt-parent"), tmp / "rtt-pp", reactor=reactor)
    await parent.start()
    child = make_child(broker, tmp / "rtt-child", reactor, sync=SYNC)
    child.startService()
    try:
        await wait_active(child)
        await wait_drained(child, 30)
        samples: list[float] = []
        for i in range(count):
            t0 = time.perf_counter()
            durable = child.generate_event(Reading(src=CHILD, seq=i, value=0.0))
            await await_for(lambda: child.store.stats()["pending"] == 0, 10, interval=0.0002)
            samples.append((time.perf_counter() - t0) * 1000)
            await durable
            await task.deferLater(reactor, 0.002, lambda: None)
        samples.sort()
        return {
            "count": count,
            "p50_ms": round(statistics.median(samples), 3),
            "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3),
            "link_rtt_p50_ms": round(child.upstream.acks.rtt.p50 * 1000, 3),
            "link_rtt_p99_ms": round(child.upstream.acks.rtt.p99 * 1000, 3),
        }
    finally:
        await child.stopService()
        await parent.terminate()
        await parent.close()


async def main(reactor: Any, args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gwp-bench-"))
    broker = PrivateBroker(tmp / "broker", reactor=reactor)
    await broker.start()
    result: dict[str, Any] = {
        "benchmark": "delivery",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "reactor": type(reactor).__name__},
        "settings": {"window": 50, "sync_policy": SYNC, "qos": 1, "event": "gridworks.event.demo.reading (~190 B)"},
    }
    try:
        only = set(args.only.split(",")) if args.only else {"live", "reupload", "rtt"}
        if "live" in only:
            result["live_burst"] = await scenario_live(reactor, broker, tmp, args.n, None)
            result["live_per_turn"] = await scenario_live(reactor, broker, tmp, args.n, 1)
        if "reupload" in only:
            result["reupload"] = [await scenario_reupload(reactor, broker, tmp, n) for n in args.reupload]
        if "rtt" in only:
            result["idle_round_trip"] = await scenario_idle_rtt(reactor, broker, tmp, args.rtt_count)
        result["child_peak_rss_mib"] = round(rss_mib(), 1)
    finally:
        await broker.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--reupload", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000])
    parser.add_argument("--rtt-count", type=int, default=500)
    parser.add_argument("--only", default="")
    parser.add_argument("--asyncio", action="store_true")
    parser.add_argument("--sync", default="group", choices=("always", "group", "never"))
    parsed = parser.parse_args()
    SYNC = parsed.sync
    if parsed.asyncio:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, parsed)))
