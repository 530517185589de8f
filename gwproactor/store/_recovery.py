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
    unwritten: list = attrs.Factory(list)  # ack frames whose write failed, written with the next ack


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


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

    def _copy_aside(self, name: str, buf: bytes, stretches: list[tuple[int, int, str]]) -> None:
        """Copy each ``(start, end, what is wrong)`` stretch of ``buf`` to ``set-aside/<name>.at-<start>.bad``."""
        for start, end, what in stretches:
            self._corrupt_records += 1
            target = self._unique_aside(f"{name}.at-{start}.bad")
            try:
                with open(target, "wb") as f:
                    f.write(buf[start:end])
                saved = f"copied to {os.path.relpath(target, self._directory)}"
            except OSError as e:
                saved = f"could not be copied aside ({e})"
            self.recovery_report.append(f"{name}: bytes {start}..{end} ({end - start} bytes) {what}; {saved}")

    def _write_tmp(self, name: str, data: bytes) -> str:
        """Write ``data`` to ``name.tmp`` and fsync it; return its path (removed again if anything fails)."""
        tmp = self._path(name + ".tmp")
        fd = self._calls.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            self._calls.write_all(fd, data)
            self._fsync(fd)
            self._fsyncs += 1
        except BaseException:
            os.close(fd)
            _remove_quietly(tmp)
            raise
        os.close(fd)
        return tmp

    def _remove(self, name: str) -> None:
        """Delete a file recovery has no use for; a failure is reported, not raised."""
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass
        except OSError as e:
            self.recovery_report.append(f"{name}: could not be deleted ({e}); ignored")

    def _recover(self) -> None:
        listing = list_directory(self._directory)
        self._next_number = listing.highest_number + 1
        for name, reason in listing.bad:
            self._move_aside(name, reason)
        for name in listing.temporary:
            self._remove(name)
        for number in set(listing.acks) - set(listing.logs):
            self._remove(listing.acks[number])
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
            self._fsync_directory()  # a failure is reported; the repairs are redone at the next open
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
                self._remove(ack_name)
            return
        if scan.ack_error is not None:
            self._move_aside(ack_name, f"unreadable ({scan.ack_error})")
            ack_name = None
        seg = Segment(number, self._path(log_name), self._path(segment_name(number, "ack")),
                       size=scan.log_size, ack_size=scan.ack_size)
        if ack_name is not None:
            self._copy_aside(ack_name, scan.ack_buf, [(a, b, "failed their checks") for a, b in scan.ack_bad]
                             + [(a, b, f"hold an ack that {what}") for a, b, what in scan.ack_stray])
        events = list(scan.pending())
        if scan.bad:
            # Keep the pending records only, in a new file; drop the ack file before the rename so that
            # a crash in between can only bring acked events back (duplicates), never mis-apply acks.
            self._copy_aside(log_name, scan.buf, [(a, b, "failed their checks") for a, b in scan.bad])
            buf = scan.buf
            kept, new_events, pos = [], [], 0
            for offset, size, t, event_id in events:
                kept.append(buf[offset:offset + size])
                new_events.append((pos, size, t, event_id))
                pos += size
            try:
                tmp = self._write_tmp(log_name, b"".join(kept)) if kept else None
                if ack_name is not None:
                    os.unlink(self._path(ack_name))
                    seg.ack_size = 0
                if tmp is None:
                    os.unlink(seg.log_path)
                    return
                os.replace(tmp, seg.log_path)
            except OSError as e:
                # The files stay as they were found (the ack file too, unless only the rename failed):
                # the pending events are served from the damaged file, at their offsets.
                self.recovery_report.append(f"{log_name}: could not be rewritten without its bad stretches "
                                            f"({e}); left as it is")
            else:
                events, seg.size, seg.ack_size = new_events, pos, 0
        elif scan.ack_bad or scan.ack_stray:
            good = bytearray()
            ids = {e[0]: e[3] for e in scan.events}
            for offset in sorted(scan.acked):
                good += _format.encode_ack(self._wall(), ids[offset], offset, number)
            try:
                os.replace(self._write_tmp(ack_name, bytes(good)), self._path(ack_name))
                seg.ack_size = len(good)
            except OSError as e:
                self.recovery_report.append(f"{ack_name}: could not be rewritten without its bad records "
                                            f"({e}); left as it is")
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
