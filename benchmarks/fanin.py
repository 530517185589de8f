"""Fan-in benchmark: one parent proactor with K downstream links on one broker connection, K simulated children.

The parent (``_fanin_parent.py``, a plain gwproactor ``Proactor`` subclass that counts what it accepts) runs in a
process of its own; the K children are simulated by one process (``_fanin_children.py``) that speaks the wire
format over one raw MQTT socket, each child sending 10 events/s and acking the parent's pings.  Both go through a
private Mosquitto.  For each K: the parent's RSS and RSS per link, its CPU per event, the ack round trip seen by the
children, the time for all links to become active, and the subscriptions on the broker.  Prints one JSON object.

    python benchmarks/fanin.py                      # K = 10, 100, 1000; 60 s of events each
    python benchmarks/fanin.py --quick              # K = 10, 100; 15 s each
    python benchmarks/fanin.py --k 1000 --seconds 20 --profile-k 1000   # with cProfile of the parent
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from gwproactor_test.broker import PrivateBroker

from _fanin_run import run_one  # benchmarks/ is on sys.path when a script runs from it
from _machine import machine_info, profile_top

TARGETS = {
    "links_active_on_one_connection": 1000,
    "aggregate_events_per_s": 10_000,
    "sustained_s": 60,
    "parent_rss_mib_max": 150,
    "ack_p99_ms_max": 20,
}


def judge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each target of the issue against the largest K measured; per-event cost against the smallest."""
    if not results:
        return {}
    big, small = results[-1], results[0]
    p, c = big["parent"], big["children"]
    verdict: dict[str, Any] = {
        "k": big["k"],
        "k_reaches_target": big["k"] >= TARGETS["links_active_on_one_connection"],
        "all_links_active": p.get("all_links_active"),
        "every_event_acked": c["events_unacked"] == 0,
        "aggregate_events_per_s": p.get("events_per_s"),
        "aggregate_ok": (p.get("events_per_s") or 0) >= 0.98 * TARGETS["aggregate_events_per_s"]
        and c["seconds"] >= TARGETS["sustained_s"],
        "parent_rss_ok": (p.get("peak_rss_mib") or 1e9) <= TARGETS["parent_rss_mib_max"],
        "ack_p99_ok": (c.get("ack_rtt_p99_ms") or 1e9) <= TARGETS["ack_p99_ms_max"],
    }
    if len(results) > 1 and small["parent"].get("cpu_ms_per_event") and p.get("cpu_ms_per_event"):
        verdict["cpu_per_event_ratio_largest_to_smallest_k"] = round(
            p["cpu_ms_per_event"] / small["parent"]["cpu_ms_per_event"], 2)
    return verdict


async def main(reactor: Any, args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gwp-fanin-"))
    # $SYS every second, so the children see the broker's subscription count.
    broker = PrivateBroker(tmp / "broker", reactor=reactor, extra_config="sys_interval 1")
    await broker.start()
    result: dict[str, Any] = {
        "benchmark": "fanin",
        "machine": machine_info(str(tmp), reactor),
        "settings": {
            "k": args.k, "seconds": args.seconds, "events_per_s_per_child": args.rate,
            "parent": "gwproactor Proactor, K downstream links on one broker connection, default LinkSettings "
                      "(heartbeat 10 s, QoS 0), store sync_policy group, gc.freeze after start",
            "children": "one process, one raw MQTT socket, pre-built JSON (benchmarks/_fanin_children.py)",
            "warm_up_excluded": "first 20 % of each run for the parent's CPU and rate",
        },
        "targets": TARGETS,
        "runs": [],
    }
    try:
        for k in args.k:
            profile = str(tmp / f"parent-{k}.prof") if k in args.profile_k else ""
            run = await run_one(reactor, broker, tmp / f"k{k}", k, args.seconds, rate=args.rate, profile=profile,
                                profile_after=0.0)
            entry = {"k": k, **run}
            if profile and Path(profile).exists():
                entry["parent_profile_file"] = profile
                entry["parent_profile_top"] = profile_top(profile, args.profile_lines)
            result["runs"].append(entry)
        rss = [(r["k"], r["parent"].get("rss_mib_after_run")) for r in result["runs"]]
        result["rss_per_added_link_kib"] = [
            {"from_k": k0, "to_k": k1, "kib": round((m1 - m0) * 1024 / (k1 - k0), 1)}
            for (k0, m0), (k1, m1) in zip(rss, rss[1:], strict=False) if m0 is not None and m1 is not None]
        result["verdict"] = judge(result["runs"])
    finally:
        await broker.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    parser.add_argument("--k", type=ints, default=[10, 100, 1000], help="comma-separated link counts")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of events per K")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second per child")
    parser.add_argument("--quick", action="store_true", help="K = 10, 100 and 15 s each")
    parser.add_argument("--profile-k", type=ints, default=[], help="run the parent under cProfile for these K")
    parser.add_argument("--profile-lines", type=int, default=30)
    parsed = parser.parse_args()
    if parsed.quick:
        parsed.k, parsed.seconds = [10, 100], 15.0
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, parsed)))
