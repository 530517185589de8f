"""Hypothesis stateful test: store + outbox + links through a broker that drops, delays, duplicates and reorders frames."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from twisted.internet.task import Clock

from gwproactor.config import LinkSettings, ProactorSettings
from gwproactor.message import ProblemEvent
from gwproactor.proactor import Proactor
from gwproactor.store import MemoryEventStore
from gwproactor_test.fakes import FakeBroker

CHILD, PARENT = "d1.prop.child", "d1.prop"


@attrs.define(eq=False)
class ChaosBroker(FakeBroker):
    """A fake broker whose frames wait in :attr:`in_flight` until the test delivers, drops or duplicates them."""

    in_flight: list[tuple[str, bytes]] = attrs.field(factory=list)

    def route(self, topic: str, payload: bytes) -> None:
        self.in_flight.append((topic, payload))

    def deliver(self, index: int, keep: bool = False) -> None:
        topic, payload = self.in_flight[index] if keep else self.in_flight.pop(index)
        for client in list(self.clients):
            if client.is_connected:
                client.deliver(topic, payload)


class App(Proactor):
    """Counts every event its application sees."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: Counter = Counter()

    def handle_event(self, link: Any, event: Any) -> Any:
        if event.type_name == "gridworks.event.problem" and event.summary.startswith("p"):
            self.seen[event.message_id] += 1
        return None


def link(peer_long: str, peer_short: str, upstream: bool, batch_max: int) -> LinkSettings:
    return LinkSettings(
        peer_long_name=peer_long,
        peer_short_name=peer_short,
        upstream=upstream,
        ack_timeout_s=5,
        heartbeat_s=2,
        receive_deadline_s=7,
        window=8,
        batch_max=batch_max,
    )


class DeliveryMachine(RuleBasedStateMachine):
    """Every durable event reaches the parent's application, and none of them twice."""

    @initialize(batch_max=st.sampled_from([0, 5]))
    def start(self, batch_max: int) -> None:
        self.clock = Clock()
        self.broker = ChaosBroker(self.clock)
        self.child = App(
            ProactorSettings(long_name=CHILD, short_name="c", links={"parent": link(PARENT, "p", True, batch_max)}),
            reactor=self.clock,
            store=MemoryEventStore(clock=self.clock),
            brokers={"default": self.broker.client("child")},
        )
        self.parent = App(
            ProactorSettings(long_name=PARENT, short_name="p", links={"child": link(CHILD, "c", False, batch_max)}),
            reactor=self.clock,
            store=MemoryEventStore(clock=self.clock),
            brokers={"default": self.broker.client("parent")},
        )
        self.child.startService()
        self.parent.startService()
        self.broker.connect_all()
        self.durable: set[str] = set()
        self.n = 0

    @rule(count=st.integers(1, 6))
    def generate(self, count: int) -> None:
        for _ in range(count):
            self.n += 1
            event = ProblemEvent(src=CHILD, problem_type="warning", summary=f"p{self.n}")
            self.child.generate_event(event).addCallback(self.durable.add)

    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        if self.broker.in_flight:
            self.broker.deliver(data.draw(st.integers(0, len(self.broker.in_flight) - 1)))

    @rule(data=st.data())
    def deliver_in_order(self, data: st.DataObject) -> None:
        for _ in range(min(len(self.broker.in_flight), data.draw(st.integers(1, 10)))):
            self.broker.deliver(0)

    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        if self.broker.in_flight:
            self.broker.in_flight.pop(data.draw(st.integers(0, len(self.broker.in_flight) - 1)))

    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        if self.broker.in_flight:
            self.broker.deliver(data.draw(st.integers(0, len(self.broker.in_flight) - 1)), keep=True)

    @rule(seconds=st.sampled_from([0, 0.5, 2, 5.5, 8]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def broker_restart(self) -> None:
        self.broker.in_flight.clear()
        self.broker.disconnect_all()
        self.broker.connect_all()

    @invariant()
    def never_twice(self) -> None:
        assert all(n == 1 for n in self.parent.seen.values())

    def teardown(self) -> None:
        # Heal the network and let everything drain: all durable events must arrive.
        for _ in range(400):
            if self.durable <= set(self.parent.seen) and not self.child.store.pending_ids():
                break
            while self.broker.in_flight:
                self.broker.deliver(0)
            self.clock.advance(1)
        missing = self.durable - set(self.parent.seen)
        assert not missing, f"{len(missing)} durable events never reached the parent"
        assert all(n == 1 for n in self.parent.seen.values())


TestDelivery = DeliveryMachine.TestCase
TestDelivery.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
