"""The hot path's own MQTT frames (gwproactor/mqtt/_frames.py): the same bytes as paho's, and paho keeps the rest."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet as paho_packet
from paho.mqtt import client as paho_client
from paho.mqtt.enums import CallbackAPIVersion

from gwproactor.mqtt import _frames
from gwproactor.mqtt._paho import PahoProtocol
from tests.test_mqtt_adapter import Harness, publish_frame, suback_frame

# Frame bodies around the remaining-length boundaries (one to four length bytes).
BOUNDARIES = [0, 1, 126, 127, 128, 129, 16383, 16384, 16385, 2097151, 2097152]


class _Capture:
    """The socket a bare paho client writes to: keeps the bytes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def send(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def close(self) -> None:
        pass


def _bare_paho() -> tuple[paho_client.Client, _Capture]:
    client = paho_client.Client(CallbackAPIVersion.VERSION2, protocol=paho_client.MQTTv311)
    sock = _Capture()
    client._sock = sock
    return client, sock


def paho_publish(topic: str, payload: bytes, qos: int, mid: int = 1) -> bytes:
    """The bytes paho 2.x writes for ``publish(topic, payload, qos)`` when its next mid is ``mid``."""
    client, sock = _bare_paho()
    client._last_mid = mid - 1
    info = client.publish(topic, payload, qos)
    assert info.mid == mid
    return bytes(sock.data)


def paho_puback(mid: int) -> bytes:
    client, sock = _bare_paho()
    client._send_puback(mid)
    return bytes(sock.data)


def payload_for(topic: str, qos: int, body: int) -> bytes:
    """A payload that makes the PUBLISH body exactly ``body`` bytes (or None when the topic alone is longer)."""
    size = body - 2 - len(topic.encode()) - (2 if qos else 0)
    return (bytes(range(251)) * (size // 251 + 1))[:size] if size >= 0 else None


_TOPICS = ["t", "gw/d1.bench.child/to/p/gridworks.event.demo.reading", "ü/€/" + "x" * 300]


@pytest.mark.parametrize(("topic", "body", "qos"), [
    (topic, body, qos) for topic in _TOPICS for body in BOUNDARIES for qos in (0, 1)
    if payload_for(topic, qos, body) is not None
])
def test_publish_bytes_identical_to_paho(topic: str, body: int, qos: int) -> None:
    """encode_publish writes paho's bytes for the same PUBLISH, across the remaining-length boundaries."""
    payload = payload_for(topic, qos, body)
    mid = 1 + (body % 65535)
    ours = _frames.encode_publish(topic.encode(), payload, qos, mid)
    assert ours == paho_publish(topic, payload, qos, mid)
    assert _frames.frame_bounds(ours, 0) == (len(ours) - body, len(ours))


@pytest.mark.parametrize("mid", [1, 2, 255, 256, 4660, 65535])
def test_puback_bytes_identical_to_paho(mid: int) -> None:
    """encode_puback writes paho's PUBACK."""
    assert _frames.encode_puback(mid) == paho_puback(mid)


def test_remaining_length_boundaries_and_limit() -> None:
    """Remaining lengths take 1..4 bytes at MQTT's boundaries; above 268,435,455 is refused."""
    sizes = {0: 1, 127: 1, 128: 2, 16383: 2, 16384: 3, 2097151: 3, 2097152: 4, _frames.MAX_REMAINING_LENGTH: 4}
    for length, width in sizes.items():
        encoded = _frames.encode_remaining_length(length)
        assert len(encoded) == width
        assert _frames.frame_bounds(b"\x30" + encoded, 0) == (1 + width, 1 + width + length)
    with pytest.raises(ValueError):
        _frames.encode_remaining_length(_frames.MAX_REMAINING_LENGTH + 1)
    with pytest.raises(ValueError):
        _frames.encode_remaining_length(-1)


def test_frame_bounds_incomplete_or_malformed_header() -> None:
    """frame_bounds is None for a header still arriving or a fifth length byte."""
    assert _frames.frame_bounds(b"\x30", 0) is None
    assert _frames.frame_bounds(b"\x30\x80\x80", 0) is None
    assert _frames.frame_bounds(b"\x30\xff\xff\xff\xff\x01", 0) is None
    assert _frames.frame_bounds(b"xx\x30\x05", 2) == (4, 9)


def _paho_decoded(frame: bytes) -> tuple[str, bytes, int, int]:
    body_start, end = _frames.frame_bounds(frame, 0)
    decoded = paho_packet.decode_publish(frame[0], frame[body_start:end], paho_client.MQTTv311)
    return decoded.topic.decode(), bytes(decoded.payload), decoded.qos, decoded.mid


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("body", [2 + 1 + 0, 127, 128, 16383, 16384])
def test_scan_decodes_as_paho_does(body: int, qos: int) -> None:
    """scan_publishes reads paho-encoded PUBLISH frames as paho's decoder does, and owes paho's PUBACK."""
    topic = "a/b"
    payload = payload_for(topic, qos, body)
    frame = paho_publish(topic, payload, qos, mid=300)
    end, waiting, messages, acks, bad = _frames.scan_publishes(frame, 0)
    assert (end, waiting, bad) == (len(frame), False, 0)
    got_topic, got_payload, _, mid = _paho_decoded(frame)
    assert messages == [("message", got_topic, got_payload)]
    assert acks == (paho_puback(mid) if qos else b"")


def test_scan_stops_at_other_frames() -> None:
    """scan_publishes stops at a SUBACK, a DUP or empty-topic PUBLISH or a topic that overruns the body."""
    first = publish_frame("a", b"1")
    for other in (suback_frame(1, 0), b"\x3a\x06\x00\x01a\x00\x01x", b"\x30\x03\x00\x00x", b"\x30\x03\x00\x09a",
                  b"\xd0\x00", b"\x40\x02\x00\x01"):
        end, waiting, messages, acks, _bad = _frames.scan_publishes(first + other + publish_frame("b", b"2"), 0)
        assert (end, waiting, messages, acks) == (len(first), False, [("message", "a", b"1")], b"")


def test_scan_waits_for_the_rest_of_a_publish() -> None:
    """A PUBLISH cut anywhere after its fixed header makes scan_publishes wait; a cut header goes to paho."""
    frame = publish_frame("a/b", b"x" * 300)
    for cut in range(1, len(frame)):
        end, waiting, messages, _, _ = _frames.scan_publishes(frame[:cut], 0)
        assert end == 0 and messages == []
        assert waiting is (cut >= 3)  # 300 + 5 bytes of body: two length bytes


def test_scan_counts_topics_that_are_not_utf8_and_still_acks() -> None:
    """A PUBLISH whose topic is not UTF-8 is dropped, counted, and (QoS 1) still acked, as paho does."""
    frame = b"\x32\x07\x00\x02\xff\xfe\x12\x34z"
    _end, waiting, messages, acks, bad = _frames.scan_publishes(frame + publish_frame("ok", b"y"), 0)
    assert messages == [("message", "ok", b"y")] and bad == 1 and acks == b"\x40\x02\x12\x34"
    assert not waiting


_topics = st.text(
    alphabet=st.characters(blacklist_characters="+#\x00", blacklist_categories=("Cs",)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(topic=_topics, payload=st.binary(max_size=600), qos=st.integers(0, 1), mid=st.integers(1, 65535),
       cut=st.integers(0, 2000))
def test_property_paho_bytes_and_round_trip(topic: str, payload: bytes, qos: int, mid: int, cut: int) -> None:
    """For any topic and payload: paho's bytes; two frames decode back; a stream cut anywhere yields its whole frames."""
    frame = _frames.encode_publish(topic.encode(), payload, qos, mid)
    assert frame == paho_publish(topic, payload, qos, mid)
    stream = frame + frame
    cut = min(cut, len(stream))
    end, _waiting, messages, acks, bad = _frames.scan_publishes(stream[:cut], 0)
    whole = cut // len(frame)
    assert end == whole * len(frame) and bad == 0
    assert messages == [("message", topic, payload)] * whole
    assert acks == _frames.encode_puback(mid) * whole if qos else acks == b""


# -- the adapter: the fast path changes no byte and no delivery ---------------------------------------


def _run_session(monkeypatch, fast: bool, script) -> tuple[bytes, list]:
    monkeypatch.setattr(PahoProtocol, "fast_path", fast)
    h = Harness()
    got: list = []
    h.conn.add_subscription("in/#", 1, lambda t, p: got.append((t, p)))
    h.connect()
    h.transport.clear()
    script(h)
    return h.transport.value(), got


def _mixed_traffic(h: Harness) -> None:
    for i in range(40):
        h.conn.publish(f"out/{i % 3}", b"p" * (i * 13), i % 2).addErrback(lambda f: None)
    h.conn.publish("out/big", b"B" * 20000, 0)
    frames = [publish_frame(f"in/{i}", b"q" * (i * 37), qos=i % 2, mid=100 + i) for i in range(30)]
    frames.insert(7, suback_frame(9999, 0))  # unknown mid: paho reads it, nothing happens
    frames.insert(12, bytes([0x31]) + publish_frame("in/retained", b"r")[1:])
    frames.insert(15, b"\xd0\x00")  # a PINGRESP
    stream = b"".join(frames)
    for size in (1, 3, 7, 64, 1000):  # delivered in chunks of every size, frames cut anywhere
        for i in range(0, len(stream), size):
            h.proto.dataReceived(stream[i : i + size])
        for i in range(20):
            h.conn.publish("out/after", bytes([i]), 0)


def test_fast_path_bytes_and_deliveries_identical_to_paho(monkeypatch) -> None:
    """Mixed QoS 0/1 traffic both ways, cut into chunks: the same bytes written and messages delivered as paho alone."""
    paho_bytes, paho_got = _run_session(monkeypatch, False, _mixed_traffic)
    fast_bytes, fast_got = _run_session(monkeypatch, True, _mixed_traffic)
    assert len(paho_got) == 5 * 31  # 30 plain + 1 retained, per chunk size
    assert fast_got == paho_got
    assert fast_bytes == paho_bytes


def test_fast_path_only_between_paho_packets(monkeypatch) -> None:
    """A frame paho has begun reading (a SUBACK cut in two) is finished by paho; the PUBLISH after it is ours again."""
    h = Harness()
    got = []
    h.conn.add_subscription("in/#", 0, lambda t, p: got.append(p))
    h.connect()
    paho = h.session.paho_client
    calls = []
    real = paho.loop_read
    monkeypatch.setattr(paho, "loop_read", lambda *a: calls.append(1) or real(*a))
    h.proto.dataReceived(publish_frame("in/a", b"1"))
    assert calls == [] and got == [b"1"]
    frame = suback_frame(4242, 0, 0, 0, 0)
    h.proto.dataReceived(frame[:3])
    assert paho._in_packet["command"] == 0x90
    h.proto.dataReceived(frame[3:] + publish_frame("in/b", b"2"))
    assert got == [b"1", b"2"] and paho._in_packet["command"] == 0
    h.proto.dataReceived(publish_frame("in/c", b"3"))
    assert got == [b"1", b"2", b"3"] and len(calls) == 2


def test_qos1_publish_and_stop_announcement_stay_with_paho(monkeypatch) -> None:
    """QoS 1 publishes go through paho's publish (it tracks their PUBACK); QoS 0 ones do not."""
    h = Harness()
    h.connect()
    paho = h.session.paho_client
    calls = []
    real = paho.publish
    monkeypatch.setattr(paho, "publish", lambda *a: calls.append(a[2]) or real(*a))
    h.conn.publish("a", b"0", 0)
    d = h.conn.publish("a", b"1", 1)
    assert calls == [1]
    mid = struct.unpack("!H", h.take()[1][1][3:5])[0]
    h.proto.dataReceived(b"\x40\x02" + struct.pack("!H", mid))
    assert d.called


def test_bytes_counters_count_fast_path_frames() -> None:
    """bytes_in / bytes_out count what the fast path reads and writes."""
    h = Harness()
    h.conn.add_subscription("in", 0, lambda t, p: None)
    h.connect()
    before = h.conn.stats()
    h.transport.clear()
    h.conn.publish("a", b"xyz", 0)
    frame = publish_frame("in", b"abc")
    h.proto.dataReceived(frame)
    after = h.conn.stats()
    assert after["bytes_out"] - before["bytes_out"] == len(h.transport.value()) == 8
    assert after["bytes_in"] - before["bytes_in"] == len(frame)
    assert after["messages_in"] - before["messages_in"] == 1


# -- keepalive: paho's bookkeeping sees the frames we write and read ------------------------------------


def _clock_harness(monkeypatch, keepalive: float = 60) -> Harness:
    """A Harness whose paho reads the reactor clock, so that paho's keepalive runs on Clock time."""
    h = Harness(keepalive=keepalive)
    monkeypatch.setattr(paho_client, "time_func", h.reactor.seconds)
    h.conn.add_subscription("in", 0, lambda t, p: None)
    h.connect()
    h.take()
    return h


def _pingreqs(h: Harness) -> int:
    return sum(1 for first, _ in h.take() if first == 0xC0)


def test_keepalive_no_pingreq_while_traffic_flows(monkeypatch) -> None:
    """Publishing and receiving through the fast path every 10 s for 10 min: paho sends no PINGREQ, nothing drops."""
    h = _clock_harness(monkeypatch)
    for _ in range(60):
        h.reactor.advance(10)
        h.conn.publish("out", b"event", 0)
        h.proto.dataReceived(publish_frame("in", b"ack"))
        assert _pingreqs(h) == 0
    assert h.conn.is_connected and not h.transport.disconnecting


def test_keepalive_pingreq_when_only_receiving(monkeypatch) -> None:
    """Receiving through the fast path but sending nothing: paho sends PINGREQ once keepalive passes since its last write."""
    h = _clock_harness(monkeypatch)
    h.conn.publish("out", b"event", 0)
    sent_at = h.reactor.seconds()
    h.take()
    while h.reactor.seconds() - sent_at < 60:
        h.reactor.advance(5)
        h.proto.dataReceived(publish_frame("in", b"x"))
        if h.reactor.seconds() - sent_at < 60:
            assert _pingreqs(h) == 0
    h.reactor.advance(1)
    assert _pingreqs(h) == 1
    h.proto.dataReceived(b"\xd0\x00")
    assert h.session.paho_client._ping_t == 0


def test_keepalive_pingreq_when_idle_and_drop_without_pingresp(monkeypatch) -> None:
    """After fast-path traffic stops: PINGREQ within keepalive; without PINGRESP the connection is dropped."""
    h = _clock_harness(monkeypatch)
    h.conn.publish("out", b"event", 0)
    h.proto.dataReceived(publish_frame("in", b"ack"))
    h.take()
    pings = 0
    for _ in range(60):
        h.reactor.advance(1)
        pings += _pingreqs(h)
    assert pings >= 1 and h.session.paho_client._ping_t > 0  # paho's own PINGREQ among them
    for _ in range(61):
        h.reactor.advance(1)
        if h.transport.disconnecting:
            break
    assert h.transport.disconnecting
    h.lose()
    assert h.observer.calls[-1][0] == "disconnected"


def test_topic_matches_remembered_until_filters_change() -> None:
    """A remembered match follows every filter change, and the memory is bounded."""
    from gwproactor.mqtt._paho import TopicFilters

    filters = TopicFilters()
    filters.set("a/#", 1)
    assert filters.match("a/b") == (1,)
    filters.set("a/+", 2)
    assert sorted(filters.match("a/b")) == [1, 2]
    filters.remove("a/#")
    assert filters.match("a/b") == (2,)
    filters.set("a/+", 3)
    assert filters.match("a/b") == (3,) and filters.match("b") == ()
    for i in range(TopicFilters._MATCHES_KEPT + 10):
        filters.match(f"x/{i}")
    assert len(filters._matches) <= TopicFilters._MATCHES_KEPT
    assert filters.match("a/b") == (3,)
