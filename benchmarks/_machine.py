"""The machine a benchmark ran on, for its JSON output (shared by every benchmark in this directory)."""

from __future__ import annotations

import io
import os
import platform
import pstats
import sys
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _filesystem(directory: str) -> str:
    try:
        best, fs = "", ""
        real = os.path.realpath(directory)
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if real.startswith(parts[1]) and len(parts[1]) > len(best):
                    best, fs = parts[1], f"{parts[2]} on {parts[0]} ({parts[1]})"
        return fs
    except OSError:
        return ""


def machine_info(directory: str | None = None, reactor: Any = None) -> dict[str, Any]:
    """CPU, core count, load, Python, platform, library versions; the filesystem of ``directory``; the reactor."""
    import paho.mqtt
    import twisted

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "twisted": twisted.__version__,
        "paho_mqtt": paho.mqtt.__version__,
    }
    if directory is not None:
        info["filesystem"] = _filesystem(directory)
    if reactor is not None:
        info["reactor"] = type(reactor).__module__ + "." + type(reactor).__name__
    return info


def profile_top(profile: Any, n: int = 30) -> dict[str, list[str]]:
    """The top ``n`` functions of a profile (a ``cProfile.Profile`` or a stats file path) by own and by cumulative time."""
    out: dict[str, list[str]] = {}
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        stats = pstats.Stats(profile, stream=buf)
        stats.sort_stats(key).print_stats(n)
        lines = buf.getvalue().splitlines()
        start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
        out[key] = [line.rstrip() for line in lines[start:] if line.strip()]
    return out
