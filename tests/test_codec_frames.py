"""The codec against real gridworks-proactor 4.x frames (``tests/data``, copied from ``shared/wire``)."""

from __future__ import annotations

import json
from pathlib import Path

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwproactor.message import (
    COMM_EVENT_TYPES,
    Ack,
    AckFrameEncoder,
    Codec,
    DBGEvent,
    Event,
    Ping,
    StartupEvent,
    dashed,
    make_ack,
    parse_topic,
    subscription_filter,
    topic_for,
)

FRAMES_PATH = Path(__file__).parent / "data" / "gridworks-4x-frames.jsonl"
FRAMES = [json.loads(line) for line in FRAMES_PATH.read_text().splitlines() if line.strip()]
BACKENDS = ["json", "orjson"]


def _id(frame: dict) -> str:
    return frame["topic"]


@pytest.fixture(params=BACKENDS)
def codec(request: pytest.FixtureRequest) -> Codec:
    """A codec for each JSON backend."""
    return Codec(backend=request.param)


def test_frames_present() -> None:
    """The captured frame file has the ten frames the tests rely on."""
    assert len(FRAMES) == 10


@pytest.mark.parametrize("frame", FRAMES, ids=_id)
def test_frame_round_trip_parsed_equal(codec: Codec, frame: dict) -> None:
    """Decoding a 4.x frame and re-encoding it gives the same JSON object."""
    message = codec.decode(json.dumps(frame["payload"]).encode())
    assert json.loads(codec.encode(message)) == frame["payload"]


@pytest.mark.parametrize("frame", FRAMES, ids=_id)
def test_frame_round_trip_bytes_equal(codec: Codec, frame: dict) -> None:
    """Our compact encoding is byte-identical to the frame dumped compactly (same key order)."""
    raw = json.dumps(frame["payload"], separators=(",", ":")).encode("utf-8")
    assert codec.encode(codec.decode(raw)) == raw


@pytest.mark.parametrize("frame", FRAMES, ids=_id)
def test_frame_decodes_to_known_types(codec: Codec, frame: dict) -> None:
    """Every captured frame decodes to a specific framework class with no unknown fields."""
    message = codec.decode(json.dumps(frame["payload"]))
    payload = message.payload
    assert type(payload) is codec.registry.get(frame["payload"]["Payload"]["TypeName"])
    assert payload.extra == {}
    assert message.header.extra == {}
    assert message.extra == {}
    assert message.message_type == payload.type_name
    if isinstance(payload, (Event, Ping)):
        assert message.ack_required is True
        assert message.message_id == payload.message_id
    if isinstance(payload, Ack):
        assert message.ack_required is False
        assert message.message_id == ""


@pytest.mark.parametrize("frame", FRAMES, ids=_id)
def test_frame_topic_helpers(codec: Codec, frame: dict) -> None:
    """topic_for rebuilds each frame's topic and parse_topic splits it into the dashed header names."""
    message = codec.decode(json.dumps(frame["payload"]))
    assert topic_for(message.src, message.dst, message.message_type) == frame["topic"]
    assert parse_topic(frame["topic"]) == (dashed(message.src), dashed(message.dst), dashed(message.message_type))
    prefix = subscription_filter(message.src, message.dst)[:-1]
    assert frame["topic"].startswith(prefix)


def test_frame_field_values(codec: Codec) -> None:
    """Field values of the captured frames land in the right attributes."""
    by_type = {}
    for frame in FRAMES:
        message = codec.decode(json.dumps(frame["payload"]))
        by_type.setdefault(message.message_type, message)
    dbg = by_type["gridworks.event.proactor.dbg"].payload
    assert isinstance(dbg, DBGEvent)
    assert dbg.command["TypeName"] == "gridworks.proactor.dbg"
    assert dbg.command["Levels"]["io_loop"] == 20
    assert (dbg.path, dbg.count, dbg.msg) == ("", 0, "bench event 9302 / 10000")
    startup = by_type["gridworks.event.startup"].payload
    assert isinstance(startup, StartupEvent)
    assert startup.time_created_ms == 1795731199964
    assert startup.src == "d1.isone.ct.newhaven.orange1.scada"
    ack = by_type["gridworks.ack"].payload
    assert ack == Ack("b23ea8bb-065b-4f54-ac0f-b4260f3ce871")
    for type_name, cls in COMM_EVENT_TYPES.items():
        if type_name in by_type:
            payload = by_type[type_name].payload
            assert type(payload) is cls
            assert (payload.peer_name, payload.version) == ("parent", "001")


def test_backends_agree_on_frames() -> None:
    """The stdlib and orjson backends encode every frame to the same bytes."""
    stdlib, fast = Codec(backend="json"), Codec(backend="orjson")
    for frame in FRAMES:
        message = stdlib.decode(json.dumps(frame["payload"]))
        assert stdlib.encode(message) == fast.encode(message)
        assert fast.decode(fast.encode(message)) == message


ACKED_IDS = [
    "0f8c1f7e-1b1e-4c1e-9d7b-3a2c5d6e7f80",
    "",
    "a b",
    'quote"inside',
    "back\\slash",
    "new\nline",
    "tab\t",
    "café",
    "\u2603",
    "gwproactor-ack-marker-7f3a",
]


@pytest.mark.parametrize("acked_id", ACKED_IDS)
def test_ack_frame_encoder_writes_the_codecs_bytes(codec: Codec, acked_id: str) -> None:
    """AckFrameEncoder's template gives exactly the codec's bytes for every id (escaped ones go through the codec)."""
    encoder = AckFrameEncoder(codec, "d1.isone.ct.newhaven.orange1.scada", "a")
    assert encoder.encode(acked_id) == codec.encode(make_ack("d1.isone.ct.newhaven.orange1.scada", "a", acked_id))
    decoded = codec.decode(encoder.encode(acked_id))
    assert decoded.payload == Ack(acked_id) and decoded.header == encoder.header


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_ack_frame_encoder_matches_the_codec_for_any_id(acked_id: str) -> None:
    """Property: for any text id, the template and the codec agree byte for byte."""
    codec = Codec()
    encoder = AckFrameEncoder(codec, "d1.isone.ct.newhaven.orange1", "s")
    assert encoder.encode(acked_id) == codec.encode(make_ack("d1.isone.ct.newhaven.orange1", "s", acked_id))


def test_ack_frame_encoder_follows_a_codec_that_writes_acks_differently() -> None:
    """The template is the codec's own encoding: a codec with an extra envelope field gets it in every ack."""

    class Tagged(Codec):
        def message_to_dict(self, message: Any) -> dict:
            out = super().message_to_dict(message)
            out["Site"] = "newhaven"
            return out

    codec = Tagged()
    encoder = AckFrameEncoder(codec, "p", "s")
    frame = encoder.encode("0f8c1f7e")
    assert frame == codec.encode(make_ack("p", "s", "0f8c1f7e"))
    assert json.loads(frame)["Site"] == "newhaven"
