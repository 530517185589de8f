"""MQTT publish → receive round trips through a private Mosquitto: BrokerConnection vs plain paho (loop_start).

Usage: ``python benchmarks/mqtt_roundtrip.py [-n 20000] [--size 100] [--window 200] [--rounds 1]``.
Prints one JSON object: messages/s per QoS for each client, the ratios, and machine info.
Each client subscribes to its topic and publishes to it, keeping at most ``window`` messages
published but not yet received back.  The paho baseline runs in a child process (its own
network thread), so the two never share a GIL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _machine import machine_info  # benchmarks/ is on sys.path when a script runs from it


def paho_child(port: int, qos: int, n: int, size: int, window: int) -> None:
    """Run the plain-paho round trip (loop_start thread) and print the elapsed seconds."""
    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    payload = b"x" * size
    topic = f"bench/paho/q{qos}"
    slots = threading.Semaphore(window)
    subscribed = threading.Event()
    connected = threading.Event()
    done = threading.Event()
    received = [0]

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-paho-{os.getpid()}")
    client.max_inflight_messages_set(0)

    def on_connect(c, u, flags, reason, props):
        connected.set()

    def on_subscribe(c, u, mid, codes, props):
        subscribed.set()

    def on_message(c, u, msg):
        received[0] += 1
        slots.release()
        if received[0] == n:
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise SystemExit("paho: no CONNACK")
        client.subscribe(topic, qos)
        if not subscribed.wait(10):
            raise SystemExit("paho: no SUBACK")
        start = time.perf_counter()
        for _ in range(n):
            slots.acquire()
            client.publish(topic, payload, qos)
        if not done.wait(120):
            raise SystemExit(f"paho: only {received[0]} of {n} messages came back")
        elapsed = time.perf_counter() - start
    finally:
        client.disconnect()
        client.loop_stop()
    print(json.dumps({"elapsed_s": elapsed}))


async def ours(reactor: Any, endpoint: str, qos: int, n: int, size: int, window: int) -> float:
    """Run the BrokerConnection round trip on the reactor; return the elapsed seconds."""
    from twisted.internet.defer import Deferred

    from gwproactor.mqtt import BrokerConnection

    conn = BrokerConnection("bench", reactor, endpoint=endpoint, keepalive=60)
    topic = f"bench/ours/q{qos}"
    payload = b"x" * size
    state = {"sent": 0, "received": 0, "errors": 0}
    done: Deferred = Deferred()

    def failed(f: Any) -> None:
        state["errors"] += 1

    def pump() -> None:
        while state["sent"] < n and state["sent"] - state["received"] < window:
            state["sent"] += 1
            d = conn.publish(topic, payload, qos)
            if not d.called:
                d.addErrback(failed)
            elif qos == 0:
                pass

    def on_message(t: str, p: bytes) -> None:
        state["received"] += 1
        if state["received"] == n:
            done.callback(None)
        else:
            pump()

    conn.add_subscription(topic, qos, on_message)
    conn.startService()
    await conn.when_subscribed().addTimeout(10, reactor)
    start = time.perf_counter()
    pump()
    await done.addTimeout(120, reactor)
    elapsed = time.perf_counter() - start
    await conn.stopService()
    if state["errors"]:
        raise RuntimeError(f"{state['errors']} publishes failed")
    return elapsed


async def run_paho(reactor: Any, port: int, qos: int, n: int, size: int, window: int) -> float:
    from twisted.internet.utils import getProcessOutputAndValue

    out, err, code = await getProcessOutputAndValue(
        sys.executable,
        [__file__, "--paho-child", str(port), "--qos", str(qos), "-n", str(n), "--size", str(size),
         "--window", str(window)],
        env=dict(os.environ),
        reactor=reactor,
    )
    if code != 0:
        raise RuntimeError(f"paho child failed ({code}): {err.decode(errors='replace')}")
    return float(json.loads(out.decode().strip().splitlines()[-1])["elapsed_s"])


async def main(reactor: Any, args: argparse.Namespace) -> None:
    from gwproactor_test.broker import PrivateBroker

    with tempfile.TemporaryDirectory(prefix="gwp-bench-") as tmp:
        broker = PrivateBroker(Path(tmp), reactor=reactor)
        await broker.start()
        try:
            results: dict[str, Any] = {}
            for qos in (0, 1):
                best_ours = best_paho = float("inf")
                for _ in range(args.rounds):
                    best_ours = min(best_ours, await ours(reactor, broker.endpoint(), qos, args.n, args.size,
                                                         args.window))
                    best_paho = min(best_paho, await run_paho(reactor, broker.port, qos, args.n, args.size,
                                                              args.window))
                ours_rate = args.n / best_ours
                paho_rate = args.n / best_paho
                results[f"qos{qos}"] = {
                    "ours_msgs_per_s": round(ours_rate, 1),
                    "paho_loop_start_msgs_per_s": round(paho_rate, 1),
                    "ratio_ours_over_paho": round(ours_rate / paho_rate, 3),
                }
        finally:
            await broker.stop()
    results["params"] = {"n": args.n, "payload_bytes": args.size, "window": args.window, "rounds": args.rounds,
                         "measure": "best of rounds, first publish to last receive"}
    results["machine"] = machine_info(reactor=reactor)
    print(json.dumps(results, indent=2))


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=20_000, help="messages per QoS level")
    p.add_argument("--size", type=int, default=100, help="payload bytes")
    p.add_argument("--window", type=int, default=200, help="max published but not yet received")
    p.add_argument("--rounds", type=int, default=1, help="runs per client and QoS (best is reported)")
    p.add_argument("--qos", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--paho-child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--asyncio", action="store_true", help="run on twisted's asyncio reactor")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.paho_child is not None:
        paho_child(arguments.paho_child, arguments.qos, arguments.n, arguments.size, arguments.window)
    else:
        if arguments.asyncio:
            from twisted.internet import asyncioreactor

            asyncioreactor.install()
        from twisted.internet import task
        from twisted.internet.defer import Deferred

        task.react(lambda r: Deferred.fromCoroutine(main(r, arguments)))
