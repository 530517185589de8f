"""The MQTT 3.1.1 frames the hot path encodes and decodes itself: plain PUBLISH (QoS 0 or 1) and PUBACK.

Pure functions over bytes, no I/O and no session state.  :class:`~gwproactor.mqtt._paho.PahoProtocol`
uses them for the packets of every event and every ack, and leaves everything else (CONNECT, SUBSCRIBE,
keepalive, the PUBACKs of its own QoS 1 publishes, any frame these functions do not accept) to paho,
which still runs the session.  ``tests/test_mqtt_frames.py`` checks that the bytes are the same as
paho's for the same packets.

Layout (MQTT 3.1.1, sections 2.2 and 3.3): a fixed header of one byte (packet type and flags) and a
remaining length of one to four bytes (seven bits each, least significant first, high bit = more), then
for PUBLISH a two-byte topic length, the UTF-8 topic, a two-byte packet identifier when QoS > 0, and the
payload (the rest of the frame).
"""

from __future__ import annotations

__all__ = [
    "MAX_REMAINING_LENGTH",
    "encode_puback",
    "encode_publish",
    "encode_remaining_length",
    "frame_bounds",
    "scan_publishes",
]

MAX_REMAINING_LENGTH = 268_435_455
"""The largest remaining length four bytes can carry (MQTT 3.1.1 section 2.2.3)."""

_PUBLISH_QOS0 = 0x30
_PUBLISH_QOS1 = 0x32
_PUBLISH_QOS0_RETAIN = 0x31
_PUBLISH_QOS1_RETAIN = 0x33
_PUBACK = 0x40

# One-byte remaining lengths (frames under 128 bytes of body), made once.
_SHORT_LENGTHS = [bytes((n,)) for n in range(128)]


def encode_remaining_length(length: int) -> bytes:
    """The remaining-length bytes for a frame body of ``length`` bytes.

    :raises ValueError: ``length`` is negative or above :data:`MAX_REMAINING_LENGTH`.
    """
    if 0 <= length < 128:
        return _SHORT_LENGTHS[length]
    if length < 0 or length > MAX_REMAINING_LENGTH:
        raise ValueError(f"an MQTT frame body must be 0..{MAX_REMAINING_LENGTH} bytes, got {length}")
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_publish(topic: bytes, payload: bytes | bytearray, qos: int = 0, mid: int = 0) -> bytes:
    """A PUBLISH frame: DUP and RETAIN off, ``mid`` (the packet identifier) only when ``qos`` is 1.

    :param topic: the topic name, already UTF-8 encoded and checked (no wildcards, at most 65535 bytes).
    :raises ValueError: the frame would exceed :data:`MAX_REMAINING_LENGTH`.
    """
    topic_length = len(topic)
    if qos:
        length = 4 + topic_length + len(payload)
        return b"".join((
            b"\x32", encode_remaining_length(length),
            bytes((topic_length >> 8, topic_length & 0xFF)), topic,
            bytes((mid >> 8, mid & 0xFF)), payload,
        ))
    length = 2 + topic_length + len(payload)
    return b"".join((
        b"\x30", encode_remaining_length(length), bytes((topic_length >> 8, topic_length & 0xFF)), topic, payload,
    ))


def encode_puback(mid: int) -> bytes:
    """The PUBACK frame acknowledging the QoS 1 PUBLISH with packet identifier ``mid``."""
    return bytes((_PUBACK, 2, mid >> 8, mid & 0xFF))


def frame_bounds(data: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """Where the frame whose first byte is ``data[start]`` has its body: ``(body_start, end)``.

    ``end`` is past ``len(data)`` when the body has not all arrived.  Returns None when the fixed header
    itself is not complete yet, or is malformed (a remaining length of more than four bytes).
    """
    available = len(data)
    position = start + 1
    length = 0
    shift = 0
    while position < available:
        byte = data[position]
        position += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return position, position + length
        shift += 7
        if shift == 28:
            return None  # a fifth length byte: malformed
    return None


def scan_publishes(
    data: bytes | bytearray, start: int
) -> tuple[int, bool, list[tuple[str, str, bytes]], bytes, int]:
    """Decode the plain QoS 0 and QoS 1 PUBLISH frames (DUP off) at the front of ``data[start:]``.

    Stops at the first frame that is anything else, or that is not complete.  Returns ``(end, waiting,
    messages, acks, bad_topics)``: ``end`` is where the first frame not decoded starts (``start`` when
    none was); ``waiting`` is True when that frame is such a PUBLISH whose end has not arrived (read it
    when more data comes) and False when something else must read it; ``messages`` holds
    ``("message", topic, payload)`` for each PUBLISH decoded; ``acks`` the PUBACK frames owed for the QoS 1
    ones, in order; ``bad_topics`` the count of PUBLISH frames dropped because their topic is not UTF-8
    (their PUBACK is still owed, as paho sends it).  A frame whose topic length does not fit its body
    (or that has an empty topic) is left to the caller (``waiting`` False), as is a fixed header not
    complete yet.
    """
    messages: list[tuple[str, str, bytes]] = []
    acks: list[bytes] = []
    bad_topics = 0
    available = len(data)
    position = start
    waiting = False
    while position < available:
        first = data[position]
        if first != _PUBLISH_QOS0 and first != _PUBLISH_QOS1 and first != _PUBLISH_QOS0_RETAIN \
                and first != _PUBLISH_QOS1_RETAIN:
            break
        # The fixed header, inline for the common one-byte length (frames under 128 bytes of body).
        if position + 1 < available and data[position + 1] < 0x80:
            body = position + 2
            end = body + data[position + 1]
        else:
            bounds = frame_bounds(data, position)
            if bounds is None:
                break
            body, end = bounds
        if end > available:
            waiting = True
            break
        topic_end = body + 2 + ((data[body] << 8) | data[body + 1]) if body + 2 <= end else end + 1
        qos1 = first & 0x02
        payload_start = topic_end + 2 if qos1 else topic_end
        if payload_start > end or topic_end == body + 2:
            break  # malformed (the topic does not fit, or is empty): paho reports it
        if qos1:
            acks.append(bytes((_PUBACK, 2, data[topic_end], data[topic_end + 1])))
        try:
            topic = data[body + 2 : topic_end].decode("utf-8")
        except UnicodeDecodeError:
            bad_topics += 1
        else:
            messages.append(("message", topic, bytes(data[payload_start:end])))
        position = end
    return position, waiting, messages, b"".join(acks) if acks else b"", bad_topics
