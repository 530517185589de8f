"""Recovery of an event store directory at open: keep every readable record, set aside the rest, report it.

See "Recovery" in ``docs/store.rst`` for the rules.  :class:`Recovery` runs once, from
:meth:`FileEventStore.open <gwproactor.store.file.FileEventStore.open>`: it fills the store's
segment log and pending-id index, and counts and reports what it set aside.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable

from gwproactor.store import _format
from gwproactor.store._commit import GroupCommit
from gwproactor.store._common import ProblemCallback, SysCalls, report_problem
from gwproactor.store._index import PackedIndex
from gwproactor.store._scan import SET_ASIDE_DIR, list_directory, scan_segment, segment_name
from gwproactor.store._segments import Segment, SegmentLog

__all__ = ["Recovery", "release_freed_memory"]


def release_freed_memory() -> None:
    """Give memory freed by recovery back to the OS (glibc keeps it otherwise; a no-op elsewhere).

    Recovery of a large store parses every record once; without this the process keeps
    that transient peak (about 30 MB for 100,000 pending events) as resident memory.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class Recovery:
    """The recovery of one store directory (see the module docstring); :meth:`run` it once.

    :param directory: the store directory (locked by the caller).
    :param log: the store's segment log, empty; recovery adds the segments it keeps.
    :param index: the store's pending-id index, empty; recovery adds the pending events.
    :param commit: the store's commits: recovery's own fsyncs, and the syncs of the acks it writes.
    :param calls: the ``open`` / ``write`` calls of the write path.
    :param wall: the wall clock of the ack records recovery rewrites.
    :param on_problem: ``on_problem(summary, details)``, called once with the whole report.
    """

    def __init__(self, directory: str, *, log: SegmentLog, index: PackedIndex, commit: GroupCommit,
                 calls: SysCalls, wall: Callable[[], float], on_problem: ProblemCallback | None) -> None:
        self._directory = directory
        self._log = log
        self._index = index
        self._commit = commit
        self._calls = calls
        self._wall = wall
        self._on_problem = on_problem
        self.pending_bytes = 0
        """Framed bytes of the pending events found."""
        self.corrupt_records = 0
        """Bad stretches of segment and ack files copied into ``set-aside/``."""
        self.corrupt_files = 0
        """Directory entries moved into ``set-aside/``."""
        self.report: list[str] = []
        """One line per thing set aside or repaired."""

    def _path(self, *names: str) -> str:
        return os.path.join(self._directory, *names)

    def _move_aside(self, name: str, reason: str) -> None:
        self.corrupt_files += 1
        target = self._unique_aside(name)
        try:
            os.rename(self._path(name), target)
            line = f"{name}: {reason}; moved to {os.path.relpath(target, self._directory)}"
        except OSError as e:
            line = f"{name}: {reason}; could not be moved aside ({e}), left in place and ignored"
        self.report.append(line)

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
            self.corrupt_records += 1
            target = self._unique_aside(f"{name}.at-{start}.bad")
            try:
                with open(target, "wb") as f:
                    f.write(buf[start:end])
                saved = f"copied to {os.path.relpath(target, self._directory)}"
            except OSError as e:
                saved = f"could not be copied aside ({e})"
            self.report.append(f"{name}: bytes {start}..{end} ({end - start} bytes) {what}; {saved}")

    def _write_tmp(self, name: str, data: bytes) -> str:
        """Write ``data`` to ``name.tmp`` and fsync it; return its path (removed again if anything fails)."""
        tmp = self._path(name + ".tmp")
        fd = self._calls.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            self._calls.write_all(fd, data)
            self._commit.fsync_file(fd)
        except BaseException:  # close and remove the half-written file, then re-raise whatever it is
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
            self.report.append(f"{name}: could not be deleted ({e}); ignored")

    def run(self) -> None:
        """Survey the directory, repair what needs it, fill the log and the index, report."""
        listing = list_directory(self._directory)
        self._log.start_after(listing.highest_number)
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
        if self.report:
            self._commit.fsync_directory()  # a failure is reported; the repairs are redone at the next open
            report_problem(
                self._on_problem,
                f"event store recovery set aside {self.corrupt_records} corrupt records and "
                f"{self.corrupt_files} directory entries",
                "\n".join(self.report),
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
            assert ack_name is not None  # only an ack file that exists can be unreadable
            self._move_aside(ack_name, f"unreadable ({scan.ack_error})")
            ack_name = None
        seg = Segment(number, self._path(log_name), self._path(segment_name(number, "ack")),
                       size=scan.log_size, ack_size=scan.ack_size)
        assert scan.buf is not None  # scanned with keep=True
        if ack_name is not None:
            assert scan.ack_buf is not None  # read, since its name is still set
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
                self.report.append(f"{log_name}: could not be rewritten without its bad stretches "
                                   f"({e}); left as it is")
            else:
                events, seg.size, seg.ack_size = new_events, pos, 0
        elif scan.ack_bad or scan.ack_stray:
            assert ack_name is not None  # bad or stray acks were read from an ack file
            good = bytearray()
            ids = {e[0]: e[3] for e in scan.events}
            for offset in sorted(scan.acked):
                good += _format.encode_ack(self._wall(), ids[offset], offset, number)
            try:
                os.replace(self._write_tmp(ack_name, bytes(good)), self._path(ack_name))
                seg.ack_size = len(good)
            except OSError as e:
                self.report.append(f"{ack_name}: could not be rewritten without its bad records "
                                   f"({e}); left as it is")
        del scan
        self._log.add_recovered(seg)
        for offset, size, t, event_id in events:
            if event_id in self._index:
                # An older copy is pending; this one is redundant.
                if self._log.write_ack(seg, event_id, offset):
                    self._commit.sync_soon()
                continue
            self._index[event_id] = (number, offset, size, t)
            seg.live += 1
            self.pending_bytes += size
        if seg.live == 0:
            self._log.delete_segment(seg)
