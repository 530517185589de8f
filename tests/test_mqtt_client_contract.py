"""The IMQTTClient behaviour a Link relies on, checked against every implementation we ship or test with.

One set of tests runs against the fake client of ``gwproactor_test.fakes`` (on a Clock and a
:class:`~gwproactor_test.fakes.FakeBroker`), against the real :class:`~gwproactor.mqtt.BrokerConnection`
on a private Mosquitto broker, and against the fault wrapper of ``gwproactor_test.faulty_mqtt`` around
each of them: what passes for the fake must pass for the real thing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gwproactor.errors import NotConnectedError
from gwproactor.interfaces import IBrokerObserver, IMQTTClient, ISubscriptionObserver
from gwproactor_test.fakes import FakeBroker
from gwproactor_test.faulty_mqtt import FaultyMQTTClient
from gwproactor_test.wait import await_for

TIMEOUT_S = 15.0


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@implementer(IBrokerObserver)
class Recorder:
    """Records what a client tells its observers (and with which client)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def broker_connected(self, client: Any) -> None:
        self.calls.append(("connected", client))

    def broker_disconnected(self, client: Any, reason: str) -> None:
        self.calls.append(("disconnected", client, reason))

    def broker_subscribed(self, client: Any, topic_filter: str, granted_qos: int) -> None:
        self.calls.append(("subscribed", client, topic_filter, granted_qos))

    def broker_subscribe_failed(self, client: Any, topic_filter: str, reason: str) -> None:
        self.calls.append(("subscribe_failed", client, topic_filter, reason))

    def kinds(self, kind: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == kind]


@implementer(ISubscriptionObserver)
class FilterRecorder(Recorder):
    """A Recorder that wants the SUBACK results of one filter only (as a Link does)."""

    def __init__(self, subscription: str) -> None:
        super().__init__()
        self.subscription = subscription


class FakeDriver:
    """Drives a FakeMQTTClient's broker side on a Clock."""

    def __init__(self, wrap: bool) -> None:
        self.clock = Clock()
        self.hub = FakeBroker(self.clock)
        self.inner = self.hub.client("contract")
        self.client: Any = FaultyMQTTClient(self.inner) if wrap else self.inner

    async def connect(self) -> None:
        self.inner.connect()

    async def reconnected(self) -> None:
        # The fake does not reconnect by itself: its broker side does it, as a reconnect would.
        self.inner.connect()

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        for _ in range(10):
            if predicate():
                return
            self.clock.advance(0.01)
        assert predicate(), f"never: {what}"

    async def close(self) -> None:
        self.inner.disconnect("test over")


class RealDriver:
    """A BrokerConnection on a private Mosquitto broker, on the real reactor."""

    def __init__(self, wrap: bool, endpoint: str, name: str) -> None:
        from gwproactor.mqtt import Backoff, BrokerConnection

        self.inner = BrokerConnection(name[:60], _reactor(), endpoint=endpoint, backoff=Backoff(initial=0.1, cap=0.5))
        self.client: Any = FaultyMQTTClient(self.inner) if wrap else self.inner

    async def connect(self) -> None:
        self.inner.startService()
        await self.client.when_connected().addTimeout(TIMEOUT_S, _reactor())

    async def reconnected(self) -> None:
        await self.until(lambda: self.client.is_connected, "reconnected by itself")

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        await await_for(predicate, TIMEOUT_S, describe=f"waiting for {what}")

    async def close(self) -> None:
        if self.inner.running:
            await self.inner.stopService()


KINDS = [
    "fake",
    "fake+faulty",
    pytest.param("real", marks=pytest.mark.live),
    pytest.param("real+faulty", marks=pytest.mark.live),
]


@pytest.fixture(params=KINDS)
def driver(request: pytest.FixtureRequest) -> Any:
    """A driver of one IMQTTClient implementation, not yet connected (closed after the test)."""
    kind: str = request.param
    wrap = kind.endswith("+faulty")
    if kind.startswith("real"):
        broker = request.getfixturevalue("private_broker")
        made: Any = RealDriver(wrap, broker.endpoint(), f"contract-{request.node.name}")
    else:
        made = FakeDriver(wrap)
    yield made
    pytest_twisted.blockon(Deferred.fromCoroutine(made.close()))


def topic(driver: Any, leaf: str) -> str:
    """A topic of this test only (the real broker is shared by the session)."""
    return f"gwp/contract/{id(driver)}/{leaf}"


@pytest_twisted.ensureDeferred
async def test_provides_the_interface(driver: Any) -> None:
    """The client provides IMQTTClient, attributes and methods alike."""
    assert verifyObject(IMQTTClient, driver.client)
    assert isinstance(driver.client.name, str)


@pytest_twisted.ensureDeferred
async def test_publish_while_disconnected_fails_at_once(driver: Any) -> None:
    """Before any connection a publish fails at once with NotConnectedError (nothing is queued)."""
    assert not driver.client.is_connected
    d = driver.client.publish(topic(driver, "x"), b"x", 1)
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(NotConnectedError)


