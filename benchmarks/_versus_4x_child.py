"""The gridworks-proactor 4.x child of ``versus_4x.py``: runs one scenario and writes its figures as JSON lines.

This file runs under the 4.x virtualenv's interpreter (whose ``gwproactor`` package is gridworks-proactor 4.x); it
is never imported by gwproactor.  It reuses the interop peer's application classes
(``gwproactor_test/_peer4x/peer.py``, imported from its path, not changed) with a prime actor of its own::

    python _versus_4x_child.py --peer-script PATH --ready-file PATH --result-file PATH live --n 10000
    python _versus_4x_child.py ... rtt --count 500 --gap-ms 10
    python _versus_4x_child.py ... backlog --n 10000

Settings come from the same ``GW4X_*`` variables as the interop peer's child (link ``parent``).  Scenarios:

* ``live``: once the link is active and nothing is pending, ``generate_event`` N readings, one per event-loop turn;
  done when every one has been acked (no event in flight, nothing in the persister).
* ``rtt``: one reading at a time, timed from ``generate_event`` to its ack (``LinkManager.process_ack``); then the
  gap, counted from the ack.
* ``backlog``: the parent is absent at first: N readings are generated (4.x persists them, its link not being
  active) and the line ``{"k": "filled"}`` is written; the caller then starts the parent; done when all are acked.

Each result is one JSON line (``"k": "result"``) in the result file; ``"k": "filled"`` as above.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import sys
import time
import typing
from pathlib import Path
from typing import Any, Sequence

ARGS: Any = None
LINKS: Any = None  # the proactor's LinkManager, set in main()
ACKED: dict[str, float] = {}
WAITERS: dict[str, asyncio.Future[float]] = {}
COUNTS = {"ack_timeouts": 0, "acks": 0}
DRAINED: list[asyncio.Future[float]] = []


def _load_peer(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("peer4x", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["peer4x"] = module
    spec.loader.exec_module(module)
    return module


def _write(kind: str, **fields: Any) -> None:
    with open(ARGS.result_file, "a") as f:
        f.write(json.dumps({"k": kind, "t": time.time(), **fields}) + "\n")


def _pending() -> int:
    return len(LINKS._in_flight_events) + LINKS._event_persister.num_pending  # noqa: SLF001


def _active() -> bool:
    return bool(LINKS.link("parent") is not None and LINKS.link("parent").active())


def _hook_links(links: Any) -> None:
    process_ack = links.process_ack
    process_ack_timeout = links.process_ack_timeout

    def on_ack(link_name: str, message_id: str) -> int:
        result = process_ack(link_name, message_id)
        now = time.perf_counter()
        COUNTS["acks"] += 1
        waiter = WAITERS.pop(message_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(now)
        if DRAINED and _pending() == 0:
            done = DRAINED.pop()
            if not done.done():
                done.set_result(now)
        return result

    def on_timeout(wait_info: Any) -> Any:
        COUNTS["ack_timeouts"] += 1
        return process_ack_timeout(wait_info)

    links.process_ack = on_ack
    links.process_ack_timeout = on_timeout


async def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s (pending {_pending()}, active {_active()})")
        await asyncio.sleep(0.005)


async def _drained(timeout: float) -> float:
    if _pending() == 0:
        return time.perf_counter()
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    DRAINED.append(done)
    return await asyncio.wait_for(done, timeout)


async def scenario_live(peer: Any) -> dict[str, Any]:
    await _until(_active, 60, "link active")
    await _until(lambda: _pending() == 0, 60, "nothing pending")
    timeouts0 = COUNTS["ack_timeouts"]
    t0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(ARGS.n):
        peer.RecordingActor._seq += 1  # noqa: SLF001
        LINKS_SERVICES.generate_event(peer.InteropReading(Seq=peer.RecordingActor._seq))  # noqa: SLF001
        await asyncio.sleep(0)
    t1 = await _drained(600)
    cpu = time.process_time() - cpu0
    return {"n": ARGS.n, "mode": "1 per event-loop turn", "seconds": round(t1 - t0, 3),
            "acked_events_per_s": round(ARGS.n / (t1 - t0)), "child_cpu_ms_per_event": round(cpu * 1000 / ARGS.n, 3),
            "ack_timeouts": COUNTS["ack_timeouts"] - timeouts0}


async def scenario_rtt(peer: Any) -> dict[str, Any]:
    await _until(_active, 60, "link active")
    await _until(lambda: _pending() == 0, 60, "nothing pending")
    loop = asyncio.get_running_loop()
    gap = ARGS.gap_ms / 1000.0
    samples: list[float] = []
    for _ in range(ARGS.count):
        peer.RecordingActor._seq += 1  # noqa: SLF001
        event = peer.InteropReading(Seq=peer.RecordingActor._seq)  # noqa: SLF001
        waiter: asyncio.Future[float] = loop.create_future()
        WAITERS[event.MessageId] = waiter
        t0 = time.perf_counter()
        LINKS_SERVICES.generate_event(event)
        t1 = await asyncio.wait_for(waiter, 10)
        samples.append((t1 - t0) * 1000)
        await asyncio.sleep(max(0.0, gap - (time.perf_counter() - t1)))
    samples.sort()
    return {"count": ARGS.count, "gap_ms": ARGS.gap_ms, "p50_ms": round(statistics.median(samples), 3),
            "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3), "max_ms": round(samples[-1], 3),
            "ack_timeouts": COUNTS["ack_timeouts"]}


async def scenario_backlog(peer: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    for _ in range(ARGS.n):
        peer.RecordingActor._seq += 1  # noqa: SLF001
        LINKS_SERVICES.generate_event(peer.InteropReading(Seq=peer.RecordingActor._seq))  # noqa: SLF001
    fill_s = time.perf_counter() - t0
    pending = _pending()
    _write("filled", pending=pending, fill_seconds=round(fill_s, 3))
    await _until(_active, 120, "link active")
    t_active, cpu0 = time.perf_counter(), time.process_time()
    t_done = await _drained(600)
    cpu = time.process_time() - cpu0
    return {"n": ARGS.n, "pending_before_parent": pending, "fill_seconds": round(fill_s, 3),
            "drain_seconds_after_active": round(t_done - t_active, 3),
            "drain_events_per_s_after_active": round(ARGS.n / (t_done - t_active)),
            "child_cpu_ms_per_event": round(cpu * 1000 / ARGS.n, 3), "ack_timeouts": COUNTS["ack_timeouts"]}


LINKS_SERVICES: Any = None


def main() -> int:
    global ARGS, LINKS, LINKS_SERVICES  # noqa: PLW0603
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-script", required=True)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--result-file", required=True)
    parser.add_argument("scenario", choices=("live", "rtt", "backlog"))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--gap-ms", type=float, default=10.0)
    ARGS = parser.parse_args()
    peer = _load_peer(ARGS.peer_script)

    from gwproactor import setup_logging

    scenarios = {"live": scenario_live, "rtt": scenario_rtt, "backlog": scenario_backlog}

    class BenchActor(peer.RecordingActor):
        def start_tasks(self) -> Sequence[asyncio.Task[Any]]:
            async def run() -> None:
                try:
                    result = await scenarios[ARGS.scenario](peer)
                    _write("result", scenario=ARGS.scenario, **result)
                except Exception as e:  # noqa: BLE001 - reported to the caller
                    _write("error", scenario=ARGS.scenario, error=f"{type(e).__name__}: {e}")

            tasks = [asyncio.create_task(run(), name="versus_scenario")]
            Path(ARGS.ready_file).write_text(str(os.getpid()))
            return tasks

    class BenchChildApp(peer.InteropChildApp):
        @classmethod
        def prime_actor_type(cls) -> Any:
            return BenchActor

    settings = BenchChildApp.app_settings_type()(_env_file=None)  # type: ignore[call-arg]
    app = BenchChildApp(app_settings=settings)
    app.settings.paths.mkdirs()
    setup_logging(app.settings)
    app.instantiate()
    LINKS = typing.cast(Any, app.proactor)._links  # noqa: SLF001
    LINKS_SERVICES = app.proactor
    _hook_links(LINKS)
    app.install_signal_handlers()
    try:
        asyncio.run(app.proactor.run_forever())
    finally:
        app.proactor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
