"""Benchmark the message codec with stdlib json and orjson on the captured gridworks 4.x frames.

Run: ``python benchmarks/codec.py [--frames PATH] [--seconds S]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from gwproactor.message import Codec, json_backend

from _machine import machine_info  # benchmarks/ is on sys.path when a script runs from it

DEFAULT_FRAMES = Path("/work/shared/wire/gridworks-4x-frames.jsonl")


ROUNDS = 9


def _rate(fn: Callable[[], Any], items: int, seconds: float) -> float:
    """Items per second of ``fn`` (which handles ``items`` items per call), best of :data:`ROUNDS` rounds.

    The best round is the least disturbed by other load on the machine.
    """
    fn()  # warm up
    best = 0.0
    for _ in range(ROUNDS):
        calls = 0
        start = time.perf_counter()
        deadline = start + seconds / ROUNDS
        while True:
            fn()
            calls += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, calls * items / (now - start))
    return round(best)


def _machine() -> dict:
    info = machine_info()
    try:
        import orjson

        info["orjson"] = orjson.__version__
    except ImportError:
        info["orjson"] = None
    return info


def run(frames_path: Path, seconds: float) -> dict:
    """Measure raw JSON and full codec rates for each backend; return the result dict."""
    frames = [json.loads(line)["payload"] for line in frames_path.read_text().splitlines() if line.strip()]
    raw = [json.dumps(f, separators=(",", ":")).encode() for f in frames]
    n = len(frames)
    results: dict[str, Any] = {}
    for name in ("json", "orjson"):
        try:
            _, dumps, loads = json_backend(name)
        except ImportError:
            continue
        codec = Codec(backend=name)
        messages = [codec.decode(r) for r in raw]

        def raw_dumps(dumps=dumps) -> None:
            for f in frames:
                dumps(f)

        def raw_loads(loads=loads) -> None:
            for r in raw:
                loads(r)

        def encode(codec=codec, messages=messages) -> None:
            for m in messages:
                codec.encode(m)

        def decode(codec=codec) -> None:
            for r in raw:
                codec.decode(r)

        def round_trip(codec=codec) -> None:
            for r in raw:
                codec.encode(codec.decode(r))

        results[name] = {
            "raw_dumps_ops_s": _rate(raw_dumps, n, seconds),
            "raw_loads_ops_s": _rate(raw_loads, n, seconds),
            "codec_encode_ops_s": _rate(encode, n, seconds),
            "codec_decode_ops_s": _rate(decode, n, seconds),
            "codec_decode_encode_ops_s": _rate(round_trip, n, seconds),
        }
    if "json" in results and "orjson" in results:
        results["orjson_speedup"] = {
            key: round(results["orjson"][key] / results["json"][key], 2) for key in results["json"]
        }
    return {
        "benchmark": "codec",
        "frames": n,
        "seconds_per_measure": seconds,
        "rounds": ROUNDS,
        "statistic": "best round, items/s",
        "load_average": os.getloadavg(),
        "machine": _machine(),
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=Path, default=DEFAULT_FRAMES)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement (split into rounds)")
    args = parser.parse_args(argv)
    json.dump(run(args.frames, args.seconds), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