@pytest_twisted.ensureDeferred
async def test_connect_is_announced(driver: Any) -> None:
    """A connection is told to observers (with the client) and when_connected fires with the client."""
    client = driver.client
    rec = Recorder()
    client.add_observer(rec)
    waiting = client.when_connected()
    await driver.connect()
    await driver.until(lambda: rec.kinds("connected"), "the connected notification")
    assert client.is_connected
    assert rec.kinds("connected") == [("connected", client)]
    assert (await waiting) is client
    assert (await client.when_connected()) is client


@pytest_twisted.ensureDeferred
async def test_subscribe_is_acknowledged_with_granted_qos(driver: Any) -> None:
    """A registered filter is subscribed on connect; observers learn its granted QoS; is_subscribed says so."""
    client = driver.client
    rec = Recorder()
    client.add_observer(rec)
    t = topic(driver, "sub")
    client.add_subscription(t, 1, lambda _t, _p: None)
    assert not client.is_subscribed(t)
    await driver.connect()
    await driver.until(lambda: rec.kinds("subscribed"), "the SUBACK")
    assert rec.kinds("subscribed") == [("subscribed", client, t, 1)]
    assert client.is_subscribed(t) and client.is_fully_subscribed
    assert (await client.when_subscribed()) is client


@pytest_twisted.ensureDeferred
async def test_subscription_observer_hears_only_its_filter(driver: Any) -> None:
    """An ISubscriptionObserver is told its own filter's SUBACK only; a plain observer hears every one.

    This is what keeps a SUBACK O(1) when a thousand links share one connection.
    """
    client = driver.client
    a, b = topic(driver, "a"), topic(driver, "b")
    rec_a, rec_b, plain = FilterRecorder(a), FilterRecorder(b), Recorder()
    for rec in (rec_a, rec_b, plain):
        client.add_observer(rec)
    client.add_subscription(a, 0, lambda _t, _p: None)
    client.add_subscription(b, 1, lambda _t, _p: None)
    await driver.connect()
    await driver.until(lambda: len(plain.kinds("subscribed")) == 2, "both SUBACKs")
    await driver.until(lambda: rec_a.kinds("subscribed") and rec_b.kinds("subscribed"), "each filter's SUBACK")
    assert rec_a.kinds("subscribed") == [("subscribed", client, a, 0)]
    assert rec_b.kinds("subscribed") == [("subscribed", client, b, 1)]
    assert sorted(c[2] for c in plain.kinds("subscribed")) == sorted([a, b])
    assert len(rec_a.kinds("connected")) == len(rec_b.kinds("connected")) == 1
    client.remove_observer(rec_a)
    client.add_subscription(a, 1, lambda _t, _p: None)  # subscribes again at once
    await driver.until(lambda: len(plain.kinds("subscribed")) == 3, "the new SUBACK")
    assert len(rec_a.kinds("subscribed")) == 1 and len(rec_b.kinds("subscribed")) == 1


@pytest_twisted.ensureDeferred
async def test_publish_to_a_subscribed_topic_arrives(driver: Any) -> None:
    """QoS 0 and QoS 1 publishes fire their Deferreds and reach the subscription's callback, in order."""
    client = driver.client
    got: list[tuple[str, bytes]] = []
    t0, t1 = topic(driver, "q0"), topic(driver, "q1")
    client.add_subscription(t0, 0, lambda t, p: got.append((t, p)))
    client.add_subscription(t1, 1, lambda t, p: got.append((t, p)))
    await driver.connect()
    await driver.until(lambda: client.is_fully_subscribed, "both SUBACKs")
    published = [client.publish(t0, b"zero", 0), client.publish(t1, b"one", 1)]
    fired: list[Any] = []
    for d in published:
        d.addBoth(fired.append)
    await driver.until(lambda: len(got) == 2 and len(fired) == 2, "both frames back")
    assert got == [(t0, b"zero"), (t1, b"one")]
    assert not any(hasattr(r, "check") for r in fired), fired


@pytest_twisted.ensureDeferred
async def test_registering_a_filter_again_replaces_its_callback(driver: Any) -> None:
    """add_subscription of a registered filter replaces its callback (the fault wrapper relies on it)."""
    client = driver.client
    first: list[bytes] = []
    second: list[bytes] = []
    t = topic(driver, "again")
    client.add_subscription(t, 1, lambda _t, p: first.append(p))
    await driver.connect()
    await driver.until(lambda: client.is_subscribed(t), "the SUBACK")
    client.add_subscription(t, 1, lambda _t, p: second.append(p))
    await driver.until(lambda: client.is_subscribed(t), "the SUBACK again")
    client.publish(t, b"x", 1)
    await driver.until(lambda: second == [b"x"], "the frame at the new callback")
    assert first == []


