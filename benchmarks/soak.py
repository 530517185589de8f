"""Soak benchmark: a linked pair under a fault every minute; RSS, descriptors, store and reactor lag sampled; exactly-once checked.

The child (``DemoChild``) and the parent (``DemoParent``) run in separate processes through
the runner (``_soak_apps.py`` adds a reactor-lag probe to their status lines).  The parent
talks to a private Mosquitto directly, the child through a ``FaultProxy``.  The child
generates ``--rate`` events/s.  Every ``--fault-every-s`` one fault, in turn: a cut of the
child's connection, a broker restart, a kill -9 of the child (restarted at once on the same
store directory), a half-open connection for ``--half-open-s``.  Every ``--sample-every-s``
both processes' RSS, open descriptors, the child's store (on disk and ``/stats``) and the
reactor lag are sampled.  At the end the child stops generating, the benchmark waits until
its store is empty, stops both and checks from the record files that every event the child
made durable reached the parent's application exactly once.  Prints one JSON object; exits 1
when an event is missing or was delivered twice.

    python benchmarks/soak.py --minutes 60 > soak.json
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from gwproactor.ops import ReactorLag
from gwproactor_test.broker import PrivateBroker, free_port
from gwproactor_test.process import ProactorProcess, ProcessStartError
from gwproactor_test.proxy import FaultProxy

from _machine import machine_info  # benchmarks/ is on sys.path when a script runs from it

CHILD, PARENT = "d1.soak.child", "d1.soak"
HERE = Path(__file__).resolve().parent
FAULTS = ("cut", "broker_restart", "kill9", "half_open")


def proc_status(pid: int | None) -> dict[str, Any]:
    """VmRSS (KiB) and open descriptors of ``pid`` (None when it is gone)."""
    if pid is None:
        return {"pid": None, "rss_kib": None, "fds": None}
    try:
        rss = None
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
        if rss is None:  # a zombie (killed, not yet reaped)
            return {"pid": pid, "rss_kib": None, "fds": None}
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return {"pid": pid, "rss_kib": None, "fds": None}
    return {"pid": pid, "rss_kib": rss, "fds": fds}


def dir_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:  # a segment deleted while we walk
            pass
    return total


def read_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


class StatusTail:
    """Reads the JSON lines appended to a status file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines: list[dict[str, Any]] = []  # every line read so far
        self._partial = b""

    def new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        out = []
        for raw in complete:
            if raw.strip():
                try:
                    out.append(json.loads(raw))
                except ValueError:  # a line cut by kill -9
                    pass
        self.lines.extend(out)
        return out


class Http:
    """GET /stats of a process, with a timeout, on non-persistent connections (no descriptors kept)."""

    def __init__(self, reactor: Any) -> None:
        from twisted.web.client import Agent, HTTPConnectionPool

        self.reactor = reactor
        self.agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))

    async def stats(self, port: int, timeout: float = 5.0) -> dict[str, Any] | None:
        from twisted.web.client import readBody

        try:
            d = self.agent.request(b"GET", f"http://127.0.0.1:{port}/stats".encode())
            d.addTimeout(timeout, self.reactor)
            response = await d
            body = await readBody(response).addTimeout(timeout, self.reactor)
            return json.loads(body)
        except Exception:  # the process is restarting, or the connection was refused
            return None


def _pause(reactor: Any, seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, max(0.0, seconds), lambda: None)


async def poll(reactor: Any, condition: Any, timeout: float, interval: float = 0.2) -> bool:
    """Await ``condition()`` (which may return a Deferred) until true or ``timeout`` seconds pass."""
    deadline = reactor.seconds() + timeout
    while True:
        value = condition()
        if inspect.iscoroutine(value) or isinstance(value, defer.Deferred):
            value = await value
        if value:
            return True
        if reactor.seconds() >= deadline:
            return False
        await _pause(reactor, interval)


def trend(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t, y) points, per hour."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mt) * (y - my) for t, y in points) / var * 3600


