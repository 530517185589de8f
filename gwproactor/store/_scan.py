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

    ``events`` holds ``(offset, size, time, event_id)``; ``acked`` the offsets named by valid acks.
    ``buf`` is the whole log file when the scan was asked to keep it (for export).
    """

    number: int
    log_size: int
    events: list[tuple[int, int, float, str]]
    bad: list[tuple[int, int]]
    ack_size: int = 0
    acked: set[int] = attrs.Factory(set)
    ack_bad: list[tuple[int, int]] = attrs.Factory(list)
    ack_records: int = 0
    ack_error: str | None = None
    buf: bytes | None = None
    ack_buf: bytes | None = None

    def pending(self) -> Iterator[tuple[int, int, float, str]]:
        """Yield the event records not named by an ack, in file order."""
        acked = self.acked
        return (e for e in self.events if e[0] not in acked)


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
        event_offsets = {e[0] for e in events}
        for r in acks:
            offset = _format.ack_offset(ack_buf, r) if r.kind == _format.KIND_ACK else None
            if offset is None:
                ack_bad.append((r.offset, r.offset + r.size))
            elif offset in event_offsets:
                result.acked.add(offset)
                result.ack_records += 1
        ack_bad.sort()
        result.ack_bad = ack_bad
        if keep:
            result.ack_buf = ack_buf
    return result
