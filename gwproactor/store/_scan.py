"""Read-only survey of an event store directory: which entries it holds and what each segment contains.

Used by :class:`~gwproactor.store.file.FileEventStore` at open (which then repairs what it found) and by
the ``gwproactor store`` commands (which never modify anything).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator

import attrs

from gwproactor.store import _format

SEGMENT_RE = re.compile(r"^seg-(\d{10})\.(log|ack)$")
LOCK_NAME = "LOCK"
RECEIVED_NAME = "received.log"
SET_ASIDE_DIR = "set-aside"
PARKED_DIR = "parked"
TMP_SUFFIX = ".tmp"


def segment_name(number: int, ext: str) -> str:
    """Return the file name of segment ``number`` (``ext`` is ``log`` or ``ack``)."""
    return f"seg-{number:010d}.{ext}"


@attrs.define(eq=False)
class Listing:
    """What a store directory holds, sorted into kinds; nothing has been read yet."""

    logs: dict[int, str] = attrs.Factory(dict)
    acks: dict[int, str] = attrs.Factory(dict)
    received: str | None = None
    temporary: list[str] = attrs.Factory(list)
    bad: list[tuple[str, str]] = attrs.Factory(list)  # (name, reason)
    highest_number: int = 0


@attrs.define(eq=False)
class SegmentScan:
    """The records of one segment and of its ack file.

    ``events`` holds ``(offset, size, time, event_id)``; ``acked`` the offsets of the events acked by
    a valid ack that names this segment, the record's offset and its id.  ``ack_bad`` holds the bad
    stretches of the ack file (no valid ack frame); ``ack_stray`` the valid acks that name no event
    record of this segment, as ``(start, end, what it names)``: a sign of swapped, copied or
    mis-restored files, never of a crash, so it counts as damage (recovery sets them aside and keeps
    the events they name pending; ``verify`` reports them).
    ``buf`` is the whole log file when the scan was asked to keep it (for export).
    """

    number: int
    log_size: int
    events: list[tuple[int, int, float, str]]
    bad: list[tuple[int, int]]
    ack_size: int = 0
    acked: set[int] = attrs.Factory(set)
    ack_bad: list[tuple[int, int]] = attrs.Factory(list)
    ack_stray: list[tuple[int, int, str]] = attrs.Factory(list)
    ack_records: int = 0
    ack_error: str | None = None
    buf: bytes | None = None
    ack_buf: bytes | None = None

    def pending(self) -> Iterator[tuple[int, int, float, str]]:
        """Yield the event records not named by an ack, in file order."""
        acked = self.acked
        return (e for e in self.events if e[0] not in acked)

    def problems(self, log_name: str, ack_name: str | None) -> list[str]:
        """One line per damaged part of this segment (what ``verify`` prints and recovery sets aside)."""
        lines = [f"{log_name}: bytes {start}..{end} failed their checks" for start, end in self.bad]
        if self.ack_error:
            lines.append(f"{ack_name}: unreadable ({self.ack_error})")
        lines.extend(f"{ack_name}: bytes {start}..{end} failed their checks" for start, end in self.ack_bad)
        lines.extend(f"{ack_name}: the ack at bytes {start}..{end} {what}" for start, end, what in self.ack_stray)
        return lines


def read_regular(path: str) -> bytes:
    """Return the content of the regular file ``path``.

    :raises OSError: if it cannot be opened or read, or is not a regular file (never follows
        symlinks and never blocks on a FIFO).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def list_directory(directory: str) -> Listing:
    """Sort the entries of ``directory`` without reading any file."""
    listing = Listing()
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
        except OSError as e:
            listing.bad.append((name, f"cannot stat: {e}"))
            continue
        m = SEGMENT_RE.match(name)
        if m:
            listing.highest_number = max(listing.highest_number, int(m.group(1)))
        if name in (SET_ASIDE_DIR, PARKED_DIR) and stat.S_ISDIR(st.st_mode):
            continue
        if not stat.S_ISREG(st.st_mode):
            listing.bad.append((name, "not a regular file"))
        elif name == LOCK_NAME:
            continue
        elif name.endswith(TMP_SUFFIX):
            listing.temporary.append(name)
        elif name == RECEIVED_NAME:
            listing.received = name
        elif m is None:
            listing.bad.append((name, "unknown entry"))
        elif m.group(2) == "log":
            if st.st_size == 0:
                listing.bad.append((name, "empty segment"))
            else:
                listing.logs[int(m.group(1))] = name
        else:
            listing.acks[int(m.group(1))] = name
    return listing


def scan_received(buf: bytes) -> tuple[list[str], list[tuple[int, int]]]:
    """Split the content of ``received.log`` into its ids (file order) and its bad stretches.

    A valid frame of another kind is a bad stretch too.  Used by the window at open and by ``verify``.
    """
    records, bad = _format.scan(buf)
    ids = []
    for r in records:
        if r.kind == _format.KIND_RECEIVED:
            ids.append(r.event_id)
        else:
            bad.append((r.offset, r.offset + r.size))
    bad.sort()
    return ids, bad


def scan_segment(directory: str, number: int, log_name: str, ack_name: str | None, *,
                 keep: bool = False) -> SegmentScan:
    """Read and check segment ``number`` and its ack file.

    :raises OSError: if the log cannot be read (an unreadable ack file is reported as one bad stretch).
    """
    buf = read_regular(os.path.join(directory, log_name))
    records, bad = _format.scan(buf)
    events = []
    for r in records:
        if r.kind == _format.KIND_EVENT:
            events.append((r.offset, r.size, r.time, r.event_id))
        else:
            bad.append((r.offset, r.offset + r.size))
    bad.sort()
    result = SegmentScan(number, len(buf), events, bad, buf=buf if keep else None)
    del records
    if ack_name is not None:
        try:
            ack_buf = read_regular(os.path.join(directory, ack_name))
        except OSError as e:
            result.ack_error = str(e)
            return result
        acks, ack_bad = _format.scan(ack_buf)
        result.ack_size = len(ack_buf)
        id_at = {e[0]: e[3] for e in events}
        for r in acks:
            target = _format.ack_target(ack_buf, r) if r.kind == _format.KIND_ACK else None
            if target is None:
                ack_bad.append((r.offset, r.offset + r.size))
                continue
            offset, segment = target
            # Both the offset and the id must match (and the segment number, in acks that carry it):
            # an ack beside the wrong segment must not take an intact, never-acked event away.
            if (segment is None or segment == number) and id_at.get(offset) == r.event_id:
                result.acked.add(offset)
                result.ack_records += 1
            else:
                where = "" if segment is None else f"segment {segment}, "
                result.ack_stray.append((r.offset, r.offset + r.size,
                                         f"names event {r.event_id!r} at {where}offset {offset}, "
                                         "which is not a record of this segment"))
        ack_bad.sort()
        result.ack_bad = ack_bad
        if keep:
            result.ack_buf = ack_buf
    return result
