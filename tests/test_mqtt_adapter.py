"""The paho adapter and BrokerConnection on memory transports, fed hand-built MQTT 3.1.1 frames."""

from __future__ import annotations

import pathlib
import random
import struct

import pytest
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

import gwproactor
from gwproactor.errors import ConfigError, NotConnectedError, PublishFailed
from gwproactor.interfaces import IBrokerObserver, IMQTTClient
from gwproactor.mqtt import Backoff, BrokerConnection, InvalidTopic, TLSOptions
from gwproactor.mqtt._paho import PahoProtocol

CONNACK_OK = b"\x20\x02\x00\x00"


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_frame(topic: str, payload: bytes, qos: int = 0, mid: int = 1) -> bytes:
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + (struct.pack("!H", mid) if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + _remaining(len(body)) + body


def suback_frame(mid: int, *codes: int) -> bytes:
    return b"\x90" + _remaining(2 + len(codes)) + struct.pack("!H", mid) + bytes(codes)


def puback_frame(mid: int) -> bytes:
    return b"\x40\x02" + struct.pack("!H", mid)


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split bytes written by the client into (first byte, body) frames."""
    frames = []
    i = 0
    while i < len(data):
        first = data[i]
        i += 1
        mult, length = 1, 0
        while True:
            b = data[i]
            i += 1
            length += (b & 127) * mult
            mult *= 128
            if not b & 128:
                break
        frames.append((first, data[i : i + length]))
        i += length
    return frames


@implementer(IBrokerObserver)
class RecordingObserver:
    """Records every IBrokerObserver call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def broker_connected(self, client):
        self.calls.append(("connected",))

    def broker_disconnected(self, client, reason):
        self.calls.append(("disconnected", reason))

    def broker_subscribed(self, client, topic_filter, granted_qos):
        self.calls.append(("subscribed", topic_filter, granted_qos))

    def broker_subscribe_failed(self, client, topic_filter, reason):
        self.calls.append(("subscribe_failed", topic_filter, reason))


class Harness:
    """A BrokerConnection on a MemoryReactorClock whose connections are StringTransports."""

    def __init__(self, **kwargs) -> None:
        self.reactor = MemoryReactorClock()
        kwargs.setdefault("backoff", Backoff(initial=0.5, cap=4.0))
        self.conn = BrokerConnection(
            "b", self.reactor, endpoint="tcp:host=127.0.0.1:port=1883", rng=random.Random(0),
            client_id="test-client", **kwargs
        )
        self.observer = RecordingObserver()
        self.conn.add_observer(self.observer)
        self.conn.startService()
        self.proto = None
        self.transport = None

    def accept(self) -> StringTransport:
        factory = self.reactor.tcpClients[-1][2]
        self.proto = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        return self.transport

    @property
    def session(self) -> PahoProtocol:
        return self.conn._session

    def take(self) -> list[tuple[int, bytes]]:
        frames = parse_frames(self.transport.value())
        self.transport.clear()
        return frames

    def connect(self) -> None:
        self.accept()
        self.take()
        self.proto.dataReceived(CONNACK_OK)

    def lose(self, exc=ConnectionLost) -> None:
        self.proto.connectionLost(Failure(exc()))

    def next_connect(self, within: float = 5.0) -> bool:
        """Advance the clock until the next connect attempt starts (True) or ``within`` seconds passed (False)."""
        attempts = len(self.reactor.tcpClients)
        for _ in range(int(within / 0.01)):
            self.reactor.advance(0.01)
            if len(self.reactor.tcpClients) > attempts:
                return True
        return False


def test_verify_interfaces() -> None:
    """BrokerConnection provides IMQTTClient and the test observer provides IBrokerObserver."""
    h = Harness()
    assert verifyObject(IMQTTClient, h.conn)
    assert verifyObject(IBrokerObserver, h.observer)


def test_connect_goes_out_and_connack_connects() -> None:
    """connectionMade sends CONNECT (MQTT 3.1.1, clean session, keepalive, client id); CONNACK 0 → connected."""
    h = Harness(keepalive=7)
    h.accept()
    frames = h.take()
    assert len(frames) == 1 and frames[0][0] == 0x10
    body = frames[0][1]
    assert body[:7] == b"\x00\x04MQTT\x04"
    assert body[7] & 0x02  # clean session
    assert struct.unpack("!H", body[8:10])[0] == 7
    assert b"test-client" in body
    d = h.conn.when_connected()
    assert not d.called and not h.conn.is_connected
    h.proto.dataReceived(CONNACK_OK)
    assert h.conn.is_connected and d.result is h.conn
    assert h.observer.calls == [("connected",)]
    assert h.conn.is_fully_subscribed  # no filters registered
    assert h.conn.stats()["connects"] == 1


def test_no_socketpair_and_no_paho_thread() -> None:
    """The adapter never creates paho's wake-up socketpair nor its network thread."""
    h = Harness()
    h.connect()
    client = h.session.paho_client
    assert client._sockpairR is None and client._sockpairW is None
    assert client._thread is None


def test_username_password_in_connect() -> None:
    """username / password go into CONNECT."""
    h = Harness(username="alice", password="s3cret")
    h.accept()
    body = h.take()[0][1]
    assert body[7] & 0xC0 == 0xC0
    assert b"alice" in body and b"s3cret" in body


def test_subscriptions_sent_on_connack_and_subacks_tracked() -> None:
    """Every filter is subscribed after CONNACK; SUBACKs make it fully subscribed and tell observers."""
    h = Harness()
    h.conn.add_subscription("a/#", 1, lambda t, p: None)
    h.conn.add_subscription("b/+/c", 0, lambda t, p: None)
    ws = h.conn.when_subscribed()
    h.connect()
    subs = h.take()
    assert [f[0] for f in subs] == [0x82, 0x82]
    mids = [struct.unpack("!H", f[1][:2])[0] for f in subs]
    assert b"a/#" in subs[0][1] and b"b/+/c" in subs[1][1]
    assert not h.conn.is_fully_subscribed and not ws.called
    h.proto.dataReceived(suback_frame(mids[0], 1))
    assert h.conn.is_subscribed("a/#") and not h.conn.is_fully_subscribed
    h.proto.dataReceived(suback_frame(mids[1], 0))
    assert h.conn.is_fully_subscribed and ws.result is h.conn
    assert ("subscribed", "a/#", 1) in h.observer.calls and ("subscribed", "b/+/c", 0) in h.observer.calls


def test_suback_failure_reported_and_not_fully_subscribed() -> None:
    """SUBACK 0x80 is counted, reported through broker_subscribe_failed, and keeps it not fully subscribed."""
    h = Harness()
    h.conn.add_subscription("denied/#", 1, lambda t, p: None)
    h.connect()
    mid = struct.unpack("!H", h.take()[0][1][:2])[0]
    h.proto.dataReceived(suback_frame(mid, 0x80))
    assert not h.conn.is_fully_subscribed and not h.conn.is_subscribed("denied/#")
    assert h.conn.stats()["suback_failures"] == 1
    failed = [c for c in h.observer.calls if c[0] == "subscribe_failed"]
    assert failed and failed[0][1] == "denied/#" and "0x80" in failed[0][2]


def test_resubscribe_after_reconnect() -> None:
    """After a reconnect and CONNACK every filter is subscribed again."""
    h = Harness()
    h.conn.add_subscription("a/#", 1, lambda t, p: None)
    h.connect()
    mid = struct.unpack("!H", h.take()[0][1][:2])[0]
    h.proto.dataReceived(suback_frame(mid, 1))
    h.lose()
    assert not h.conn.is_subscribed("a/#")
    assert h.observer.calls[-1][0] == "disconnected"
    h.next_connect()
    h.connect()
    frames = h.take()
    assert frames[0][0] == 0x82 and b"a/#" in frames[0][1]
    assert h.conn.stats()["connects"] == 2 and h.conn.stats()["disconnects"] == 1


def test_all_buffered_packets_drained_in_one_data_received() -> None:
    """Many PUBLISH frames in one dataReceived are all delivered (loop_read alone reads one per call)."""
    h = Harness()
    got = []
    h.conn.add_subscription("t/#", 0, lambda t, p: got.append((t, p)))
    h.connect()
    h.take()
    data = b"".join(publish_frame(f"t/{i}", b"x" * i) for i in range(200))
    h.proto.dataReceived(data)
    assert got == [(f"t/{i}", b"x" * i) for i in range(200)]
    assert h.conn.stats()["messages_in"] == 200


def test_partial_packets_across_data_received() -> None:
    """Frames split at every byte boundary are reassembled."""
    h = Harness()
    got = []
    h.conn.add_subscription("t/#", 1, lambda t, p: got.append((t, p)))
    h.connect()
    h.take()
    data = publish_frame("t/a", b"hello" * 40, qos=1, mid=9) + publish_frame("t/b", b"", qos=0)
    for i in range(len(data)):
        h.proto.dataReceived(data[i : i + 1])
    assert got == [("t/a", b"hello" * 40), ("t/b", b"")]
    assert (0x40, b"\x00\x09") in h.take()  # PUBACK for the QoS 1 message


def test_message_matching_two_filters_goes_to_both() -> None:
    """A message matching two filters is delivered to both callbacks."""
    h = Harness()
    a, b, c = [], [], []
    h.conn.add_subscription("x/+/z", 0, lambda t, p: a.append(t))
    h.conn.add_subscription("x/#", 0, lambda t, p: b.append(t))
    h.conn.add_subscription("other", 0, lambda t, p: c.append(t))
    h.connect()
    h.proto.dataReceived(publish_frame("x/y/z", b"1"))
    assert a == ["x/y/z"] and b == ["x/y/z"] and c == []


def test_callback_exception_counted_and_connection_kept() -> None:
    """An exception in on_message is logged, counted, and later messages still arrive."""
    h = Harness()
    got = []

    def bad(topic, payload):
        raise RuntimeError("boom")

    h.conn.add_subscription("t", 0, bad)
    h.conn.add_subscription("#", 0, lambda t, p: got.append(p))
    h.connect()
    h.proto.dataReceived(publish_frame("t", b"1") + publish_frame("t", b"2"))
    assert got == [b"1", b"2"]
    assert h.conn.stats()["callback_errors"] == 2
    assert h.conn.is_connected and not h.transport.disconnecting


def test_publish_qos0_fires_when_written() -> None:
    """QoS 0 publish fires once the PUBLISH is handed to the transport."""
    h = Harness()
    h.connect()
    d = h.conn.publish("a/b", b"payload", 0)
    assert d.called and d.result is None
    frames = h.take()
    assert frames[0][0] == 0x30 and frames[0][1].endswith(b"payload")
    assert h.conn.stats()["messages_out"] == 1


def test_publish_qos1_fires_on_puback() -> None:
    """QoS 1 publish fires on the PUBACK of its mid, not before."""
    h = Harness()
    h.connect()
    d1 = h.conn.publish("a/b", b"one", 1)
    d2 = h.conn.publish("a/b", b"two", 1)
    frames = h.take()
    mids = [struct.unpack("!H", f[1][5:7])[0] for f in frames]
    assert [f[0] for f in frames] == [0x32, 0x32]
    assert not d1.called and not d2.called
    h.proto.dataReceived(puback_frame(mids[1]))
    assert d2.called and not d1.called
    h.proto.dataReceived(puback_frame(mids[0]))
    assert d1.called


def test_paho_on_publish_set_only_while_a_qos1_publish_waits() -> None:
    """QoS 0 publishes need no paho callback; QoS 1 ones (mixed with QoS 0) still complete on their PUBACKs."""
    h = Harness()
    h.connect()
    paho = h.session.paho_client
    assert paho.on_publish is None
    assert h.conn.publish("a/b", b"zero", 0).called
    assert paho.on_publish is None
    d1 = h.conn.publish("a/b", b"one", 1)
    assert paho.on_publish is not None
    assert h.conn.publish("a/b", b"zero again", 0).called
    d2 = h.conn.publish("a/b", b"two", 1)
    mids = [struct.unpack("!H", f[1][5:7])[0] for f in h.take() if f[0] == 0x32]
    h.proto.dataReceived(puback_frame(mids[0]))
    assert d1.called and not d2.called and paho.on_publish is not None
    h.proto.dataReceived(puback_frame(mids[1]))
    assert d2.called and paho.on_publish is None


def test_publish_while_disconnected_fails_fast() -> None:
    """publish before CONNACK errbacks at once with NotConnectedError."""
    h = Harness()
    h.accept()
    d = h.conn.publish("a", b"x", 1)
    assert isinstance(d.result.value, NotConnectedError)
    d.addErrback(lambda f: None)


def test_inflight_qos1_fails_on_drop_and_is_not_retransmitted() -> None:
    """QoS 1 in flight when the connection drops errbacks PublishFailed; the next connection does not resend it."""
    h = Harness()
    h.connect()
    d = h.conn.publish("a", b"x", 1)
    h.take()
    failures = []
    d.addErrback(failures.append)
    h.lose()
    assert failures and isinstance(failures[0].value, PublishFailed)
    h.next_connect()
    h.connect()
    assert h.take() == []  # nothing but the CONNECT (already taken) went out


def test_refused_connack_logged_counted_and_retried() -> None:
    """CONNACK code 5 aborts the connection, counts refused_connacks and retries with backoff."""
    h = Harness()
    h.accept()
    h.proto.dataReceived(b"\x20\x02\x00\x05")
    assert h.transport.disconnecting
    assert not h.conn.is_connected
    h.lose(ConnectionDone)
    stats = h.conn.stats()
    assert stats["refused_connacks"] == 1 and stats["connect_failures"] == 1 and stats["connects"] == 0
    assert h.next_connect()


def test_keepalive_pings_and_drops_silent_connection() -> None:
    """With keepalive 2 s: PINGREQ after 1 s of silence, abort after 2 s; traffic resets the timer."""
    h = Harness(keepalive=2.0)
    h.connect()
    h.take()
    for _ in range(4):
        h.reactor.advance(0.25)
    assert (0xC0, b"") in h.take()
    h.proto.dataReceived(b"\xd0\x00")  # PINGRESP
    for _ in range(7):
        h.reactor.advance(0.25)
    assert not h.transport.disconnecting
    for _ in range(2):
        h.reactor.advance(0.25)
    assert h.transport.disconnecting
    h.lose()
    assert h.observer.calls[-1][0] == "disconnected" and "keepalive" in h.observer.calls[-1][1]


def test_drop_connection_reconnects() -> None:
    """drop_connection aborts the transport and a reconnect is scheduled."""
    h = Harness()
    h.connect()
    h.conn.drop_connection()
    assert h.transport.disconnecting
    h.lose()
    h.next_connect()
    assert len(h.reactor.tcpClients) == 2


def test_stop_sends_disconnect_and_fires_when_closed() -> None:
    """stopService sends DISCONNECT and its Deferred fires once the connection is closed."""
    h = Harness()
    h.connect()
    h.take()
    d = h.conn.stopService()
    assert h.take() == [(0xE0, b"")]
    assert not d.called
    h.lose(ConnectionDone)
    assert d.called
    assert all(not c.active() for c in h.reactor.getDelayedCalls())


def test_remove_subscription_unsubscribes() -> None:
    """remove_subscription sends UNSUBSCRIBE and stops delivery to that callback."""
    h = Harness()
    got = []
    h.conn.add_subscription("t", 0, lambda t, p: got.append(p))
    h.connect()
    h.take()
    h.conn.remove_subscription("t")
    assert h.take()[0][0] == 0xA2
    h.proto.dataReceived(publish_frame("t", b"1"))
    assert got == [] and h.conn.is_fully_subscribed


@pytest.mark.parametrize("bad", ["", "a/#/b", "a+/b", "a/b#"])
def test_bad_topic_filter_raises(bad: str) -> None:
    """Invalid topic filters raise InvalidTopic (a gwproactor MQTTError and a ValueError)."""
    with pytest.raises(InvalidTopic):
        Harness().conn.add_subscription(bad, 0, lambda t, p: None)


def test_bad_publish_topic_fails() -> None:
    """Publishing to a wildcard topic errbacks with InvalidTopic."""
    h = Harness()
    h.connect()
    d = h.conn.publish("a/#", b"x", 0)
    assert isinstance(d.result.value, InvalidTopic)
    d.addErrback(lambda f: None)


def test_bad_config_raises_config_error(tmp_path) -> None:
    """Missing endpoint/host, unreadable certificate files and a bad endpoint string raise ConfigError."""
    with pytest.raises(ConfigError):
        BrokerConnection("b", MemoryReactorClock())
    with pytest.raises(ConfigError):
        BrokerConnection("b", MemoryReactorClock(), endpoint="nonsense-endpoint:x").startService()
    conn = BrokerConnection("b", MemoryReactorClock(), host="localhost", tls=TLSOptions(ca_file=str(tmp_path / "no")))
    with pytest.raises(ConfigError, match="CA file"):
        conn.startService()


def test_malformed_packet_drops_connection_only() -> None:
    """A malformed packet from the broker drops the connection (reconnect follows), nothing raises."""
    h = Harness()
    h.connect()
    h.proto.dataReceived(b"\x20\x03\x00\x00\x00")  # CONNACK of wrong size
    assert h.transport.disconnecting
    h.lose()
    assert h.next_connect()


def test_paho_imported_only_in_adapter() -> None:
    """Only gwproactor/mqtt/_paho.py imports paho."""
    root = pathlib.Path(gwproactor.__file__).parent
    importers = sorted(
        str(p.relative_to(root)) for p in root.rglob("*.py")
        if "import paho" in p.read_text() or "from paho" in p.read_text()
    )
    assert importers == ["mqtt/_paho.py"]


def test_paho_keepalive_drop_reaches_twisted(monkeypatch) -> None:
    """paho's own keepalive (loop_misc on the reactor timer) sends PINGREQ and, without PINGRESP, aborts the transport."""
    from gwproactor.mqtt import _paho

    fake_now = [1000.0]
    monkeypatch.setattr(_paho.paho_client, "time_func", lambda: fake_now[0])
    h = Harness(keepalive=60)
    h.connect()
    h.take()
    fake_now[0] += 60  # paho's clock only: our own reactor-clock check stays quiet
    h.reactor.advance(1.0)
    assert (0xC0, b"") in h.take()
    assert not h.transport.disconnecting
    fake_now[0] += 60
    h.reactor.advance(1.0)
    assert h.transport.disconnecting
    h.lose()
    assert h.observer.calls[-1][0] == "disconnected"
    assert h.conn.stats()["disconnects"] == 1
