"""Live: a Mosquitto ACL (as in docs/tls.rst) lets each proactor publish only as itself; a forger is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings
from gwproactor.demo.apps import Reading
from gwproactor.message import Codec, ProblemEvent, dashed, make_message, topic_for
from gwproactor.mqtt.settings import make_broker
from gwproactor.proactor import Proactor
from gwproactor_test.broker import PrivateBroker
from gwproactor_test.certs import make_cert
from gwproactor_test.plugin import require_mosquitto
from gwproactor_test.wait import await_for
from tests.test_live_links import FAST
from tests.test_live_links import Recording

pytestmark = pytest.mark.live


class Parent(Recording):
    """Also keeps the summary of every problem event it handles."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.problem_summaries: list[str] = []

    def handle_event(self, link: Any, event: Any) -> Any:
        if isinstance(event, ProblemEvent):
            self.problem_summaries.append(event.summary)
        return super().handle_event(link, event)

PARENT, CHILD, INTRUDER = "d1.acl", "d1.acl.c", "d1.intruder"


def acl_text(parent: str, parent_short: str, child: str, child_short: str) -> str:
    """The ACL of docs/tls.rst for one parent and one child (TLS identities = dashed long names)."""
    p, c = dashed(parent), dashed(child)
    return "\n".join([
        f"user {p}",
        f"topic write gw/{p}/to/#",
        f"topic read gw/{c}/to/{parent_short}/#",
        "",
        f"user {c}",
        f"topic write gw/{c}/to/#",
        f"topic read gw/{p}/to/{child_short}/#",
        "",
        # Anyone else with a certificate of the CA may publish only under its own name.
        "pattern write gw/%u/to/#",
        "pattern read gw/+/to/%u/#",
        "",
    ])


def make(cls: type, endpoint: str, tmp: Path, long: str, short: str, links: dict[str, LinkSettings]) -> Any:
    from twisted.internet import reactor

    return cls(ProactorSettings(long_name=long, short_name=short, links=links,
                                brokers={"default": BrokerSettings(endpoint=endpoint)},
                                store=StoreSettings(directory=tmp / f"store-{short}")), reactor=reactor)


@pytest_twisted.ensureDeferred
async def test_broker_acl_refuses_a_forged_publisher(tmp_path: Path, test_certs: Any) -> None:
    """With the documented ACL the pair links and delivers; an intruder's forged event on the child's topic never arrives."""
    from twisted.internet import reactor

    require_mosquitto()
    ids = {name: make_cert(test_certs.ca, tmp_path / "ids", dashed(name), server=False) for name in (PARENT, CHILD, INTRUDER)}
    broker = PrivateBroker(tmp_path / "broker", certs=test_certs, reactor=reactor,
                           acl=acl_text(PARENT, "p", CHILD, "c"))
    await broker.start()
    parent = make(Parent, broker.endpoint(tls=True, client=ids[PARENT]), tmp_path, PARENT, "p",
                  {"child": LinkSettings(peer_long_name=CHILD, peer_short_name="c", **FAST)})
    child = make(Proactor, broker.endpoint(tls=True, client=ids[CHILD]), tmp_path, CHILD, "c",
                 {"parent": LinkSettings(peer_long_name=PARENT, peer_short_name="p", upstream=True, **FAST)})
    intruder = make_broker("intruder", BrokerSettings(endpoint=broker.endpoint(tls=True, client=ids[INTRUDER])), reactor)
    canary: list[bytes] = []
    canary_seen: Deferred = Deferred()
    try:
        parent.startService()
        child.startService()
        intruder.startService()
        await await_for(lambda: parent.link_states() == {"child": "active"} and child.link_states() == {"parent": "active"},
                        15, describe=lambda: f"{parent.link_states()} {child.link_states()}")
        durable: list[str] = []
        await child.generate_event(Reading(src=CHILD, seq=1, value=1.0)).addCallback(durable.append)
        await await_for(lambda: set(durable) <= set(parent.readings), 10)
        # The intruder may read what is addressed to it: a canary it publishes to itself.
        intruder.add_subscription(f"gw/+/to/{dashed(INTRUDER)}/#", 1, lambda topic, payload: (
            canary.append(payload), canary_seen.called or canary_seen.callback(None)))
        await intruder.when_subscribed()
        forged = make_message(CHILD, "p", ProblemEvent(src=CHILD, problem_type="error", summary="forged", details=""))
        codec = Codec()
        await intruder.publish(topic_for(CHILD, "p", forged.header.message_type), codec.encode(forged), 1)
        # Mosquitto handles one client's publishes in order: once the canary is back, the forged one was handled.
        await intruder.publish(f"gw/{dashed(INTRUDER)}/to/{dashed(INTRUDER)}/canary", b"{}", 1)
        await canary_seen
        await child.generate_event(Reading(src=CHILD, seq=2, value=1.0)).addCallback(durable.append)
        await await_for(lambda: set(durable) <= set(parent.readings), 10)
        assert canary == [b"{}"]
        assert "forged" not in parent.problem_summaries
        assert all(n == 1 for n in parent.readings.values()) and len(parent.readings) == 2
    finally:
        await intruder.stopService()
        await child.stopService()
        await parent.stopService()
        await broker.stop()