@pytest_twisted.ensureDeferred
async def test_lost_connection_is_announced_and_subscriptions_come_back(driver: Any) -> None:
    """A dropped connection is told to observers (is_connected is false by then); after the reconnect every
    registered filter is subscribed again and its SUBACK told again."""
    client = driver.client
    rec = Recorder()
    t = topic(driver, "resub")
    client.add_subscription(t, 1, lambda _t, _p: None)
    client.add_observer(rec)
    await driver.connect()
    await driver.until(lambda: client.is_subscribed(t), "the SUBACK")
    states: list[bool] = []
    rec.broker_disconnected = lambda c, reason: (states.append(c.is_connected), rec.calls.append(("disconnected", c, reason)))  # type: ignore[method-assign]
    client.drop_connection()
    await driver.until(lambda: rec.kinds("disconnected"), "the disconnected notification")
    (_kind, who, reason), = rec.kinds("disconnected")
    assert who is client and isinstance(reason, str) and states == [False]
    await driver.reconnected()
    await driver.until(lambda: len(rec.kinds("subscribed")) == 2, "the SUBACK after the reconnect")
    assert len(rec.kinds("connected")) == 2
    assert client.is_subscribed(t)


@pytest_twisted.ensureDeferred
async def test_removed_observer_and_subscription_are_forgotten(driver: Any) -> None:
    """remove_observer stops notifications; remove_subscription makes is_subscribed false."""
    client = driver.client
    rec = Recorder()
    t = topic(driver, "gone")
    client.add_subscription(t, 1, lambda _t, _p: None)
    client.add_observer(rec)
    client.remove_observer(rec)
    await driver.connect()
    await driver.until(lambda: client.is_subscribed(t), "the SUBACK")
    assert rec.calls == []
    client.remove_subscription(t)
    assert not client.is_subscribed(t)


# --- the fault wrapper's own switches, on both clients ----------------------------------------------


@pytest.mark.parametrize("driver", ["fake+faulty", pytest.param("real+faulty", marks=pytest.mark.live)],
                         indirect=True)
@pytest_twisted.ensureDeferred
async def test_wrapper_holds_and_releases_publishes(driver: Any) -> None:
    """hold_outgoing keeps publishes (their Deferreds unfired) until released, then they arrive in order."""
    client = driver.client
    got: list[bytes] = []
    t = topic(driver, "held")
    client.add_subscription(t, 1, lambda _t, p: got.append(p))
    await driver.connect()
    await driver.until(lambda: client.is_subscribed(t), "the SUBACK")
    client.hold_outgoing = True
    ds = [client.publish(t, b"a", 1), client.publish(t, b"b", 1)]
    assert len(client.held_outgoing) == 2 and not any(d.called for d in ds)
    assert client.release_outgoing(1) == 1
    await driver.until(lambda: got == [b"a"], "the first released frame")
    client.hold_outgoing = False
    assert client.release_outgoing() == 1
    await driver.until(lambda: got == [b"a", b"b"] and all(d.called for d in ds), "the second released frame")


@pytest.mark.parametrize("driver", ["fake+faulty", pytest.param("real+faulty", marks=pytest.mark.live)],
                         indirect=True)
@pytest_twisted.ensureDeferred
async def test_wrapper_holds_subacks_and_drops_incoming(driver: Any) -> None:
    """hold_subacks keeps SUBACK notifications (is_subscribed says no) until released; drop_incoming counts and
    drops delivered frames."""
    client = driver.client
    rec = Recorder()
    got: list[bytes] = []
    t = topic(driver, "suback")
    client.add_observer(rec)
    client.hold_subacks = True
    client.add_subscription(t, 1, lambda _t, p: got.append(p))
    await driver.connect()
    await driver.until(lambda: client.held_subacks, "the held SUBACK")
    assert rec.kinds("subscribed") == [] and not client.is_subscribed(t) and not client.is_fully_subscribed
    assert client.release_subacks() == 1
    assert rec.kinds("subscribed") == [("subscribed", client, t, 1)] and client.is_subscribed(t)
    client.drop_incoming = True
    client.publish(t, b"dropped", 1)
    await driver.until(lambda: client.dropped == 1, "the dropped frame")
    client.drop_incoming = False
    client.publish(t, b"kept", 1)
    await driver.until(lambda: got == [b"kept"], "the frame after drop_incoming")


@pytest.mark.parametrize("driver", ["fake+faulty"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_wrapper_holds_only_acks_with_hold_acks(driver: Any) -> None:
    """hold_acks keeps gridworks-ack publishes only; released n at a time; discard_held loses the rest."""
    client = driver.client
    await driver.connect()
    client.hold_acks = True
    ack_topic = "gw/d1-a/to/b/gridworks-ack"
    acks = [client.publish(ack_topic, b"%d" % n, 1) for n in range(3)]
    ping = client.publish("gw/d1-a/to/b/gridworks-ping", b"p", 1)
    assert ping.called and [p.payload for p in driver.inner.published] == [b"p"]
    assert client.held_counts() == {"acks": 3, "subacks": 0, "outgoing": 0}
    assert client.release_acks(1) == 1 and acks[0].called
    assert [p.payload for p in driver.inner.published] == [b"p", b"0"]
    assert client.discard_held() == 2 and client.release_acks() == 0
    assert not acks[1].called and not acks[2].called
