"""Live: a flood of huge hostile frames on a parent's link topics costs a bounded log and no lasting memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from gwproactor.config import BrokerSettings
from gwproactor.message import topic_for
from gwproactor.mqtt.settings import make_broker
from gwproactor_test.broker import free_port
from gwproactor_test.process import ProactorProcess

pytestmark = pytest.mark.live

PARENT, CHILD = "d1.flood", "d1.flood.c"
FRAME = 3 * 1024 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def hostile_frames() -> list[tuple[str, bytes]]:
    """48 frames of about 3 MiB on the parent's link topic: huge type names, garbage, oversized ones."""
    huge_type = "gridworks.event." + "x" * FRAME
    envelope = (
        '{"Header":{"Src":"%s","Dst":"p","MessageType":"%s","MessageId":"m","AckRequired":true,'
        '"TypeName":"gridworks.header","Version":"001"},"Payload":{"TypeName":"y"},"TypeName":"gw"}'
    ) % (CHILD, huge_type)
    frames = []
    for _ in range(16):
        frames.append((topic_for(CHILD, "p", "gridworks.ping"), envelope.encode()))  # undecodable, huge values
        frames.append((topic_for(CHILD, "p", "gridworks.ping"), b"\x00" * FRAME))  # garbage
        frames.append((topic_for(CHILD, "p", "gridworks.ping"), b"{" + b" " * (FRAME * 2) + b"}"))  # over the limit
    return frames


@pytest_twisted.ensureDeferred
async def test_flood_of_huge_frames_keeps_log_and_memory_bounded(fresh_broker: Any, tmp_path: Path) -> None:
    """48 frames of 3–6 MiB: the parent's log grows by a few kB, its RSS returns near where it was, it stays up."""
    from twisted.internet import reactor

    env = {
        "GWP_LONG_NAME": PARENT,
        "GWP_SHORT_NAME": "p",
        "GWP_BROKERS__DEFAULT__ENDPOINT": fresh_broker.endpoint(),
        "GWP_LINKS__CHILD__PEER_LONG_NAME": CHILD,
        "GWP_LINKS__CHILD__PEER_SHORT_NAME": "c",
        "GWP_LINKS__CHILD__MAX_FRAME_BYTES": str(5 * 1024 * 1024),
        "GWP_STORE__DIRECTORY": str(tmp_path / "store"),
        "GWP_HTTP__ENABLED": "true",
        "GWP_HTTP__PORT": str(port := free_port()),
    }

    async def bad_frames_seen() -> int:
        import treq

        response = await treq.get(f"http://127.0.0.1:{port}/stats", persistent=False)
        stats = (await response.json())["links"]["child"]["stats"]
        return stats["decode_errors"] + stats["oversized"]

    async def wait_bad_frames(n: int) -> None:
        seen: list[int] = [0]

        async def check() -> bool:
            seen[0] = await bad_frames_seen()
            return seen[0] >= n

        deadline = reactor.seconds() + 30
        while not await check():
            assert reactor.seconds() < deadline, f"the parent handled {seen[0]} of {n} bad frames"
            await deferLater(reactor, 0.1, lambda: None)

    parent = ProactorProcess("gwproactor.demo.apps:DemoParent", env, tmp_path / "parent", reactor=reactor)
    sender = make_broker("flood", BrokerSettings(endpoint=fresh_broker.endpoint()), reactor)
    await parent.start()
    sender.startService()
    try:
        await sender.when_connected()
        # Warm up with one round of the same frames, so allocator pools are in use before measuring.
        frames = hostile_frames()
        for topic, data in frames[:3]:
            await sender.publish(topic, data, 1)
        await wait_bad_frames(3)
        rss_before = rss_kib(parent.pid)
        log_before = parent.log_path.stat().st_size
        for topic, data in frames:
            await sender.publish(topic, data, 1)
        await wait_bad_frames(3 + len(frames))
        assert parent.running, parent.log_tail()
        rss_after = rss_kib(parent.pid)
        log_growth = parent.log_path.stat().st_size - log_before
        print(f"flood: RSS {rss_before} -> {rss_after} KiB, log +{log_growth} bytes")
        assert log_growth < 20_000, parent.log_tail()
        assert rss_after - rss_before < 20 * 1024, f"RSS grew from {rss_before} to {rss_after} KiB"
    finally:
        await sender.stopService()
        await parent.close()
