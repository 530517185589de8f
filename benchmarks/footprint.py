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
  events, only heartbeats; and where the child's resident memory is (``RssAnon``/``RssFile``, threads, the
  largest file mappings from ``/proc/<pid>/smaps``).

``--tls-stack always`` runs both processes with the TLS stack kept (the figures before it was left out of
plain-TCP processes); ``--breakdown`` adds ``VmRSS`` after each step of the runner's imports, in fresh
interpreters, with the TLS stack left out and kept.

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

#: The imports of ``gwproactor run --app gwproactor.proactor:Proactor`` in the runner's order, as steps; the TLS
#: stack is left out (when it is) between ``gwproactor.proactor`` (the app) and the reactor.
IMPORT_STEPS = ("attrs", "twisted.logger", "gwproactor.config", "gwproactor.ops", "gwproactor.runner",
                "gwproactor.proactor", "twisted.internet.reactor", "gwproactor.preflight",
                "twisted.internet.endpoints", "orjson", "gwproactor.store")

_STEPS_SCRIPT = """
import importlib, json, sys
def status():
    d = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                d[key] = round(int(value.split()[0]) / 1024.0, 1)
    return d
steps = [{"step": "python (interpreter, site)", **status(), "modules": len(sys.modules)}]
leave_out = sys.argv[1] == "left-out"
for name in sys.argv[2:]:
    if leave_out and name == "twisted.internet.reactor":
        from gwproactor.ops.tlsstack import leave_out_tls_stack
        assert leave_out_tls_stack()
    importlib.import_module(name)
    steps.append({"step": name, **status(), "modules": len(sys.modules)})
tls = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("OpenSSL", "cryptography", "service_identity")})
print(json.dumps({"steps": steps, "tls_packages_imported": tls}))
"""


def import_steps(tls: str) -> dict[str, Any]:
    """``VmRSS`` after each of :data:`IMPORT_STEPS` in a fresh interpreter (``tls``: ``left-out`` or ``kept``)."""
    out = subprocess.run([sys.executable, "-c", _STEPS_SCRIPT, tls, *IMPORT_STEPS], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def memory_map(pid: int, top: int = 8) -> dict[str, Any]:
    """Where a process's resident memory is: anonymous vs file-backed, threads, the largest file mappings."""
    status: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                status[key] = int(value.split()[0]) / (1024.0 if key != "Threads" else 1.0)
    files: dict[str, int] = {}
    current = ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(maxsplit=6)
            if not first[0].endswith(":"):
                current = first[5].strip() if len(first) > 5 else "[anon]"
            elif first[0] == "Rss:" and current.startswith("/"):
                files[os.path.basename(current)] = files.get(os.path.basename(current), 0) + int(first[1])
    largest = sorted(files.items(), key=lambda kv: -kv[1])[:top]
    return {"rss_mib": round(status["VmRSS"], 1), "anon_mib": round(status["RssAnon"], 1),
            "file_mib": round(status["RssFile"], 1), "threads": int(status["Threads"]),
            "largest_file_mappings_mib": {name: round(kb / 1024.0, 1) for name, kb in largest}}


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


async def linked_pair(reactor: Any, tmp: Path, settle_s: float, idle_s: float,
                      tls_stack: str = "auto") -> dict[str, Any]:
    broker = PrivateBroker(tmp / "broker", reactor=reactor)
    await broker.start()
    parent = ProactorProcess("gwproactor.demo.apps:DemoParent",
                             env_for(broker, tmp / "parent-store", (PARENT, "p"), (CHILD, "c"), "CHILD", False),
                             tmp / "parent", reactor=reactor, extra_args=["--tls-stack", tls_stack])
    child = ProactorProcess("gwproactor.proactor:Proactor",
                            env_for(broker, tmp / "child-store", (CHILD, "c"), (PARENT, "p"), "PARENT", True),
                            tmp / "child", reactor=reactor, extra_args=["--tls-stack", tls_stack])
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
            "tls_stack": tls_stack,
            "tls_stack_left_out": {k: "TLS stack left out" in proc.log_tail(400)
                                   for k, proc in (("child", child), ("parent", parent))},
            "start_to_active_s": round(active_at[0], 3),
            "start_to_ready_file_s": round(ready_s, 3),
            "idle_rss_mib": {k: rss_mib(p) for k, p in pids.items()},
            "rss_mib_after_settle": rss_active,
            "idle_window_s": round(wall, 1),
            "idle_cpu_percent": {k: round(100 * c / wall, 3) for k, c in cpu.items()},
            "idle_cpu_ms_per_s": {k: round(1000 * c / wall, 3) for k, c in cpu.items()},
            "cpu_tick_s": 1 / CLK_TCK,
            "child_memory": memory_map(child.pid),
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
        "settings": {"runs": args.runs, "settle_s": args.settle_s, "idle_s": args.idle_s, "tls_stack": args.tls_stack,
                     "child": "gwproactor.proactor:Proactor via `python -m gwproactor.runner` (GC frozen after start)",
                     "parent": "gwproactor.demo.apps:DemoParent, same runner", "heartbeat_s": 10.0},
        "imports": import_times(args.runs),
    }
    if args.breakdown:
        result["import_steps"] = {tls: import_steps(tls) for tls in ("kept", "left-out")}
    try:
        result["linked_pair"] = await linked_pair(reactor, tmp, args.settle_s, args.idle_s, args.tls_stack)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per import/CLI figure")
    parser.add_argument("--settle-s", type=float, default=5.0, help="after active, before the idle window")
    parser.add_argument("--idle-s", type=float, default=60.0, help="the idle window")
    parser.add_argument("--tls-stack", choices=("auto", "always"), default="auto",
                        help="the processes' `gwproactor run --tls-stack` (always: as before it was left out)")
    parser.add_argument("--breakdown", action="store_true", help="add VmRSS after each import step")
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, parser.parse_args())))
