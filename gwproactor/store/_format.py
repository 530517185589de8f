"""The record frame shared by every file of the event store, and a sans-IO scanner for it.

Every record (event, ack, received id) is one frame::

    offset  size  field
    0       1     magic 0xE5
    1       1     format version (1)
    2       1     kind: 1 event, 2 ack, 3 received id
    3       1     flags (0; any other value makes the frame invalid)
    4       4     body length B (unsigned, big-endian)
    8       8     time the record was written (IEEE-754 double, seconds since the epoch, big-endian)
    16      2     id length I (unsigned, big-endian)
    18      I     id (UTF-8)
    18+I    D     data: event payload (kind 1); the acked event record's offset and segment number,
                  uint64 each (kind 2; an ack written before the segment number was added holds
                  the offset only); nothing (kind 3); D = B - 10 - I
    8+B     4     CRC-32 (zlib) of bytes [0, 8+B), big-endian

A frame is valid when every field is in range, it fits in the file and the CRC matches.  After an
invalid frame, :func:`scan` looks for the next valid frame from the byte after the invalid frame's
start: a damaged length field is never trusted, so it cannot make the scan skip intact records.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

MAGIC = 0xE5
VERSION = 1
KIND_EVENT = 1
KIND_ACK = 2
KIND_RECEIVED = 3
_KINDS = (KIND_EVENT, KIND_ACK, KIND_RECEIVED)

_HEADER = struct.Struct(">BBBBI")
_BODY_HEAD = struct.Struct(">dH")
_HEAD = struct.Struct(">BBBBIdH")  # header + body head, for the fast path of scan()
_CRC = struct.Struct(">I")
_OFFSET = struct.Struct(">Q")
_ACK_TARGET = struct.Struct(">QQ")  # offset, segment number
HEADER_SIZE = _HEADER.size  # 8
BODY_HEAD_SIZE = _BODY_HEAD.size  # 10
CRC_SIZE = _CRC.size  # 4
OVERHEAD = HEADER_SIZE + BODY_HEAD_SIZE + CRC_SIZE  # 22 bytes per record besides id and data
MAX_ID_BYTES = 0xFFFF
MAX_BODY = 0x7FFFFFFF
_SYNC = bytes((MAGIC, VERSION))


class Record(NamedTuple):
    """One valid frame found by :func:`scan`; its data is ``buf[data_start:data_end]`` (see :func:`data_of`)."""

    offset: int
    size: int
    kind: int
    time: float
    event_id: str
    data_start: int
    data_end: int


def data_of(buf: bytes, record: Record) -> bytes:
    """Return the data (payload) bytes of ``record`` found in ``buf``."""
    return buf[record.data_start:record.data_end]


def record_size(event_id: str, payload: bytes) -> int:
    """Return the framed size of an event record: the unit of ``pending_bytes`` and ``max_bytes``."""
    return OVERHEAD + len(event_id.encode("utf-8")) + len(payload)


def encode(kind: int, time: float, event_id: str, data: bytes = b"") -> bytes:
    """Return the frame of one record.

    :raises ValueError: if the id is longer than 65535 UTF-8 bytes or the record is too large.
    """
    raw_id = event_id.encode("utf-8")
    if len(raw_id) > MAX_ID_BYTES:
        raise ValueError(f"event id is {len(raw_id)} bytes long; at most {MAX_ID_BYTES} are allowed")
    body_len = BODY_HEAD_SIZE + len(raw_id) + len(data)
    if body_len > MAX_BODY:
        raise ValueError(f"record of {body_len} bytes is too large (at most {MAX_BODY})")
    head = _HEADER.pack(MAGIC, VERSION, kind, 0, body_len) + _BODY_HEAD.pack(time, len(raw_id))
    framed = b"".join((head, raw_id, data))
    return framed + _CRC.pack(zlib.crc32(framed))


def encode_ack(time: float, event_id: str, event_offset: int, segment: int) -> bytes:
    """Return the frame of an ack of the event record ``event_id`` at ``event_offset`` of segment ``segment``.

    The ack names its record three ways (segment number, offset, id), so an ack file that ends up
    beside the wrong segment (swapped or copied files, a bad restore) acks nothing there.
    """
    return encode(KIND_ACK, time, event_id, _ACK_TARGET.pack(event_offset, segment))


def ack_target(buf: bytes, record: Record) -> tuple[int, int | None] | None:
    """Return ``(offset, segment number)`` named by an ack record of ``buf``; the segment number is None
    in an ack written before it was recorded (offset only); None if the data is malformed."""
    size = record.data_end - record.data_start
    if size == _ACK_TARGET.size:
        return _ACK_TARGET.unpack_from(buf, record.data_start)
    if size == _OFFSET.size:
        return _OFFSET.unpack_from(buf, record.data_start)[0], None
    return None


def parse_at(buf: bytes, view: memoryview, pos: int) -> Record | None:
    """Return the valid record starting at ``pos`` of ``buf``, or None."""
    n = len(buf)
    if n - pos < OVERHEAD:
        return None
    magic, version, kind, flags, body_len = _HEADER.unpack_from(buf, pos)
    if magic != MAGIC or version != VERSION or flags != 0 or kind not in _KINDS or body_len < BODY_HEAD_SIZE:
        return None
    end = pos + HEADER_SIZE + body_len + CRC_SIZE
    if end > n:
        return None
    crc_at = end - CRC_SIZE
    if _CRC.unpack_from(buf, crc_at)[0] != zlib.crc32(view[pos:crc_at]):
        return None
    time, id_len = _BODY_HEAD.unpack_from(buf, pos + HEADER_SIZE)
    id_start = pos + HEADER_SIZE + BODY_HEAD_SIZE
    if id_start + id_len > crc_at:
        return None
    try:
        event_id = buf[id_start : id_start + id_len].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return Record(pos, end - pos, kind, time, event_id, id_start + id_len, crc_at)


def _resync(buf: bytes, view: memoryview, start: int) -> int:
    """Return the offset of the next valid frame at or after ``start`` (``len(buf)`` if none)."""
    q = buf.find(_SYNC, start)
    while q != -1:
        if parse_at(buf, view, q) is not None:
            return q
        q = buf.find(_SYNC, q + 1)
    return len(buf)


def scan(buf: bytes) -> tuple[list[Record], list[tuple[int, int]]]:
    """Split ``buf`` (a whole file) into its valid records and its bad stretches ``(start, end)``.

    After a bad frame the scan searches for the next valid frame from the byte after the bad frame's
    start.  It never trusts the bad frame's length: a damaged length that happens to point at a later
    valid frame would skip the intact records in between.  A flipped payload byte still costs one
    record only (the search finds the next record where the damaged one ended), and a bad stretch
    ends exactly where the next valid frame starts.
    """
    view = memoryview(buf)
    records: list[Record] = []
    bad: list[tuple[int, int]] = []
    pos = 0
    n = len(buf)
    # The loop inlines parse_at for speed (opening 100,000 records is ~100,000 iterations).
    unpack_head, unpack_crc, crc32, make, kinds = _HEAD.unpack_from, _CRC.unpack_from, zlib.crc32, Record, _KINDS
    while pos < n:
        if n - pos >= OVERHEAD:
            magic, version, kind, flags, body_len, t, id_len = unpack_head(buf, pos)
            end = pos + HEADER_SIZE + body_len + CRC_SIZE
            if (magic == MAGIC and version == VERSION and flags == 0 and kind in kinds and end <= n
                    and BODY_HEAD_SIZE + id_len <= body_len):
                crc_at = end - CRC_SIZE
                if unpack_crc(buf, crc_at)[0] == crc32(view[pos:crc_at]):
                    id_start = pos + HEADER_SIZE + BODY_HEAD_SIZE
                    try:
                        event_id = buf[id_start:id_start + id_len].decode("utf-8")
                    except UnicodeDecodeError:
                        event_id = None
                    if event_id is not None:
                        records.append(make(pos, end - pos, kind, t, event_id, id_start + id_len, crc_at))
                        pos = end
                        continue
        end = _resync(buf, view, pos + 1)
        bad.append((pos, end))
        pos = end
    return records, bad
