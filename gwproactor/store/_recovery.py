"""Recovery of an event store directory at open: keep every readable record, set aside the rest, report it.

See "Recovery" in ``docs/store.rst`` for the rules; :class:`RecoveryMixin` is part of
:class:`~gwproactor.store.file.FileEventStore` and uses its state.
"""

from __future__ import annotations

import gc
import os

import attrs

from gwproactor.store import _format
from gwproactor.store._common import report_problem
from gwproactor.store._scan import SET_ASIDE_DIR, list_directory, scan_segment, segment_name


@attrs.define(eq=False)
class Segment:
    """One segment: its files, sizes, open descriptors and count of pending events."""

    number: int
    log_path: str
    ack_path: str
    size: int = 0
    ack_size: int = 0
    live: int = 0
    fd: int | None = None
    ack_fd: int | None = None
    dirty_log: bool = False
    dirty_ack: bool = False


class RecoveryMixin:
    """The recovery steps of :class:`~gwproactor.store.file.FileEventStore` (run once, from ``open``)."""

    __slots__ = ()


    def _path(self, *names: str) -> str:
        return os.path.join(self._directory, *names)

    def _move_aside(self, name: str, reason: str) -> None:
        self._corrupt_files += 1
        target = self._unique_aside(name)
        try:
            os.rename(self._path(name), target)
            line = f"{name}: {reason}; moved to {os.path.relpath(target, self._directory)}"
        except OSError as e:
            line = f"{name}: {reason}; could not be moved aside ({e}), left in place and ignored"
        self.recovery_report.append(line)

    def _unique_aside(self, name: str) -> str:
        base = self._path(SET_ASIDE_DIR, name)
        target, n = base, 0
        while os.path.lexists(target):
            n += 1
            target = f"{base}.{n}"
        return target

    def _copy_aside(self, name: str, buf: bytes, stretches: list[tuple[int, int]], what: str) -> None:
        for start, end in stretches:
            self._corrupt_records += 1
            target = self._unique_aside(f"{name}.at-{start}.bad")
            with open(target, "wb") as f:
                f.write(buf[start:end])
            self.recovery_report.append(f"{name}: {what} bytes {start}..{end} ({end - start} bytes) failed their "
                                        f"checks; copied to {os.path.relpath(target, self._directory)}")

    def _write_file(self, name: str, data: bytes) -> None:
        """Replace ``name`` with ``data`` through a fsynced temporary file."""
        tmp = self._path(name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            self._fsync(fd)
            self._fsyncs += 1
        finally:
            os.close(fd)
        os.replace(tmp, self._path(name))

    def _recover(self) -> None:
        listing = list_directory(self._directory)
        self._next_number = listing.highest_number + 1
        for name, reason in listing.bad:
            self._move_aside(name, reason)
        for name in listing.temporary:
            os.unlink(self._path(name))
        for number in set(listing.acks) - set(listing.logs):
            os.unlink(self._path(listing.acks[number]))
        # Building the index allocates a few objects per record and creates no cycles: pausing the
        # cyclic GC meanwhile saves about a third of the open time of a large store.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for number in sorted(listing.logs):
                self._recover_segment(number, listing.logs[number], listing.acks.get(number))
        finally:
            if gc_was_enabled:
                gc.enable()
        if self.recovery_report:
            self._fsync_directory()
            report_problem(
                self._on_problem,
                f"event store recovery set aside {self._corrupt_records} corrupt records and "
                f"{self._corrupt_files} directory entries",
                "\n".join(self.recovery_report),
            )

    def _recover_segment(self, number: int, log_name: str, ack_name: str | None) -> None:
        try:
            scan = scan_segment(self._directory, number, log_name, ack_name, keep=True)
        except OSError as e:
            self._move_aside(log_name, f"unreadable ({e})")
            if ack_name is not None:
                os.unlink(self._path(ack_name))
            return
        if scan.ack_error is not None:
            self._move_aside(ack_name, f"unreadable ({scan.ack_error})")
            ack_name = None
        seg = Segment(number, self._path(log_name), self._path(segment_name(number, "ack")),
                       size=scan.log_size, ack_size=scan.ack_size)
        if scan.ack_bad:
            self._copy_aside(ack_name, scan.ack_buf, scan.ack_bad, "ack file")
        if scan.bad:
            # Keep the pending records only, in a new file; drop the ack file first so that a crash
            # in between can only bring acked events back (duplicates), never mis-apply acks.
            self._copy_aside(log_name, scan.buf, scan.bad, "segment")
            buf = scan.buf
            kept, new_events, pos = [], [], 0
            for offset, size, t, event_id in scan.pending():
                kept.append(buf[offset:offset + size])
                new_events.append((pos, size, t, event_id))
                pos += size
            if ack_name is not None:
                os.unlink(self._path(ack_name))
            if not kept:
                os.unlink(seg.log_path)
                return
            self._write_file(log_name, b"".join(kept))
            events, seg.size, seg.ack_size = new_events, pos, 0
        else:
            if scan.ack_bad:
                good = bytearray()
                ids = {e[0]: e[3] for e in scan.events}
                for offset in sorted(scan.acked):
                    good += _format.encode_ack(self._wall(), ids[offset], offset)
                self._write_file(ack_name, bytes(good))
                seg.ack_size = len(good)
            events = list(scan.pending())
        del scan
        self._segments[number] = seg
        self._disk_bytes += seg.size + seg.ack_size
        for offset, size, t, event_id in events:
            if event_id in self._index:
                self._write_ack(seg, event_id, offset)  # an older copy is pending; this one is redundant
                continue
            self._index[event_id] = (number, offset, size, t)
            seg.live += 1
            self._pending_bytes += size
        if seg.live == 0:
            self._delete_segment(seg)
