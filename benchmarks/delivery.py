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
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer, task

from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings
from gwproactor.demo.apps import Reading
from gwproactor.ops import freeze_after_start
from gwproactor.proactor import Proactor
from gwproactor_test.broker import PrivateBroker
from gwproactor_test.process import ProactorProcess
from gwproactor_test.wait import await_for

from _machine import machine_info  # benchmarks/ is on sys.path when a script runs from it

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


class BenchChild(Proactor):
    """The child proactor, plus a Deferred that fires when an ack leaves the store empty (idle round trip)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store_emptied: defer.Deferred | None = None

    def link_acked(self, link: Any, message_id: str, rtt: Any) -> None:
        super().link_acked(link, message_id, rtt)
        waiter = self.store_emptied
        if waiter is not None and self.store.stats()["pending"] == 0:
            self.store_emptied = None
            waiter.callback(time.perf_counter())


def make_child(broker: PrivateBroker, store_dir: Path, reactor: Any, sync: str = "group", window: int = 50) -> BenchChild:
    settings = ProactorSettings(
        long_name=CHILD,
        short_name="c",
        brokers={"default": BrokerSettings(endpoint=broker.endpoint())},
        links={"parent": LinkSettings(peer_long_name=PARENT, peer_short_name="p", upstream=True, window=window)},
        store=StoreSettings(directory=store_dir, sync_policy=sync),
    )
    return BenchChild(settings, reactor=reactor)


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
            "frames_sent": out["batches_sent"],
            "coalesced": out.get("coalesced", 0),
        }
    finally:
        await child.stopService()
        await parent.terminate()
        await parent.close()


def fill_store(directory: str, n: int) -> dict:
    """Write ``n`` events into a new store (in its own process), then time a reopen."""
    from twisted.internet.task import Clock

    from gwproactor.message import Codec
    from gwproactor.store import FileEventStore

    codec = Codec()
    store = FileEventStore.open(directory, clock=Clock(), sync="never")
    t0 = time.perf_counter()
    for i in range(n):
        event = Reading(src=CHILD, seq=i, value=1.0)
        store.append(event.message_id, codec.encode_payload(event))
    fill_s = time.perf_counter() - t0
    store.close()
    t0 = time.perf_counter()
    store = FileEventStore.open(directory, clock=Clock())
    reopen_s = time.perf_counter() - t0
    assert len(store.pending_ids()) == n
    store.close()
    return {"fill_seconds": round(fill_s, 3), "reopen_seconds": round(reopen_s, 3)}


def child_env(broker: PrivateBroker, store_dir: Path) -> dict[str, str]:
    return {
        "GWP_LONG_NAME": CHILD,
        "GWP_SHORT_NAME": "c",
        "GWP_BROKERS__DEFAULT__ENDPOINT": broker.endpoint(),
        "GWP_LINKS__PARENT__PEER_LONG_NAME": PARENT,
        "GWP_LINKS__PARENT__PEER_SHORT_NAME": "p",
        "GWP_LINKS__PARENT__UPSTREAM": "true",
        "GWP_STORE__DIRECTORY": str(store_dir),
        "GWP_STORE__SYNC_POLICY": SYNC,
    }


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


async def scenario_reupload(reactor: Any, broker: PrivateBroker, tmp: Path, n: int) -> dict:
    """Child and parent in separate processes; the child starts with ``n`` stored events."""
    store_dir = tmp / f"reupload-child-{n}"
    fill = json.loads(subprocess.run([sys.executable, __file__, "--fill", str(store_dir), "--n", str(n)],
                                     check=True, capture_output=True, text=True).stdout)
    disk = dir_bytes(store_dir)
    records = tmp / f"re-records-{n}"
    penv = {**parent_env(broker, tmp / f"re-parent-{n}"), "GWP_DEMO__RECORD_FILE": str(records)}
    parent = ProactorProcess("gwproactor.demo.apps:DemoParent", penv, tmp / f"re-pp-{n}", reactor=reactor)
    child = ProactorProcess("gwproactor.proactor:Proactor", child_env(broker, store_dir), tmp / f"re-cp-{n}", reactor=reactor)
    await parent.start()
    try:
        t0 = time.perf_counter()
        await child.start()
        started_s = time.perf_counter() - t0

        def received() -> int:
            try:
                with open(records, "rb") as f:
                    return sum(1 for _ in f)
            except FileNotFoundError:
                return 0

        await await_for(lambda: received() >= n, 600, describe=child.log_tail, interval=0.05)
        drain_s = time.perf_counter() - t0
        child_peak = peak_rss_mib(child.pid)
        return {
            "n": n,
            **fill,
            "bytes_on_disk_per_event": round(disk / n, 1),
            "child_start_seconds": round(started_s, 3),
            "drain_seconds_incl_start": round(drain_s, 3),
            "drain_events_per_s": round(n / drain_s),
            "drain_events_per_s_after_start": round(n / (drain_s - started_s)),
            "child_peak_rss_mib": round(child_peak, 1),
        }
    finally:
        await child.terminate()
        await child.close()
        await parent.terminate()
        await parent.close()


async def _with_timeout(d: defer.Deferred, reactor: Any, seconds: float) -> Any:
    return await d.addTimeout(seconds, reactor)


async def scenario_idle_rtt(reactor: Any, broker: PrivateBroker, tmp: Path, count: int, gap_s: float) -> dict:
    """One event at a time, ``gap_s`` of idle after each ack (and its durability), timed to its ack."""
    parent = ProactorProcess("gwproactor.demo.apps:DemoParent", parent_env(broker, tmp / "rtt-parent"), tmp / "rtt-pp", reactor=reactor)
    await parent.start()
    child = make_child(broker, tmp / "rtt-child", reactor, sync=SYNC)
    child.startService()
    # What `gwproactor run` does once the proactor has started (the parent process gets it from the runner).
    freeze_after_start()
    try:
        await wait_active(child)
        await wait_drained(child, 30)
        samples: list[float] = []
        for i in range(count):
            # From generate_event to the ack taking the event out of the store, waited on (not polled).
            emptied = child.store_emptied = defer.Deferred()
            t0 = time.perf_counter()
            durable = child.generate_event(Reading(src=CHILD, seq=i, value=0.0))
            t1 = await defer.Deferred.fromCoroutine(_with_timeout(emptied, reactor, 10))
            samples.append((t1 - t0) * 1000)
            await durable
            await task.deferLater(reactor, max(0.0, gap_s - (time.perf_counter() - t1)), lambda: None)
        samples.sort()
        result = {
            "count": count,
            "gap_ms": gap_s * 1000,
            "p50_ms": round(statistics.median(samples), 3),
            "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3),
            "max_ms": round(samples[-1], 3),
            "link_rtt_p50_ms": round(child.upstream.acks.rtt.p50 * 1000, 3),
            "link_rtt_p99_ms": round(child.upstream.acks.rtt.p99 * 1000, 3),
            "coalesced": child.stats()["outbox"].get("coalesced", 0),
        }
    finally:
        await child.stopService()
        await parent.terminate()
        await parent.close()
    result["floor"] = await floor_rtt(reactor, broker, count, gap_s)
    return result


async def floor_rtt(reactor: Any, broker: PrivateBroker, count: int, gap_s: float) -> dict:
    """The same exchange with raw sockets and no framework (``_floor.py``), through the same broker."""
    from twisted.internet.utils import getProcessOutputAndValue

    script = str(Path(__file__).with_name("_floor.py"))
    out, err, code = await getProcessOutputAndValue(
        sys.executable, [script, "--port", str(broker.port), "--gap-ms", str(gap_s * 1000), "--count", str(count)],
        env=dict(os.environ), reactor=reactor)
    if code != 0:
        raise RuntimeError(f"_floor.py failed ({code}): {err.decode(errors='replace')}")
    return json.loads(out.decode().strip().splitlines()[-1])


async def main(reactor: Any, args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gwp-bench-"))
    broker = PrivateBroker(tmp / "broker", reactor=reactor)
    await broker.start()
    result: dict[str, Any] = {
        "benchmark": "delivery",
        "machine": machine_info(str(tmp), reactor),
        "settings": {"window": 50, "batch_max": 100, "sync_policy": SYNC,
                     "fsync_in_thread": attrs.fields(StoreSettings).fsync_in_thread.default,
                     "qos": attrs.fields(LinkSettings).qos.default, "gc_freeze_after_start": True,
                     "event": "gridworks.event.demo.reading (~190 B)"},
    }
    try:
        only = set(args.only.split(",")) if args.only else {"live", "reupload", "rtt"}
        if "live" in only:
            result["live_burst"] = await scenario_live(reactor, broker, tmp, args.n, None)
            result["live_per_turn"] = await scenario_live(reactor, broker, tmp, args.n, 1)
        if "reupload" in only:
            result["reupload"] = [await scenario_reupload(reactor, broker, tmp, n) for n in args.reupload]
        if "rtt" in only:
            result["idle_round_trip"] = [await scenario_idle_rtt(reactor, broker, tmp, args.rtt_count, gap / 1000)
                                         for gap in args.rtt_gap_ms]
        result["benchmark_process_peak_rss_mib"] = round(rss_mib(), 1)
    finally:
        await broker.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--reupload", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000])
    parser.add_argument("--rtt-count", type=int, default=500)
    parser.add_argument("--rtt-gap-ms", type=lambda s: [float(x) for x in s.split(",")], default=[10.0],
                        help="idle time after each round trip (comma-separated for several runs; default 10)")
    parser.add_argument("--only", default="")
    parser.add_argument("--asyncio", action="store_true")
    parser.add_argument("--sync", default="group", choices=("always", "group", "never"))
    parser.add_argument("--fill", default=None, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.fill:
        print(json.dumps(fill_store(parsed.fill, parsed.n)))
        sys.exit(0)
    SYNC = parsed.sync
    if parsed.asyncio:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, parsed)))
