"""Batch frames: many stored events in one ``gwproactor.batch`` envelope, plain or zlib-compressed.

A batch frame is assembled from the events' JSON as stored, without decoding them; its bytes are
what :class:`~gwproactor.messages.Codec` encodes for the same :class:`~gwproactor.messages.EventBatch`
message (byte for byte when the names are ASCII; other characters of the names are written as
``\\u`` escapes, as gwproactor always has).  A compressed batch frame (topic type
``gwproactor.batch.z``) is that envelope deflated with zlib; inflating it never goes past a bound,
since a small frame may inflate hugely.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence

from gwproactor.errors import DecodeError, FrameTooLarge

__all__ = [
    "BATCH_CAPABILITY",
    "COMPRESSED_BATCH_TYPE",
    "ZLIB_CAPABILITY",
    "BatchFrameEncoder",
    "compress_batch_frame",
    "inflate_batch_frame",
]

#: The capability a peer announces in its :class:`~gwproactor.messages.Hello` when it accepts event batches.
BATCH_CAPABILITY = "batch1"

#: The capability of a peer that accepts zlib-compressed batch frames (``gwproactor.batch.z`` topics).
ZLIB_CAPABILITY = "zlib1"

#: The topic message type of a compressed batch frame (its payload is the zlib-compressed envelope).
COMPRESSED_BATCH_TYPE = "gwproactor.batch.z"


class BatchFrameEncoder:
    """Encodes batch frames from one sender (``src``) to one peer (``dst``).

    The envelope's fixed part is built once; :meth:`encode` joins it with the batch id and the
    stored events' JSON.

    :param src: the sender's long name (``Header.Src``).
    :param dst: the peer's short name (``Header.Dst``).
    """

    __slots__ = ("src", "dst", "_prefix")

    def __init__(self, src: str, dst: str) -> None:
        self.src = src
        self.dst = dst
        self._prefix = (
            '{"Header":{"Src":%s,"Dst":%s,"MessageType":"gwproactor.batch","MessageId":'
            % (json.dumps(src), json.dumps(dst))
        ).encode("utf-8")

    def encode(self, batch_id: str, stored_events: Sequence[bytes]) -> bytes:
        """The envelope of an ack-required ``gwproactor.batch`` carrying ``stored_events`` (each one event's JSON).

        ``batch_id`` is both the header's ``MessageId`` and the payload's ``BatchId``; the peer acks it once
        every event is accepted.
        """
        quoted = json.dumps(batch_id).encode("utf-8")
        return b"".join(
            (
                self._prefix,
                quoted,
                b',"AckRequired":true,"TypeName":"gridworks.header","Version":"001"},"Payload":{"BatchId":',
                quoted,
                b',"Events":[',
                b",".join(stored_events),
                b'],"TypeName":"gwproactor.batch"},"TypeName":"gw"}',
            )
        )


def compress_batch_frame(frame: bytes) -> bytes:
    """The payload of a ``gwproactor.batch.z`` frame: ``frame`` (an encoded envelope) deflated with zlib."""
    return zlib.compress(frame)


def inflate_batch_frame(payload: bytes, max_bytes: int) -> bytes:
    """The envelope inside a ``gwproactor.batch.z`` payload, inflated to at most ``max_bytes``.

    :raises DecodeError: ``payload`` is not zlib data.
    :raises FrameTooLarge: the envelope would be larger than ``max_bytes`` (inflating stops there).
    """
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(payload, max_bytes + 1)
    except zlib.error as e:
        raise DecodeError(f"not zlib data: {e}") from e
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise FrameTooLarge(f"inflates past max_frame_bytes ({max_bytes}); dropped")
    return data
