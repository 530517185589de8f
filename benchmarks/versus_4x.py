"""gwproactor against gridworks-proactor 4.1.13 in one run: live, backlog drain and idle round trip, both sides.

Each scenario runs for gwproactor and then for 4.x (alternating, scenario by scenario, ``--rounds`` times) through
the same private Mosquitto.  gwproactor: the child proactor in this process, its parent
(``gwproactor.demo.apps:DemoParent``) in another, as in ``delivery.py`` (whose scenarios are reused).  4.x: its child
(``_versus_4x_child.py``) and its parent (the interop tests' 4.x peer) each in a process of its own, in the
virtualenv that ``gwproactor_test.interop4x.ensure_v4x_env`` builds and caches (installed from the package index on
first use).  Prints one JSON object: settings, machine, both sides' figures and the ratios.

    python benchmarks/versus_4x.py            # live N=10,000; backlog N=10,000; round trips 500 at 10 ms, 100 ms, 1 s
    python benchmarks/versus_4x.py --quick    # live N=2,000; backlog N=2,000; round trips 100 at 10, 100 ms, 30 at 1 s
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task, threads

import delivery  # benchmarks/ is on sys.path when a script runs from it
from _machine import machine_info
from gwproactor_test.broker import PrivateBroker
from gwproactor_test.interop4x import V4X_VERSION, V4xInstallError, V4xPeer, V4xUnavailable, ensure_v4x_env
from gwproactor_test.process import ProactorProcess
from gwproactor_test.wait import await_for

HERE = Path(__file__).resolve().parent
CHILD_4X = HERE / "_versus_4x_child.py"
CHILD_NAMES = ("d1.isone.ct.newhaven.orange1.scada", "s")
PARENT_NAMES = ("d1.isone.ct.newhaven.orange1", "a")

NOTES = {
    "durability": "gwproactor writes every event to its store before sending it and removes it on the ack (group "
                  "commit, 10 ms). gridworks-proactor 4.x, while its link is active and fewer than its in-flight "
                  "limit are unacked, keeps an event only in memory until acked (it persists to disk only when the "
                  "link is down or the in-flight limit is reached), so the two do not do the same work per event.",
    "framing": "gwproactor sends batches to a gwproactor parent (announced by gwproactor.hello); 4.x sends one MQTT "
               "message per event. Both use MQTT QoS 0 and one application ack per frame.",
    "backlog": "Both children generate N events while their parent is absent; the parent is then started and the "
               "time is taken from the child's link becoming active to the last ack (child start-up not included).",
    "idle_round_trip": "From generate_event to the ack that completes that event, one at a time, the gap counted "
                       "from the ack. gwproactor: a Deferred fired from link_acked once the store is empty; 4.x: "
                       "a future set from LinkManager.process_ack. The floor is two raw-socket processes through "
                       "the same broker (_floor.py), measured in the same run as gwproactor's figure.",
    "live": "N events, one per reactor / event-loop turn, as fast as each side accepts them; acked events/s from "
            "the first generate_event to the last ack.",
    "parent_4x": "The 4.x parent is the interop tests' peer (gwproactor_test/_peer4x/peer.py), which appends one "
                 "JSON line per received event to a record file (a few microseconds per event).",
}


# --- gwproactor ----------------------------------------------------------------------------------------------


async def gwp_backlog(reactor: Any, broker: PrivateBroker, tmp: Path, n: int) -> dict[str, Any]:
    """N events generated (and durable) while the parent is absent; time from link active to the last ack."""
    child = delivery.make_child(broker, tmp / "gwp-bl-child", reactor, sync=delivery.SYNC)
    child.startService()
    parent = ProactorProcess("gwproactor.demo.apps:DemoParent", delivery.parent_env(broker, tmp / "gwp-bl-parent"),
                             tmp / "gwp-bl-pp", reactor=reactor)
    try:
        t0 = time.perf_counter()
        durable = [child.generate_event(delivery.Reading(src=child.name, seq=i, value=1.0)) for i in range(n)]
        await defer.gatherResults(durable)
        fill_s = time.perf_counter() - t0
        pending = child.store.stats()["pending"]
        await parent.start()
        await await_for(lambda: child.upstream.is_active, 60, interval=0.001)
        t_active, cpu0 = time.perf_counter(), time.process_time()
        await await_for(lambda: child.store.stats()["pending"] == 0, 600, interval=0.001)
        t_done = time.perf_counter()
        cpu = time.process_time() - cpu0
        return {"n": n, "pending_before_parent": pending, "fill_seconds": round(fill_s, 3),
                "drain_seconds_after_active": round(t_done - t_active, 3),
                "drain_events_per_s_after_active": round(n / (t_done - t_active)),
                "child_cpu_ms_per_event": round(cpu * 1000 / n, 3),
                "ack_timeouts": child.upstream.acks.timeouts}
    finally:
        await child.stopService()
        await parent.terminate()
        await parent.close()


# --- gridworks-proactor 4.x -------------------------------------------------------------------------------------


class Side4x:
    """Starts a 4.x parent (the interop peer) and a 4.x child (``_versus_4x_child.py``) for one scenario."""

    def __init__(self, env: Any, broker: PrivateBroker, reactor: Any, tmp: Path) -> None:
        self.env, self.broker, self.reactor, self.tmp = env, broker, reactor, tmp
        self.runs = 0

    def parent(self, directory: Path) -> V4xPeer:
        return V4xPeer(self.env, "parent", *PARENT_NAMES, *CHILD_NAMES, self.broker, directory, reactor=self.reactor)

    def child(self, directory: Path, scenario: list[str]) -> tuple[ProactorProcess, Path]:
        # A V4xPeer only for its settings (the child role's GW4X_* variables and XDG directories).
        settings = V4xPeer(self.env, "child", *CHILD_NAMES, *PARENT_NAMES, self.broker, directory,
                           reactor=self.reactor).settings_env()
        results = directory / "results.jsonl"
        command = [str(self.env.python), "-I", "-u", str(CHILD_4X), "--peer-script", str(self.env.peer_script),
                   "--ready-file", str(directory / "ready"), "--result-file", str(results), *scenario]
        return ProactorProcess(f"gridworks-proactor {V4X_VERSION} child", settings, directory, reactor=self.reactor,
                               command=command, start_timeout=60.0), results

    @staticmethod
    def lines(path: Path, kind: str) -> list[dict[str, Any]]:
        try:
            return [line for line in map(json.loads, path.read_text().splitlines()) if line["k"] in (kind, "error")]
        except FileNotFoundError:
            return []

    async def run(self, scenario: list[str], timeout: float, parent_first: bool = True) -> dict[str, Any]:
        self.runs += 1
        base = self.tmp / f"v4x-{self.runs}-{scenario[0]}"
        parent = self.parent(base / "parent")
        child, results = self.child(base / "child", scenario)
        try:
            if parent_first:
                await parent.start()
                await child.start()
            else:
                await child.start()
                await await_for(lambda: bool(self.lines(results, "filled")), timeout, child.log_tail)
                await parent.start()
            await await_for(lambda: bool(self.lines(results, "result")), timeout,
                            lambda: f"{child.log_tail()}\n{parent.describe()}", interval=0.02)
            line = self.lines(results, "result")[0]
            if line["k"] == "error":
                raise RuntimeError(f"4.x child failed: {line['error']}\n{child.log_tail()}")
            peak = delivery.peak_rss_mib(child.pid) if child.pid else None
            return {key: value for key, value in line.items() if key not in ("k", "t", "scenario")} | {
                "child_peak_rss_mib": round(peak, 1) if peak else None}
        finally:
            await child.terminate()
            await child.close()
            await parent.close()


# --- the run -------------------------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


async def main(reactor: Any, args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gwp-versus-"))
    try:
        env = await threads.deferToThread(ensure_v4x_env)
    except (V4xUnavailable, V4xInstallError) as e:
        print(json.dumps({"benchmark": "versus_4x", "machine": machine_info(str(tmp), reactor),
                          "error": f"gridworks-proactor {V4X_VERSION} could not be installed: {e}"}, indent=2))
        return
    broker = PrivateBroker(tmp / "broker", reactor=reactor)
    await broker.start()
    side4x = Side4x(env, broker, reactor, tmp)
    result: dict[str, Any] = {
        "benchmark": "versus_4x",
        "machine": machine_info(str(tmp), reactor),
        "settings": {
            "gridworks_proactor": V4X_VERSION, "v4x_virtualenv": str(env.directory),
            "live_n": args.n, "backlog_n": args.backlog_n, "rtt_count": args.rtt_count,
            "rtt_count_1s": args.rtt_count_1s, "rtt_gaps_ms": args.gaps, "rounds": args.rounds,
            "gwproactor": {"window": 50, "batch_max": 100, "sync_policy": delivery.SYNC, "qos": 0,
                           "gc_freeze_after_start": "in the round-trip scenario, as delivery.py"},
            "gridworks_proactor_4x": "defaults of 4.1.13 (ack timeout 5 s, in-flight limit of its settings), "
                                     "TimedRollingFilePersister, QoS 0",
            "event": "gwproactor: gridworks.event.demo.reading; 4.x: gridworks.event.interop.reading (both ~190 B)",
        },
        "notes": NOTES,
        "rounds": [],
    }
    try:
        for _ in range(args.rounds):
            rnd: dict[str, Any] = {}
            if "live" in args.only:
                rnd["live"] = {
                    "gwproactor": await delivery.scenario_live(reactor, broker, tmp, args.n, 1),
                    "gridworks_proactor_4x": await side4x.run(["live", "--n", str(args.n)], 600),
                }
            if "backlog" in args.only:
                rnd["backlog"] = {
                    "gwproactor": await gwp_backlog(reactor, broker, tmp, args.backlog_n),
                    "gridworks_proactor_4x": await side4x.run(["backlog", "--n", str(args.backlog_n)], 600,
                                                              parent_first=False),
                }
            if "rtt" in args.only:
                for gap in args.gaps:
                    count = args.rtt_count_1s if gap >= 1000 else args.rtt_count
                    gwp = await delivery.scenario_idle_rtt(reactor, broker, tmp, count, gap / 1000)
                    rnd[f"idle_round_trip_{gap:g}ms"] = {
                        "gwproactor": {k: v for k, v in gwp.items() if k != "floor"},
                        "gridworks_proactor_4x": await side4x.run(
                            ["rtt", "--count", str(count), "--gap-ms", str(gap)], 60 + count * (gap / 1000 + 0.1)),
                        "floor": gwp["floor"],
                    }
            result["rounds"].append(rnd)
        result["ratios"] = ratios(result["rounds"])
    finally:
        await broker.stop()
    print(json.dumps(result, indent=2))


def ratios(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """gwproactor's advantage per scenario (>1: gwproactor better), median over the rounds."""
    out: dict[str, Any] = {}

    def med(values: list[float | None]) -> float | None:
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 2) if values else None

    for name in rounds[0] if rounds else []:
        pairs = [r[name] for r in rounds]
        g = [p["gwproactor"] for p in pairs]
        x = [p["gridworks_proactor_4x"] for p in pairs]
        if name == "live":
            out[name] = {"acked_events_per_s": med([_ratio(a["acked_events_per_s"], b["acked_events_per_s"])
                                                    for a, b in zip(g, x, strict=True)]),
                         "child_cpu_per_event_4x_over_gwp": med([_ratio(b["child_cpu_ms_per_event"],
                                                                        a["child_cpu_ms_per_event"])
                                                                 for a, b in zip(g, x, strict=True)])}
        elif name == "backlog":
            out[name] = {"drain_events_per_s_after_active": med([
                _ratio(a["drain_events_per_s_after_active"], b["drain_events_per_s_after_active"])
                for a, b in zip(g, x, strict=True)])}
        else:
            out[name] = {"p50_4x_over_gwp": med([_ratio(b["p50_ms"], a["p50_ms"]) for a, b in zip(g, x, strict=True)]),
                         "p99_4x_over_gwp": med([_ratio(b["p99_ms"], a["p99_ms"]) for a, b in zip(g, x, strict=True)]),
                         "gwp_p50_over_floor": med([_ratio(a["p50_ms"], p["floor"]["p50_ms"])
                                                    for a, p in zip(g, pairs, strict=True)]),
                         "gwp_p99_over_floor": med([_ratio(a["p99_ms"], p["floor"]["p99_ms"])
                                                    for a, p in zip(g, pairs, strict=True)])}
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="live: events")
    parser.add_argument("--backlog-n", type=int, default=10_000)
    parser.add_argument("--rtt-count", type=int, default=500, help="round trips per gap below 1 s")
    parser.add_argument("--rtt-count-1s", type=int, default=100, help="round trips at gaps of 1 s or more")
    parser.add_argument("--gaps", type=lambda s: [float(x) for x in s.split(",")], default=[10.0, 100.0, 1000.0],
                        help="idle gaps in ms, comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="how many times to alternate the whole set")
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default={"live", "backlog", "rtt"},
                        help="live,backlog,rtt")
    parser.add_argument("--quick", action="store_true")
    parsed = parser.parse_args()
    if parsed.quick:
        parsed.n, parsed.backlog_n, parsed.rtt_count, parsed.rtt_count_1s = 2000, 2000, 100, 30
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, parsed)))
    sys.exit(0)
