"""Live-first over a constrained link: a backlog drains at 64 kbit/s with 300 ms latency while an alarm overtakes it.

The child reaches a private Mosquitto through the test package's fault proxy, shaped each way
(``--bandwidth`` bytes/s, ``--latency`` s); the parent connects directly.  ``--events`` readings are
stored first; once the parent has 10 % of them, the child generates an alarm (``PRIORITY = "alarm"``).
Reported: how long the alarm took to reach the parent's application, after how many readings, the
drain time and the bytes on the shaped link per event (both directions, acks included), with
compression on and (``--also-uncompressed N``) off for a smaller backlog.

    .venv/bin/python benchmarks/constrained.py --events 100000 --also-uncompressed 10000

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


async def main(reactor, args) -> None:  # noqa: ANN001
    from _machine import machine_info

    from gwproactor_test.broker import PrivateBroker
    from gwproactor_test.constrained import run_alarm_through_backlog
    from gwproactor_test.proxy import FaultProxy

    tmp = Path(tempfile.mkdtemp(prefix="gwp-constrained-"))
    broker = PrivateBroker(tmp / "broker", reactor=reactor)
    await broker.start()
    proxies = []

    def make_proxy(host: str, port: int) -> FaultProxy:
        proxy = FaultProxy(host, port, reactor=reactor)
        proxy.start()
        proxies.append(proxy)
        return proxy

    runs = []
    try:
        plan = [(args.events, True)] + ([(args.also_uncompressed, False)] if args.also_uncompressed else [])
        for n, (events, compress) in enumerate(plan):
            result = await run_alarm_through_backlog(
                broker, make_proxy, tmp / f"run{n}", events=events, bandwidth=args.bandwidth, latency=args.latency,
                compress=compress, window=args.window)
            runs.append(result.as_dict())
            print(json.dumps(runs[-1]), file=sys.stderr)
    finally:
        for proxy in proxies:
            await proxy.stop()
        await broker.stop()
    print(json.dumps({
        "benchmark": "constrained",
        "settings": {"bandwidth_bytes_per_s": args.bandwidth, "latency_s": args.latency, "window": args.window,
                     "batch_max": 100, "sync_policy": "never", "event": "gridworks.event.demo.reading"},
        "machine": machine_info(str(tmp)),
        "runs": runs,
    }, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--also-uncompressed", type=int, default=0, metavar="N")
    parser.add_argument("--bandwidth", type=float, default=8000.0, help="bytes/s each way (8000 = 64 kbit/s)")
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--window", type=int, default=20)
    from twisted.internet import task

    task.react(lambda reactor: __import__("twisted.internet.defer", fromlist=["Deferred"]).Deferred.fromCoroutine(
        main(reactor, parser.parse_args())))
