"""Benchmark of FileEventStore: append throughput per sync policy, reopen time and memory per pending id.

Runs on the real (default) reactor and prints one JSON document::

    python benchmarks/store_append.py [--sizes 10000 100000] [--payload 300] [--dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
import tracemalloc

from twisted.internet import task
from twisted.internet.defer import Deferred

from gwproactor.store import FileEventStore

from _machine import machine_info  # benchmarks/ is on sys.path when a script runs from it


class TimedFsync:
    """os.fsync, timed (the reactor is blocked for exactly this long)."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def __call__(self, fd: int) -> None:
        t = time.perf_counter()
        os.fsync(fd)
        dt = time.perf_counter() - t
        self.count += 1
        self.total += dt
        self.max = max(self.max, dt)


async def run_appends(reactor, directory: str, sync: str, n: int, payload_size: int, chunk: int) -> dict:
    fsync = TimedFsync()
    policy, _, where = sync.partition("-")
    in_thread = where == "thread"
    store = FileEventStore.open(directory, clock=reactor, sync=policy, fsync=fsync, max_bytes=None,
                                fsync_in_thread=in_thread)
    base = b'{"TypeName": "gridworks.event.problem", "Summary": "benchmark", "Details": "'
    payload = base + b"x" * max(0, payload_size - len(base) - 2) + b'"}'
    latencies: list[float] = []
    all_done: Deferred = Deferred()

    def done(_, t0):
        latencies.append(time.perf_counter() - t0)
        if len(latencies) == n:
            all_done.callback(None)

    # Deferreds are not kept (a proactor would not hold 100,000 of them; the GC pauses they cause
    # would dominate the latency percentiles).
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        store.append(f"{i:08d}-0000-4000-8000-000000000000", payload).addCallback(done, t0)
        if i % chunk == chunk - 1:
            await task.deferLater(reactor, 0, lambda: None)  # let the reactor run (group commit timers)
    await all_done
    elapsed = time.perf_counter() - start
    stats = store.stats()
    await store.close()
    latencies.sort()
    return {
        "sync": sync,
        "events": n,
        "payload_bytes": len(payload),
        "seconds": round(elapsed, 4),
        "events_per_s": round(n / elapsed),
        "durable_latency_ms_p50": round(latencies[len(latencies) // 2] * 1000, 3),
        "durable_latency_ms_p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
        "fsyncs": fsync.count,
        "fsync_ms_mean": round(fsync.total / fsync.count * 1000, 3) if fsync.count else 0,
        "fsync_ms_max": round(fsync.max * 1000, 3),
        "fsync_in_thread": in_thread,
        "reactor_blocked_in_fsync_s": 0.0 if in_thread else round(fsync.total, 4),
        "segments": stats["segments"],
        "disk_bytes": stats["disk_bytes"],
    }


def measure_reopen(directory: str, reactor) -> dict:
    times = []
    pending = 0
    for _ in range(3):
        gc.collect()
        t = time.perf_counter()
        store = FileEventStore.open(directory, clock=reactor, sync="never", max_bytes=None)
        times.append(time.perf_counter() - t)
        pending = store.stats()["pending"]
        store.close()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = FileEventStore.open(directory, clock=reactor, sync="never", max_bytes=None)
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    store.close()
    return {
        "pending": pending,
        "open_seconds_best": round(min(times), 4),
        "open_seconds_all": [round(t, 4) for t in times],
        "memory_bytes_per_pending_id": round((after - before) / pending, 1) if pending else None,
        "memory_peak_during_open_bytes": peak - before,
    }


async def main(reactor, args) -> None:
    root = tempfile.mkdtemp(prefix="gwp-store-bench-", dir=args.dir)
    results = {"machine": machine_info(root), "appends": [], "reopen": None}
    try:
        for n in args.sizes:
            for sync in args.policies:
                directory = os.path.join(root, f"{sync}-{n}")
                results["appends"].append(await run_appends(reactor, directory, sync, n, args.payload, args.chunk))
                print(json.dumps(results["appends"][-1]), file=sys.stderr)
        biggest = max(args.sizes)
        reopen_dir = os.path.join(root, f"never-{biggest}")
        if not os.path.isdir(reopen_dir):
            await run_appends(reactor, reopen_dir, "never", biggest, args.payload, args.chunk)
        results["reopen"] = measure_reopen(reopen_dir, reactor)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=2))


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--policies", nargs="+", default=["always", "group", "never", "always-thread", "group-thread"],
                   help="sync policies; '-thread' runs fsync in the store's own thread (as a proactor's store does)")
    p.add_argument("--payload", type=int, default=300, help="payload bytes per event")
    p.add_argument("--chunk", type=int, default=100, help="appends per reactor turn")
    p.add_argument("--dir", default=None, help="parent directory for the temporary stores")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, arguments)))
