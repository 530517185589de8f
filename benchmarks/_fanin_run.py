"""One fan-in run: the parent (``_fanin_parent.py``) and K simulated children (``_fanin_children.py``), each in a
process of its own, through a broker the caller started.  Used by ``fanin.py`` and ``tests/test_live_fanin.py``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.utils import getProcessOutputAndValue

from gwproactor_test.process import ProactorProcess

HERE = Path(__file__).resolve().parent
PARENT_SCRIPT = HERE / "_fanin_parent.py"
CHILDREN_SCRIPT = HERE / "_fanin_children.py"
PREFIX = "d1.fan"


def read_status(path: Path) -> list[dict[str, Any]]:
    """The parent's status lines."""
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _nearest(lines: list[dict[str, Any]], t: float) -> dict[str, Any]:
    return min(lines, key=lambda line: abs(line["t"] - t))


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [float(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def process_cpu_s(pid: int | None) -> float | None:
    """utime + stime of ``pid`` in seconds."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def broker_drop_notices(broker: Any) -> int:
    """How many times the broker logged that it drops outgoing messages for a client (its queue for it was full)."""
    try:
        return Path(broker.log_path).read_text(errors="replace").count("Outgoing messages are being dropped")
    except (OSError, AttributeError):
        return 0


def peak_rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


async def run_one(reactor: Any, broker: Any, directory: Path, k: int, seconds: float, rate: float = 10.0,
                  profile: str = "", profile_after: float = 0.0, join_timeout_s: float = 60.0,
                  drain_s: float = 10.0, linger_s: float = 1.5,
                  record_file: str = "") -> dict[str, Any]:
    """Start the parent, run the children for ``seconds``, stop the parent; return both sides' figures."""
    directory.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-u", str(PARENT_SCRIPT), "--port", str(broker.port), "--k", str(k),
               "--prefix", PREFIX, "--directory", str(directory)]
    if record_file:
        command += ["--record-file", record_file]
    if profile:
        command += ["--profile", profile, "--profile-after", str(profile_after)]
    parent = ProactorProcess(f"fan-in parent K={k}", {}, directory, reactor=reactor, command=command,
                             start_timeout=60.0)
    await parent.start()
    peak = None
    broker_pid = getattr(getattr(broker, "_transport", None), "pid", None)
    busy0, total0 = machine_cpu()
    broker0 = process_cpu_s(broker_pid)
    wall0 = time.time()
    drops0 = broker_drop_notices(broker)
    try:
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            [str(CHILDREN_SCRIPT), "--port", str(broker.port), "--k", str(k), "--rate", str(rate),
             "--seconds", str(seconds), "--parent-long", PREFIX, "--parent-short", "f", "--prefix", PREFIX,
             "--join-timeout-s", str(join_timeout_s), "--drain-s", str(drain_s), "--linger-s", str(linger_s)],
            env=dict(os.environ), reactor=reactor)
        if code != 0:
            raise RuntimeError(f"_fanin_children.py failed ({code}): {err.decode(errors='replace')}\n"
                               f"parent log:\n{parent.log_tail()}")
        children = json.loads(out.decode().strip().splitlines()[-1])
        peak = peak_rss_mib(parent.pid) if parent.pid else None
        busy1, total1 = machine_cpu()
        broker1 = process_cpu_s(broker_pid)
        wall1 = time.time()
        drops1 = broker_drop_notices(broker)
    finally:
        await parent.terminate()
        await parent.close()
    status = read_status(directory / "status.jsonl")
    elapsed = wall1 - wall0  # the children's whole life: join, run, drain
    machine = {
        "machine_busy_percent_while_children_ran": round(100 * (busy1 - busy0) / max(1.0, total1 - total0), 1),
        "broker_cpu_percent_of_one_core": (round(100 * (broker1 - broker0) / elapsed, 1)
                                           if broker0 is not None and broker1 is not None and elapsed > 0 else None),
        "broker_drop_notices": drops1 - drops0,
        "children_cpu_percent_of_one_core": round(100 * children["generator_cpu_s_during_run"]
                                                  / max(1e-9, children["t_run_end"] - children["t_run"]), 1),
    }
    return {"children": children, "parent": summarize_parent(status, children, k, peak), "machine_load": machine,
            "parent_log_tail": parent.log_tail(10) if parent.exit_code not in (0, None) else ""}


def summarize_parent(status: list[dict[str, Any]], children: dict[str, Any], k: int,
                     peak: float | None) -> dict[str, Any]:
    """The parent's figures over the children's run (its first 20 % left out as warm-up)."""
    if not status:
        return {"error": "no status lines"}
    final = status[-1] if status[-1].get("final") else {}
    periodic = [line for line in status if not line.get("final")]
    t_run, t_end = children["t_run"], children["t_run_end"]
    warm = t_run + 0.2 * (t_end - t_run)
    window = [line for line in periodic if warm <= line["t"] <= t_end] or periodic
    a, b = window[0], window[-1]
    events = b["events"] - a["events"]
    cpu = b["cpu_s"] - a["cpu_s"]
    seconds = b["t"] - a["t"]
    all_active_t = final.get("all_active_t") or periodic[-1].get("all_active_t")
    at_end = _nearest(periodic, t_end)
    return {
        "rss_mib_after_run": at_end["rss_mib"],
        "peak_rss_mib": round(peak, 1) if peak is not None else None,
        "rss_per_link_kib": round(at_end["rss_mib"] * 1024 / k, 1),
        "measured_window_s": round(seconds, 2),
        "events_per_s": round(events / seconds, 1) if seconds > 0 else None,
        "cpu_ms_per_event": round(cpu * 1000 / events, 4) if events else None,
        "cpu_percent_of_one_core": round(100 * cpu / seconds, 1) if seconds > 0 else None,
        "all_links_active": all_active_t is not None,
        "all_active_after_children_start_s": round(all_active_t - children["t_start"], 3) if all_active_t else None,
        "parent_start_to_children_start_s": round(children["t_start"] - status[0]["t_process"], 3),
        "active_at_end": at_end["active"],
        "events_accepted": final.get("events", periodic[-1]["events"]),
        "final": {key: final.get(key) for key in ("links", "counters", "states", "broker_connection")},
    }
