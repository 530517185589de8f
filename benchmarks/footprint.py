"""A Raspberry Pi's footprint: import times, ``gwproactor --help``, start to active, idle RSS and idle CPU.

Each figure is taken in fresh processes, the way a device runs them:

* **import**: wall time of ``import gwproactor`` (the package root) and ``import gwproactor.proactor``
  (what an application imports) in a new interpreter, minus nothing (the interpreter's own start is
  reported separately as ``python -c pass``);
* **CLI**: wall time of ``gwproactor --help`` (console script, new process each time);
* **start to active**: a child ``gwproactor run`` process is spawned while its parent (another process) is
  already up; the time from the spawn to the child's log line saying its link entered ``active``;
* **idle**: once the link is active and a settle time has passed, the child's and the parent's resident
  set (``VmRSS``) and their CPU time (``utime + stime`` from ``/proc``) over ``--idle-s`` seconds with no
  events, only heartbeats.

Prints one JSON object.  ``python benchmarks/footprint.py`` (about 90 s); ``--idle-s 10`` for a quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from gwproactor_test.broker import PrivateBroker
from gwproactor_test.process import ProactorProcess
from gwproactor_test.wait import await_for

from _machine import machine_info  # benchmarks/ is on sys.path when a script runs from it

CHILD, PARENT = "d1.bench.child", "d1.bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _wall(args: list[str], runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "runs": runs}


def import_times(runs: int) -> dict[str, Any]:
    py = sys.executable
    gwp = shutil.which("gwproactor", path=str(Path(py).parent)) or "gwproactor"
    return {
        "python -c pass": _wall([py, "-c", "pass"], runs),
        "import gwproactor": _wall([py, "-c", "import gwproactor"], runs),
        "import gwproactor.proactor": _wall([py, "-c", "import gwproactor.proactor"], runs),
        "gwproactor --help": _wall([gwp, "--help"], runs),
    }


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15 of stat)


def env_for(broker: PrivateBroker, store: Path, own: tuple[str, str], peer: tuple[str, str], link: str,
            upstream: bool) -> dict[str, str]:
    env = {
        "GWP_LONG_NAME": own[0],
        "GWP_SHORT_NAME": own[1],
        "GWP_BROKERS__DEFAULT__ENDPOINT": broker.endpoint(),
        f"GWP_LINKS__{link}__PEER_LONG_NAME": peer[0],
        f"GWP_LINKS__{link}__PEER_SHORT_NAME": peer[1],
        "GWP_STORE__DIRECTORY": str(store),
    }
    if upstream:
        env[f"GWP_LINKS__{link}__UPSTREAM"] = "true"
    return env


async def linked_pair(reactor: Any, tmp: Path, settle_s: float, idle_s: float) -> dict[str, Any]:
    broker = PrivateBroker(tmp / "broker", reactor=reactor)
    await broker.start()
    parent = ProactorProcess("gwproactor.demo.apps:DemoParent",
                             env_for(broker, tmp / "parent-store", (PARENT, "p"), (CHILD, "c"), "CHILD", False),
                             tmp / "parent", reactor=reactor)
    child = ProactorProcess("gwproactor.proactor:Proactor",
                            env_for(broker, tmp / "child-store", (CHILD, "c"), (PARENT, "p"), "PARENT", True),
                            tmp / "child", reactor=reactor)
    try:
        await parent.start()
        t0 = time.perf_counter()
        started = child.start()
        active_at: list[float] = []

        def active() -> bool:
            if not active_at and "-> active" in child.log_tail(400):
                active_at.append(time.perf_counter() - t0)
            return bool(active_at)

        await await_for(active, 30, describe=child.log_tail, interval=0.005)
        await started
        ready_s = time.perf_counter() - t0
        await task.deferLater(reactor, settle_s, lambda: None)  # a measurement window, not a wait for a condition
        assert child.pid is not None and parent.pid is not None
        pids = {"child": child.pid, "parent": parent.pid}
        rss_active = {k: rss_mib(p) for k, p in pids.items()}
        cpu0 = {k: cpu_s(p) for k, p in pids.items()}
        w0 = time.perf_counter()
        await task.deferLater(reactor, idle_s, lambda: None)
        wall = time.perf_counter() - w0
        cpu = {k: cpu_s(p) - cpu0[k] for k, p in pids.items()}
        return {
            "start_to_active_s": round(active_at[0], 3),
            "start_to_ready_file_s": round(ready_s, 3),
            "idle_rss_mib": {k: rss_mib(p) for k, p in pids.items()},
            "rss_mib_after_settle": rss_active,
            "idle_window_s": round(wall, 1),
            "idle_cpu_percent": {k: round(100 * c / wall, 3) for k, c in cpu.items()},
            "idle_cpu_ms_per_s": {k: round(1000 * c / wall, 3) for k, c in cpu.items()},
            "cpu_tick_s": 1 / CLK_TCK,
        }
    finally:
        for proc in (child, parent):
            if proc.running:
                await proc.terminate()
            await proc.close()
        await broker.stop()


async def main(reactor: Any, args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gwp-footprint-"))
    result: dict[str, Any] = {
        "benchmark": "footprint",
        "machine": machine_info(str(tmp), reactor),
        "settings": {"runs": args.runs, "settle_s": args.settle_s, "idle_s": args.idle_s,
                     "child": "gwproactor.proactor:Proactor via `python -m gwproactor.runner` (GC frozen after start)",
                     "parent": "gwproactor.demo.apps:DemoParent, same runner", "heartbeat_s": 10.0},
        "imports": import_times(args.runs),
    }
    try:
        result["linked_pair"] = await linked_pair(reactor, tmp, args.settle_s, args.idle_s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per import/CLI figure")
    parser.add_argument("--settle-s", type=float, default=5.0, help="after active, before the idle window")
    parser.add_argument("--idle-s", type=float, default=60.0, help="the idle window")
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, parser.parse_args())))
