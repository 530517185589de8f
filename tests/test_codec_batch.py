"""Batch frames in the codec: exact bytes of a known batch, plain and compressed, and bounded inflation."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from gwproactor.errors import DecodeError, FrameTooLarge
from gwproactor.message import (
    COMPRESSED_BATCH_TYPE,
    BatchFrameEncoder,
    Codec,
    EventBatch,
    Header,
    Message,
    compress_batch_frame,
    inflate_batch_frame,
    topic_for,
)

FRAMES_PATH = Path(__file__).parent / "data" / "gridworks-4x-frames.jsonl"
FRAMES = [json.loads(line) for line in FRAMES_PATH.read_text().splitlines() if line.strip()]
SCADA, ATN_SHORT = "d1.isone.ct.newhaven.orange1.scada", "a"
BATCH_ID = "2f1c9f6e-8d4b-4c1a-9e57-3b0d2a6c5e14"

#: Two captured 4.x events (startup, mqtt connect) as a store keeps them: compact JSON, 4.x key order.
STORED = [json.dumps(FRAMES[i]["payload"]["Payload"], separators=(",", ":")).encode() for i in (4, 5)]

#: The batch frame gwproactor has always published for :data:`STORED` under :data:`BATCH_ID`.
KNOWN_BATCH = (
    b'{"Header":{"Src":"d1.isone.ct.newhaven.orange1.scada","Dst":"a","MessageType":"gwproactor.batch",'
    b'"MessageId":"2f1c9f6e-8d4b-4c1a-9e57-3b0d2a6c5e14","AckRequired":true,"TypeName":"gridworks.header",'
    b'"Version":"001"},"Payload":{"BatchId":"2f1c9f6e-8d4b-4c1a-9e57-3b0d2a6c5e14","Events":['
    b'{"MessageId":"a6b3f1cd-215b-445c-a05d-a32cf4aad190","TimeCreatedMs":1795731199964,'
    b'"Src":"d1.isone.ct.newhaven.orange1.scada","TypeName":"gridworks.event.startup"},'
    b'{"MessageId":"fe183314-fd3f-4d16-b42a-5e71521c1b68","TimeCreatedMs":1795731199966,'
    b'"Src":"d1.isone.ct.newhaven.orange1.scada","TypeName":"gridworks.event.comm.mqtt.connect",'
    b'"PeerName":"parent","Version":"001"}],"TypeName":"gwproactor.batch"},"TypeName":"gw"}'
)

#: :data:`KNOWN_BATCH` as a gwproactor.batch.z payload, captured from a gwproactor link.
KNOWN_COMPRESSED = bytes.fromhex(
    "789cad525d4bc33014fd2f796e426f9b74ebdefc027d980c1dbe880fb7c9ed56669b2ec91c63ecbf9baa209b220c7cbbe47cdc7392ecd92da121c7267bf6e8349b3003a2f1b623a183e868bbc437ea8475d82d0884d7689025ecda87481da629798f0b9aef7a8a278b6def2cea609da830e8e537e1ce4438ab419775417c6c64c5a506e425a911cfabd46458684520a3e442af1e68bd691c4551701b4ad8e07f8fedc70ed798ad752b2f969fd113f644ce37b68b609a023b246c86bb578b66687539e43867fb4d2c1c3c9b3cef8fb26351e5d1c0f00c54544ba539a6ca70cc335d4b4403651ad5f3a6a52b4718c84ca3098c4a35ca01cab22c6472ce15ffda98866cc2077461d3c7a2c7116b82719e83e4b5c96b2e0d14bc9219724523501968a88af1df118bff8aa86ddb8a761d86a9eb4887489f11b92f7a8f2eb27ebedccbb1e9e96f3a9cc0ecf00ee080df2b"
)


@pytest.fixture(params=["json", "orjson"])
def codec(request: pytest.FixtureRequest) -> Codec:
    """A codec for each JSON backend."""
    return Codec(backend=request.param)


def test_known_batch_encodes_to_known_bytes() -> None:
    """A batch of two stored events encodes to the exact bytes gwproactor has always sent."""
    assert BatchFrameEncoder(SCADA, ATN_SHORT).encode(BATCH_ID, STORED) == KNOWN_BATCH


def test_batch_bytes_equal_the_codec_encoding_of_the_same_message(codec: Codec) -> None:
    """The hand-joined frame is byte-identical to what the codec encodes for the equivalent EventBatch message."""
    header = Header(src=SCADA, dst=ATN_SHORT, message_type=EventBatch.TYPE_NAME, message_id=BATCH_ID,
                    ack_required=True)
    message = Message(header, EventBatch(batch_id=BATCH_ID, events=[json.loads(e) for e in STORED]))
    assert codec.encode(message) == BatchFrameEncoder(SCADA, ATN_SHORT).encode(BATCH_ID, STORED)


def test_known_batch_decodes_to_its_events(codec: Codec) -> None:
    """The known batch bytes decode to an EventBatch holding each stored event's JSON object, in order."""
    message = codec.decode(KNOWN_BATCH)
    assert message.header.message_id == BATCH_ID and message.header.ack_required is True
    assert message.header.src == SCADA and message.header.dst == ATN_SHORT
    assert isinstance(message.payload, EventBatch)
    assert message.payload.batch_id == BATCH_ID
    assert message.payload.events == [json.loads(e) for e in STORED]


def test_empty_batch_is_valid_json(codec: Codec) -> None:
    """A batch without events is still a decodable envelope."""
    message = codec.decode(BatchFrameEncoder(SCADA, ATN_SHORT).encode(BATCH_ID, []))
    assert message.payload.events == []


def test_known_compressed_batch_inflates_to_known_bytes() -> None:
    """A captured gwproactor.batch.z payload inflates to exactly the known batch frame."""
    assert inflate_batch_frame(KNOWN_COMPRESSED, 4 * 1024 * 1024) == KNOWN_BATCH


def test_compressed_batch_is_zlib_of_the_frame() -> None:
    """A compressed batch is the frame deflated with zlib, and inflates back to the same bytes."""
    compressed = compress_batch_frame(KNOWN_BATCH)
    assert zlib.decompress(compressed) == KNOWN_BATCH
    assert inflate_batch_frame(compressed, len(KNOWN_BATCH)) == KNOWN_BATCH
    assert len(compressed) < len(KNOWN_BATCH)


def test_inflation_stops_at_the_bound() -> None:
    """A frame that would inflate past the bound raises FrameTooLarge (a DecodeError) without inflating it all."""
    with pytest.raises(FrameTooLarge, match="inflates past max_frame_bytes"):
        inflate_batch_frame(KNOWN_COMPRESSED, len(KNOWN_BATCH) - 1)
    bomb = zlib.compress(b" " * (64 * 1024 * 1024))
    with pytest.raises(FrameTooLarge):
        inflate_batch_frame(bomb, 1024)
    assert issubclass(FrameTooLarge, DecodeError)


def test_not_zlib_is_a_decode_error() -> None:
    """A gwproactor.batch.z payload that is not zlib data raises DecodeError naming it."""
    with pytest.raises(DecodeError, match="not zlib data"):
        inflate_batch_frame(b"not zlib", 1024)


def test_compressed_batch_topic() -> None:
    """A compressed batch travels on the gwproactor-batch-z topic type."""
    assert topic_for(SCADA, ATN_SHORT, COMPRESSED_BATCH_TYPE) == "gw/d1-isone-ct-newhaven-orange1-scada/to/a/gwproactor-batch-z"