def pct(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return round((b - a) * 100.0 / a, 1)


class Soak:
    def __init__(self, reactor: Any, args: argparse.Namespace, tmp: Path) -> None:
        self.reactor = reactor
        self.args = args
        self.tmp = tmp
        self.broker = PrivateBroker(tmp / "broker", reactor=reactor)
        self.proxy: FaultProxy | None = None
        self.http = Http(reactor)
        self.child_port = free_port()
        self.parent_port = free_port()
        while self.parent_port == self.child_port:
            self.parent_port = free_port()
        self.child_store = tmp / "child-store"
        self.child_records = tmp / "child-durable"
        self.parent_records = tmp / "parent-accepted"
        self.child_status = StatusTail(tmp / "child-status")
        self.parent_status = StatusTail(tmp / "parent-status")
        self.samples: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.t0 = 0.0
        self.own_lag = ReactorLag(reactor, interval_s=0.1)
        self.busy_fault: str | None = None
        self._seen = {"child": 0, "parent": 0}
        self.start_failures: list[dict[str, Any]] = []

    def now(self) -> float:
        return round(self.reactor.seconds() - self.t0, 3)

    def _common_env(self) -> dict[str, str]:
        return {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH", "")])),
            "GWP_HTTP__ENABLED": "true",
            "GWP_DEMO__STATUS_INTERVAL_S": "1",
        }

    def parent_env(self) -> dict[str, str]:
        return {
            **self._common_env(),
            "GWP_LONG_NAME": PARENT,
            "GWP_SHORT_NAME": "p",
            "GWP_BROKERS__DEFAULT__ENDPOINT": self.broker.endpoint(),
            "GWP_LINKS__CHILD__PEER_LONG_NAME": CHILD,
            "GWP_LINKS__CHILD__PEER_SHORT_NAME": "c",
            "GWP_STORE__DIRECTORY": str(self.tmp / "parent-store"),
            "GWP_DEMO__RECORD_FILE": str(self.parent_records),
            "GWP_DEMO__STATUS_FILE": str(self.parent_status.path),
            "GWP_HTTP__PORT": str(self.parent_port),
        }

    def child_env(self) -> dict[str, str]:
        assert self.proxy is not None
        burst = self.args.burst
        return {
            **self._common_env(),
            "GWP_LONG_NAME": CHILD,
            "GWP_SHORT_NAME": "c",
            "GWP_BROKERS__DEFAULT__ENDPOINT": self.proxy.endpoint(),
            "GWP_LINKS__PARENT__PEER_LONG_NAME": PARENT,
            "GWP_LINKS__PARENT__PEER_SHORT_NAME": "p",
            "GWP_LINKS__PARENT__UPSTREAM": "true",
            "GWP_STORE__DIRECTORY": str(self.child_store),
            "GWP_DEMO__RATE_HZ": str(self.args.rate / burst),
            "GWP_DEMO__BURST": str(burst),
            "GWP_DEMO__RECORD_FILE": str(self.child_records),
            "GWP_DEMO__STATUS_FILE": str(self.child_status.path),
            "GWP_HTTP__PORT": str(self.child_port),
        }

    # ------------------------------------------------------------------ sampling

    def _lag_of(self, lines: list[dict[str, Any]]) -> dict[str, Any]:
        worst = max((ln.get("lag_interval_max_s") or 0.0 for ln in lines), default=None)
        p99 = lines[-1].get("lag_p99_s") if lines else None
        return {"lag_max_s": worst, "lag_p99_last_s": p99, "status_lines": len(lines)}

    async def sample(self) -> dict[str, Any]:
        child_stats, parent_stats = await defer.gatherResults([
            defer.Deferred.fromCoroutine(self.http.stats(self.child_port)),
            defer.Deferred.fromCoroutine(self.http.stats(self.parent_port)),
        ])
        self.child_status.new()
        self.parent_status.new()
        # The status lines since the previous sample (the drain poll reads the child's file too).
        child_lines = self.child_status.lines[self._seen["child"]:]
        parent_lines = self.parent_status.lines[self._seen["parent"]:]
        self._seen = {"child": len(self.child_status.lines), "parent": len(self.parent_status.lines)}
        child: dict[str, Any] = {**proc_status(self.child.pid), **self._lag_of(child_lines),
                                 "store_dir_bytes": dir_bytes(self.child_store)}
        if child_lines:
            last = child_lines[-1]
            child.update(generated=last.get("generated"), durable=last.get("durable"), status_pending=last.get("pending"))
        if child_stats is not None:
            store = child_stats["store"]
            link = child_stats["links"].get("parent", {})
            child.update(pending=store["pending"], pending_bytes=store["pending_bytes"], segments=store["segments"],
                         store_disk_bytes=store["disk_bytes"], parked=store["parked"], dropped=store["dropped"],
                         link_state=link.get("state"), in_flight=link.get("in_flight"),
                         outbox=child_stats.get("outbox"))
        parent: dict[str, Any] = {**proc_status(self.parent.pid), **self._lag_of(parent_lines)}
        if parent_lines:
            last = parent_lines[-1]
            parent.update(readings=last.get("readings"), duplicates_dropped=last.get("duplicates_dropped"))
        if parent_stats is not None:
            parent.update(link_state=parent_stats["links"].get("child", {}).get("state"),
                          received_store=parent_stats["store"])
        broker_pid = self.broker._transport.pid if self.broker.running and self.broker._transport else None
        me = proc_status(os.getpid())
        own = {"rss_kib": me["rss_kib"], "fds": me["fds"], "lag_max_s": round(self.own_lag.max_s, 6),
               "proxy_connections": self.proxy.connection_count if self.proxy else None}
        self.own_lag.reset()
        s = {"t": self.now(), "fault_in_progress": self.busy_fault, "child": child, "parent": parent,
             "broker": proc_status(broker_pid), "benchmark": own}
        self.samples.append(s)
        print(f"[{s['t']:8.1f}] child rss={child['rss_kib']} fds={child['fds']} pending={child.get('pending')} "
              f"lag={child['lag_max_s']} | parent rss={parent['rss_kib']} fds={parent['fds']} "
              f"lag={parent['lag_max_s']} readings={parent.get('readings')}", file=sys.stderr, flush=True)
        return s

    async def sampler(self, end: float) -> None:
        k = 0
        while True:
            due = self.t0 + k * self.args.sample_every_s
            if due > end:
                return
            await _pause(self.reactor, due - self.reactor.seconds())
            await self.sample()
            k += 1

    # ------------------------------------------------------------------ faults

    async def fault(self, kind: str) -> dict[str, Any]:
        record: dict[str, Any] = {"t": self.now(), "kind": kind}
        self.busy_fault = kind
        start = self.reactor.seconds()
        assert self.proxy is not None
        try:
            if kind == "cut":
                record["connections_cut"] = self.proxy.connection_count
                self.proxy.cut()
            elif kind == "half_open":
                self.proxy.half_open()
                await _pause(self.reactor, self.args.half_open_s)  # the fault's length: a timer, not a wait
                self.proxy.resume()
            elif kind == "broker_restart":
                await self.broker.restart()
            elif kind == "kill9":
                record["killed_pid"] = self.child.pid
                await self.child.kill()
                record["start_attempts"] = await self.start_child()
                record["new_pid"] = self.child.pid
            else:
                raise ValueError(kind)
        finally:
            self.busy_fault = None
        record["duration_s"] = round(self.reactor.seconds() - start, 3)
        # How long until the child's link is active again (polled; recorded, not required).
        recovered = await poll(self.reactor, self._child_active, 120, interval=0.1)
        record["active_again_after_s"] = round(self.reactor.seconds() - start, 3) if recovered else None
        self.faults.append(record)
        print(f"[{record['t']:8.1f}] fault {json.dumps(record)}", file=sys.stderr, flush=True)
        return record

    async def start_child(self, attempts: int = 5) -> int:
        """Start the child; a start that is not ready in time (a stalled machine) is killed and retried."""
        for attempt in range(1, attempts + 1):
            try:
                await self.child.start()
                return attempt
            except ProcessStartError as e:
                self.start_failures.append({"t": self.now(), "attempt": attempt, "error": str(e).splitlines()[0]})
                print(f"[{self.now():8.1f}] child start failed (attempt {attempt}): {str(e).splitlines()[0]}",
                      file=sys.stderr, flush=True)
                await self.child.kill()
        raise RuntimeError(f"the child did not start in {attempts} attempts")

    async def _child_active(self) -> bool:
        stats = await self.http.stats(self.child_port, timeout=2)
        return bool(stats and stats["links"].get("parent", {}).get("state") == "active")

    async def faulter(self, end: float) -> None:
        kinds = [k for k in self.args.faults.split(",") if k]
        k = 1
        while True:
            # Offset from the sampling instants so that no sample lands on the fault itself.
            due = self.t0 + k * self.args.fault_every_s + self.args.fault_offset_s
            if due >= end:
                return
            await _pause(self.reactor, due - self.reactor.seconds())
            await self.fault(kinds[(k - 1) % len(kinds)])
            k += 1

    # ------------------------------------------------------------------ run

    async def run(self) -> dict[str, Any]:
        args = self.args
        await self.broker.start()
        self.proxy = FaultProxy(self.broker.host, self.broker.port, reactor=self.reactor)
        await self.proxy.start()
        self.parent = ProactorProcess("_soak_apps:SoakParent", self.parent_env(), self.tmp / "parent-proc",
                                      reactor=self.reactor, start_timeout=60.0)
        self.child = ProactorProcess("_soak_apps:SoakChild", self.child_env(), self.tmp / "child-proc",
                                     reactor=self.reactor, start_timeout=60.0)
        result: dict[str, Any] = {
            "benchmark": "soak",
            "settings": {**vars(args), "child_app": "_soak_apps:SoakChild (DemoChild + lag probe)",
                         "parent_app": "_soak_apps:SoakParent (DemoParent + lag probe)",
                         "child_broker": "through FaultProxy", "parent_broker": "direct",
                         "lag_probe": "gwproactor.ops.ReactorLag, 100 ms timer, max per 1 s status line"},
            "machine": machine_info(str(self.tmp), self.reactor),
            "directory": str(self.tmp),
        }
        try:
            await self.parent.start()
            await self.child.start()
            if not await poll(self.reactor, self._child_active, 60):
                raise RuntimeError(f"the child's link never became active:\n{self.child.log_tail()}")
            self.own_lag.start()
            self.t0 = self.reactor.seconds()
            end = self.t0 + args.minutes * 60
            try:
                await defer.gatherResults([defer.Deferred.fromCoroutine(self.sampler(end)),
                                           defer.Deferred.fromCoroutine(self.faulter(end))], consumeErrors=True)
            except Exception as e:  # keep what was measured; still drain and check delivery
                failure = e.subFailure if isinstance(e, defer.FirstError) else None
                result["error"] = {"t": self.now(), "error": repr(failure.value if failure else e)}
                print(f"[{self.now():8.1f}] soak phase aborted: {result['error']}", file=sys.stderr, flush=True)
                self.proxy.resume()
                if not self.broker.running:
                    await self.broker.start()
                if not self.child.running:
                    await self.start_child()
            result["generation_stopped_t"] = self.now()
            os.kill(self.child.pid, signal.SIGUSR1)

            async def drained() -> bool:
                self.child_status.new()
                last = self.child_status.lines[-1] if self.child_status.lines else {}
                if last.get("pid") != self.child.pid or last.get("generating", True):
                    return False
                stats = await self.http.stats(self.child_port, timeout=2)
                return bool(stats and stats["store"]["pending"] == 0)

            ok = await poll(self.reactor, drained, args.drain_timeout_s, interval=0.5)
            result["drained"] = ok
            result["drained_after_s"] = round(self.now() - result["generation_stopped_t"], 3)
            await self.sample()  # the final state, store empty
            result["child_exit_code"] = await self.child.terminate()
            result["parent_exit_code"] = await self.parent.terminate()
        finally:
            await self.child.close()
            await self.parent.close()
            self.own_lag.stop()
            await self.proxy.stop()
            await self.broker.stop()
        self.child_status.new()
        self.parent_status.new()
        result["faults"] = self.faults
        result["child_start_failures"] = self.start_failures
        result["samples"] = self.samples
        result["delivery"] = self.delivery()
        result["summary"] = self.summary(result["delivery"])
        return result

    def delivery(self) -> dict[str, Any]:
        durable = read_ids(self.child_records)
        accepted = read_ids(self.parent_records)
        durable_counts = Counter(durable)
        accepted_counts = Counter(accepted)
        missing = [i for i in durable_counts if i not in accepted_counts]
        twice = {i: n for i, n in accepted_counts.items() if n > 1}
        # Generated: per child process, the last status line's count (a killed process's last
        # second is not counted; its events are still in the records if they became durable).
        per_pid: dict[Any, int] = {}
        for line in self.child_status.lines:
            per_pid[line.get("pid")] = max(per_pid.get(line.get("pid"), 0), line.get("generated") or 0)
        parent_final = next((ln for ln in reversed(self.parent_status.lines) if ln.get("final")), None)
        parent_last = self.parent_status.lines[-1] if self.parent_status.lines else {}
        return {
            "generated_at_least": sum(per_pid.values()),
            "child_processes": len(per_pid),
            "durable": len(durable),
            "durable_recorded_twice": sum(1 for n in durable_counts.values() if n > 1),
            "delivered": len(accepted_counts),
            "accepted_records": len(accepted),
            "delivered_twice_to_application": len(twice),
            "delivered_twice_examples": list(twice)[:10],
            "missing": len(missing),
            "missing_examples": missing[:10],
            "delivered_not_recorded_durable": len(set(accepted_counts) - set(durable_counts)),
            "duplicates_dropped_by_parent": (parent_final or parent_last).get("duplicates_dropped"),
            "parent_final_status_line": parent_final is not None,
        }

    def summary(self, delivery: dict[str, Any]) -> dict[str, Any]:
        args = self.args
        running = [s for s in self.samples if s["t"] <= args.minutes * 60]
        after = [s for s in running if s["t"] >= args.warmup_s]
        out: dict[str, Any] = {}
        for role in ("parent", "child", "benchmark"):
            pts = [s for s in after if s[role].get("rss_kib") is not None]
            if not pts:
                continue
            first, last = pts[0], pts[-1]
            out[role] = {
                "start_t": first["t"], "end_t": last["t"],
                "rss_mib_start": round(first[role]["rss_kib"] / 1024, 1),
                "rss_mib_end": round(last[role]["rss_kib"] / 1024, 1),
                "rss_change_pct": pct(first[role]["rss_kib"], last[role]["rss_kib"]),
                "rss_mib_min": round(min(s[role]["rss_kib"] for s in pts) / 1024, 1),
                "rss_mib_max": round(max(s[role]["rss_kib"] for s in pts) / 1024, 1),
                "rss_trend_mib_per_hour": round(trend([(s["t"], s[role]["rss_kib"] / 1024) for s in pts]) or 0, 2),
                "fds_start": first[role]["fds"], "fds_end": last[role]["fds"],
                "fds_change_pct": pct(first[role]["fds"], last[role]["fds"]),
                "fds_min": min(s[role]["fds"] for s in pts), "fds_max": max(s[role]["fds"] for s in pts),
                "lag_worst_s": max((s[role].get("lag_max_s") or 0 for s in running), default=None),
                "lag_worst_after_warmup_s": max((s[role].get("lag_max_s") or 0 for s in after), default=None),
            }
        # The child is killed every few minutes: its figures per process lifetime too.
        lives: dict[int, list[dict[str, Any]]] = {}
        for s in running:
            if s["child"].get("pid") and s["child"].get("rss_kib") is not None:
                lives.setdefault(s["child"]["pid"], []).append(s)
        out["child_lifetimes"] = [
            {"pid": pid, "first_t": ss[0]["t"], "last_t": ss[-1]["t"],
             "rss_mib_first": round(ss[0]["child"]["rss_kib"] / 1024, 1),
             "rss_mib_last": round(ss[-1]["child"]["rss_kib"] / 1024, 1),
             "fds_first": ss[0]["child"]["fds"], "fds_last": ss[-1]["child"]["fds"]}
            for pid, ss in lives.items()
        ]
        lag_lines = {role: tail.lines for role, tail in (("child", self.child_status), ("parent", self.parent_status))}
        for role, lines in lag_lines.items():
            vals = sorted(ln.get("lag_interval_max_s") or 0.0 for ln in lines)
            if vals and role in out:
                out[role]["lag_seconds_over_50ms"] = sum(1 for v in vals if v > 0.05)
                out[role]["lag_seconds_observed"] = len(vals)
                out[role]["lag_per_second_max_p50_s"] = vals[len(vals) // 2]
                out[role]["lag_per_second_max_p99_s"] = vals[min(len(vals) - 1, int(len(vals) * 0.99))]
        store = [s["child"].get("store_dir_bytes") for s in after if s["child"].get("store_dir_bytes") is not None]
        out["child_store_dir_bytes_max_after_warmup"] = max(store, default=None)
        out["child_store_dir_bytes_end"] = self.samples[-1]["child"].get("store_dir_bytes") if self.samples else None
        out["faults"] = dict(Counter(f["kind"] for f in self.faults))
        out["delivery"] = {k: delivery[k] for k in ("generated_at_least", "durable", "delivered",
                                                    "duplicates_dropped_by_parent", "missing",
                                                    "delivered_twice_to_application")}
        out["exactly_once"] = delivery["missing"] == 0 and delivery["delivered_twice_to_application"] == 0
        return out


async def main(reactor: Any, args: argparse.Namespace) -> int:
    if args.directory:  # continue an earlier run's stores and record files
        tmp = Path(args.directory).absolute()
        for sub in ("broker", "child-proc", "parent-proc"):
            for f in (tmp / sub).glob("*"):
                if f.is_file() and f.name in ("ready", "mosquitto.conf"):
                    f.unlink()
    else:
        tmp = Path(tempfile.mkdtemp(prefix="gwp-soak-"))
    soak = Soak(reactor, args, tmp)
    result = await soak.run()
    print(json.dumps(result, indent=1))
    ok = result["summary"]["exactly_once"] and result.get("drained") and "error" not in result
    return 0 if ok else 1


def _react(reactor: Any, args: argparse.Namespace) -> defer.Deferred:
    async def go() -> None:
        code = await main(reactor, args)
        if code:
            raise SystemExit(code)

    return defer.Deferred.fromCoroutine(go())


if __name__ == "__main__":
    # twisted.web's readBody on a plain TCP transport (the HTTP/1.1 client's)
    warnings.filterwarnings("ignore", "Using readBody with a transport", DeprecationWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second the child generates")
    parser.add_argument("--burst", type=int, default=5, help="events per generator tick (ticks at rate / burst Hz)")
    parser.add_argument("--fault-every-s", type=float, default=60.0)
    parser.add_argument("--fault-offset-s", type=float, default=5.0, help="faults at k * fault_every_s + this")
    parser.add_argument("--faults", default=",".join(FAULTS), help="fault kinds, in turn")
    parser.add_argument("--half-open-s", type=float, default=20.0)
    parser.add_argument("--sample-every-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=120.0)
    parser.add_argument("--drain-timeout-s", type=float, default=300.0)
    parser.add_argument("--directory", default=None,
                        help="continue in an earlier run's directory (its stores and record files); with "
                             "--minutes 0: restart the pair, drain and check delivery over the whole record")
    parsed = parser.parse_args()
    task.react(_react, [parsed])
