"""Live link tests on a private Mosquitto: shared broker connections, early peer frames, a tree whose middle is killed."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings
from gwproactor.demo.apps import Reading
from gwproactor.links.machine import LinkState
from gwproactor.proactor import Proactor
from gwproactor_test.process import ProactorProcess
from gwproactor_test.faulty_mqtt import link_faults
from gwproactor_test.wait import await_for

pytestmark = pytest.mark.live

FAST = dict(ack_timeout_s=1.0, heartbeat_s=0.5, receive_deadline_s=2.0)


class Recording(Proactor):
    """Counts the readings its application sees."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.readings: Counter = Counter()

    def handle_event(self, link: Any, event: Any) -> Any:
        if isinstance(event, Reading):
            self.readings[event.message_id] += 1
        return None


def proactor(cls: type, broker: Any, tmp: Path, long: str, short: str, links: dict[str, LinkSettings]) -> Any:
    settings = ProactorSettings(
        long_name=long,
        short_name=short,
        brokers={"default": BrokerSettings(endpoint=broker.endpoint())},
        links=links,
        store=StoreSettings(directory=tmp / f"store-{short}"),
    )
    from twisted.internet import reactor

    return cls(settings, reactor=reactor)


def states(*ps: Any) -> str:
    return "; ".join(f"{p.name}: {p.link_states()}" for p in ps)


@pytest_twisted.ensureDeferred
async def test_two_links_share_one_broker_connection(private_broker: Any, tmp_path: Path) -> None:
    """A hub with two links on one broker connection: both become active, and losing one peer leaves the other active."""
    hub = proactor(
        Recording,
        private_broker,
        tmp_path,
        "d1.hub",
        "h",
        {
            "a": LinkSettings(peer_long_name="d1.hub.a", peer_short_name="a", **FAST),
            "b": LinkSettings(peer_long_name="d1.hub.b", peer_short_name="b", **FAST),
        },
    )
    a = proactor(Proactor, private_broker, tmp_path, "d1.hub.a", "a", {"hub": LinkSettings(peer_long_name="d1.hub", peer_short_name="h", upstream=True, **FAST)})
    b = proactor(Proactor, private_broker, tmp_path, "d1.hub.b", "b", {"hub": LinkSettings(peer_long_name="d1.hub", peer_short_name="h", upstream=True, **FAST)})
    assert len(hub.brokers) == 1 and hub.links["a"].broker is hub.links["b"].broker
    for p in (hub, a, b):
        p.startService()
    try:
        await await_for(lambda: hub.link_states() == {"a": "active", "b": "active"}, 15, describe=lambda: states(hub, a, b))
        link_faults(b.links["hub"]).hold_outgoing = True  # b falls silent without closing anything
        await await_for(lambda: hub.link_states()["b"] != "active", 10, describe=lambda: states(hub, a, b))
        assert hub.link_states()["a"] == "active"
    finally:
        for p in (a, b, hub):
            await p.stopService()


@pytest_twisted.ensureDeferred
async def test_peer_frame_before_suback_is_awaiting_setup(private_broker: Any, tmp_path: Path) -> None:
    """With its SUBACK held, a child that hears its parent is awaiting_setup; releasing the SUBACK makes it active."""
    parent = proactor(Proactor, private_broker, tmp_path, "d1.early", "p", {"child": LinkSettings(peer_long_name="d1.early.c", peer_short_name="c", **FAST)})
    child = proactor(Proactor, private_broker, tmp_path, "d1.early.c", "c", {"parent": LinkSettings(peer_long_name="d1.early", peer_short_name="p", upstream=True, **FAST)})
    link = child.links["parent"]
    link_faults(link).hold_subacks = True
    parent.startService()
    child.startService()
    try:
        # The broker has subscribed us (only the link's processing of the SUBACK is held), so the
        # parent's pings arrive: the peer is heard before the link considers itself subscribed.
        await await_for(lambda: link.state is LinkState.awaiting_setup, 15, describe=lambda: states(parent, child))
        assert link_faults(link).release_subacks() == 1
        await await_for(lambda: link.state is LinkState.active, 10, describe=lambda: states(parent, child))
    finally:
        await child.stopService()
        await parent.stopService()


@pytest_twisted.ensureDeferred
async def test_tree_with_middle_killed_loses_nothing(private_broker: Any, tmp_path: Path) -> None:
    """scada2 → scada1 → atn with scada1 killed -9 and restarted 3 times: every durable event reaches atn exactly once."""
    from twisted.internet import reactor

    rng = random.Random(7)
    atn = proactor(Recording, private_broker, tmp_path, "d1.t", "a", {"scada1": LinkSettings(peer_long_name="d1.t.s1", peer_short_name="s1", **FAST)})
    scada2 = proactor(Proactor, private_broker, tmp_path, "d1.t.s1.s2", "s2", {"scada1": LinkSettings(peer_long_name="d1.t.s1", peer_short_name="s1", upstream=True, **FAST)})
    middle_env = {
        "GWP_LONG_NAME": "d1.t.s1",
        "GWP_SHORT_NAME": "s1",
        "GWP_BROKERS__DEFAULT__ENDPOINT": private_broker.endpoint(),
        "GWP_LINKS__ATN__PEER_LONG_NAME": "d1.t",
        "GWP_LINKS__ATN__PEER_SHORT_NAME": "a",
        "GWP_LINKS__ATN__UPSTREAM": "true",
        "GWP_LINKS__SCADA2__PEER_LONG_NAME": "d1.t.s1.s2",
        "GWP_LINKS__SCADA2__PEER_SHORT_NAME": "s2",
        "GWP_STORE__DIRECTORY": str(tmp_path / "store-s1"),
        **{f"GWP_LINKS__{name}__{k.upper()}": str(v) for name in ("ATN", "SCADA2") for k, v in FAST.items()},
    }
    middle = ProactorProcess("gwproactor.demo.apps:DemoParent", middle_env, tmp_path / "middle", reactor=reactor)
    durable: list[str] = []
    atn.startService()
    scada2.startService()
    try:
        await middle.start()
        seq = 0
        for _ in range(3):
            for _ in range(rng.randint(20, 60)):
                seq += 1
                event = Reading(src=scada2.name, seq=seq, value=1.0)
                scada2.generate_event(event).addCallback(durable.append)
                await deferLater(reactor, 0.005, lambda: None)
            await middle.kill()
            await middle.start()
        await await_for(lambda: set(durable) <= set(atn.readings), 60, describe=lambda: f"missing {len(set(durable) - set(atn.readings))}; {states(atn, scada2)}")
        assert len(durable) == seq
        assert all(n == 1 for n in atn.readings.values())
        assert all(atn.readings[i] == 1 for i in durable)
    finally:
        await middle.close()
        await scada2.stopService()
        await atn.stopService()
