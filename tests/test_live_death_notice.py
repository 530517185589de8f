"""Live: when a peer process dies (kill -9) or stops, the survivor leaves active within about a second (its Last Will)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings
from gwproactor.proactor import Proactor
from gwproactor_test.process import ProactorProcess
from gwproactor_test.wait import await_for

pytestmark = pytest.mark.live

CHILD, PARENT = "d1.will.c", "d1.will"


def parent_process(broker: Any, tmp_path: Path) -> ProactorProcess:
    from twisted.internet import reactor

    env = {
        "GWP_LONG_NAME": PARENT,
        "GWP_SHORT_NAME": "p",
        "GWP_BROKERS__DEFAULT__ENDPOINT": broker.endpoint(),
        "GWP_LINKS__CHILD__PEER_LONG_NAME": CHILD,
        "GWP_LINKS__CHILD__PEER_SHORT_NAME": "c",
        "GWP_STORE__DIRECTORY": str(tmp_path / "store-p"),
    }
    return ProactorProcess("gwproactor.demo.apps:DemoParent", env, tmp_path / "parent", reactor=reactor)


def child(broker: Any, tmp_path: Path) -> Any:
    from twisted.internet import reactor

    # Default timings: heartbeat 10 s, receive deadline 30 s, ack timeout 5 s.
    settings = ProactorSettings(
        long_name=CHILD, short_name="c",
        brokers={"default": BrokerSettings(endpoint=broker.endpoint())},
        links={"parent": LinkSettings(peer_long_name=PARENT, peer_short_name="p", upstream=True)},
        store=StoreSettings(directory=tmp_path / "store-c"),
    )
    return Proactor(settings, reactor=reactor)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
async def test_survivor_notices_a_dead_or_stopped_peer_within_seconds(
    private_broker: Any, tmp_path: Path, how: str
) -> None:
    """An idle link whose parent is killed (or stopped) leaves active in about a second, not at the 30 s deadline."""
    parent = parent_process(private_broker, tmp_path)
    ours = child(private_broker, tmp_path)
    await parent.start()
    ours.startService()
    try:
        link = ours.links["parent"]
        await await_for(lambda: link.is_active, 15, describe=lambda: str(link.recent_transitions))
        started = time.monotonic()
        if how == "kill -9":
            await parent.kill()
        else:
            parent.transport.signalProcess(signal.SIGTERM)
            await parent.wait_exit()
        await await_for(lambda: not link.is_active, 5, describe=lambda: str(link.recent_transitions))
        noticed = time.monotonic() - started
        print(f"death notice ({how}): link left active {noticed:.3f} s after the peer went")
        assert noticed < 2.0  # a stopping peer does not first wait for acks that cannot come
        assert link.last_down_reason == "peer_gone"
        assert link.stats.peer_gone >= 1
    finally:
        await ours.stopService()
        await parent.close()
