"""Live: a child that waits long for its parent, and a broker restart our side survives first — no flap, no double send."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings
from gwproactor.demo.apps import Reading
from gwproactor.proactor import Proactor
from gwproactor_test.wait import await_for
from tests.test_live_links import FAST
from tests.test_live_links import Recording as Parent

pytestmark = pytest.mark.live


def make(cls: type, endpoint: str, tmp: Path, long: str, short: str, links: dict[str, LinkSettings]) -> Any:
    from twisted.internet import reactor

    settings = ProactorSettings(
        long_name=long,
        short_name=short,
        brokers={"default": BrokerSettings(endpoint=endpoint, backoff_initial_s=0.1, backoff_cap_s=0.5)},
        links=links,
        store=StoreSettings(directory=tmp / f"store-{short}"),
    )
    return cls(settings, reactor=reactor)


def pair(child_endpoint: str, parent_endpoint: str, tmp: Path) -> tuple[Any, Any]:
    child = make(Proactor, child_endpoint, tmp, "d1.so.c", "c",
                 {"parent": LinkSettings(peer_long_name="d1.so", peer_short_name="p", upstream=True, **FAST)})
    parent = make(Parent, parent_endpoint, tmp, "d1.so", "p",
                  {"child": LinkSettings(peer_long_name="d1.so.c", peer_short_name="c", **FAST)})
    return child, parent


def transitions_after_first_active(link: Any) -> list[tuple[float, str, str]]:
    recent = link.recent_transitions
    first = next(i for i, t in enumerate(recent) if t[2] == "active")
    return recent[first + 1:]


async def generate(child: Any, n: int, durable: list[str]) -> None:
    from twisted.internet import reactor

    for i in range(n):
        child.generate_event(Reading(src=child.name, seq=i, value=1.0)).addCallback(durable.append)
        if i % 10 == 9:
            await deferLater(reactor, 0.01, lambda: None)


def check_exactly_once(child: Any, parent: Any, durable: list[str]) -> None:
    outbox = child.outbox.stats
    assert outbox.resent_without_cause == 0, child.outbox.summary()
    assert outbox.resent == 0, child.outbox.summary()  # no ack was lost: nothing had to go twice
    assert parent.counters["duplicates_dropped"] == 0
    assert all(parent.readings[i] == 1 for i in durable)
    assert child.links["parent"].stats.ack_timeouts_counted == 0


def describe(*ps: Any) -> str:
    return "; ".join(f"{p.name}: {p.link_states()} {p.links[next(iter(p.links))].recent_transitions[-4:]}" for p in ps)


@pytest_twisted.ensureDeferred
async def test_child_started_long_before_its_parent_does_not_flap(private_broker: Any, tmp_path: Path) -> None:
    """Our child waits 5 ack timeouts for its parent, with a backlog: once active it never leaves, nothing goes twice."""
    from twisted.internet import reactor

    child, parent = pair(private_broker.endpoint(), private_broker.endpoint(), tmp_path)
    durable: list[str] = []
    child.startService()
    try:
        await await_for(lambda: child.link_states() == {"parent": "awaiting_peer"}, 15, describe=lambda: describe(child))
        await generate(child, 100, durable)
        await deferLater(reactor, 5 * FAST["ack_timeout_s"], lambda: None)  # the gap itself is the scenario
        assert child.links["parent"].liveness.pings_sent >= 4  # probes kept going out while we waited
        parent.startService()
        await await_for(lambda: child.link_states() == {"parent": "active"}, 15, describe=lambda: describe(child, parent))
        await generate(child, 100, durable)
        await await_for(lambda: len(durable) == 200 and set(durable) <= set(parent.readings), 20,
                        describe=lambda: f"{len(set(durable) - set(parent.readings))} missing; {describe(child, parent)}")
        # Stay a few ack timeouts longer: a stale probe's timeout would have flapped the link by now.
        await deferLater(reactor, 3 * FAST["ack_timeout_s"], lambda: None)
        assert transitions_after_first_active(child.links["parent"]) == []
        assert transitions_after_first_active(parent.links["child"]) == []
        check_exactly_once(child, parent, durable)
        assert child.links["parent"].stats.ack_timeouts_discounted >= 1  # the stale probe did time out
    finally:
        await child.stopService()
        await parent.stopService()


@pytest_twisted.ensureDeferred
async def test_broker_restart_with_our_side_back_first_does_not_flap(
    fresh_broker: Any, fault_proxy: Any, tmp_path: Path
) -> None:
    """The broker restarts; the child reconnects at once, the parent seconds later: one outage, no flap, nothing twice."""
    from twisted.internet import reactor

    proxy = fault_proxy("127.0.0.1", fresh_broker.port)
    child, parent = pair(fresh_broker.endpoint(), proxy.endpoint(), tmp_path)
    durable: list[str] = []
    child.startService()
    parent.startService()
    try:
        await await_for(lambda: child.link_states() == {"parent": "active"} and parent.link_states() == {"child": "active"},
                        15, describe=lambda: describe(child, parent))
        await generate(child, 50, durable)
        await await_for(lambda: child.store.pending_ids() == [], 15, describe=lambda: describe(child, parent))
        proxy.refuse(True)  # the parent cannot come back until we say so
        await fresh_broker.restart()
        await await_for(lambda: child.link_states() == {"parent": "awaiting_peer"}, 15, describe=lambda: describe(child, parent))
        await generate(child, 50, durable)  # a backlog while the parent is away
        await deferLater(reactor, 4 * FAST["ack_timeout_s"], lambda: None)  # probes outstanding all along
        proxy.refuse(False)
        await await_for(lambda: child.link_states() == {"parent": "active"}, 15, describe=lambda: describe(child, parent))
        mark = len(child.links["parent"].recent_transitions)
        await generate(child, 50, durable)
        await await_for(lambda: len(durable) == 150 and set(durable) <= set(parent.readings), 20,
                        describe=lambda: f"{len(set(durable) - set(parent.readings))} missing; {describe(child, parent)}")
        await deferLater(reactor, 3 * FAST["ack_timeout_s"], lambda: None)
        assert child.links["parent"].recent_transitions[mark:] == []
        check_exactly_once(child, parent, durable)
    finally:
        await child.stopService()
        await parent.stopService()
