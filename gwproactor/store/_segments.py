"""The segment log of the file store: segment files, their descriptors, ack writes and what is not synced yet.

Events are appended to the *active* segment; a new one starts when the active one would grow past
``segment_bytes``, after a failure that leaves it unusable, and at every open.  A segment whose
events are all acked is deleted (``.log`` first, then ``.ack``) once it is no longer active.  The log
keeps track of what was written but not fsynced (segment files, ack files, the directory after a
segment was created); :class:`~gwproactor.store._commit.GroupCommit` takes that over
(:meth:`SegmentLog.unsynced_files`, :meth:`SegmentLog.mark_synced`).  The log knows nothing of event
ids beyond the ack records it writes: the pending-id index is the store's.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Set

import attrs

from gwproactor.store import _format
from gwproactor.store._common import SysCalls, WriteErrors, undo_partial_write
from gwproactor.store._scan import segment_name

__all__ = ["MAX_READ_FDS", "Segment", "SegmentLog"]

MAX_READ_FDS = 32
"""Read descriptors of retired segments kept open at most (the active segment's is always open)."""


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


_NONE: frozenset[int] = frozenset()

# A file a commit must fsync: (descriptor, (kind, segment number or None, path)), kind one of
# "log", "ack", "directory".
SyncJob = tuple[int, tuple[str, "int | None", str]]


class SegmentLog:
    """The segment files of one store directory (see the module docstring).

    :param directory: the store directory.
    :param segment_bytes: a new segment starts when the active one would grow past this.
    :param sync: the store's sync policy (under ``never`` nothing is tracked for a commit).
    :param calls: the ``open`` / ``write`` calls of the write path (tests inject OS errors).
    :param wall: the wall clock of the times written into ack records.
    :param errors: counts and reports failed OS calls.
    """

    def __init__(self, directory: str, *, segment_bytes: int, sync: str, calls: SysCalls,
                 wall: Callable[[], float], errors: WriteErrors) -> None:
        self._directory = directory
        self._segment_bytes = segment_bytes
        self._sync = sync
        self._calls = calls
        self._wall = wall
        self._errors = errors
        self._segments: dict[int, Segment] = {}
        self._active: Segment | None = None
        self._active_broken = False
        self._next_number = 1
        self._dir_fd: int | None = None  # held open: a directory fsync needs no new descriptor
        self._new_segments: set[int] = set()  # created since the last directory fsync
        self._dirty: set[Segment] = set()
        self._directory_dirty = False
        self._read_fds = 0
        self.disk_bytes = 0
        """Bytes in the segment and ack files."""

    # --- the directory ---------------------------------------------------------

    def path(self, *names: str) -> str:
        """The path of ``names`` inside the store directory."""
        return os.path.join(self._directory, *names)

    def open_directory(self) -> None:
        """Open the descriptor of the store directory that directory fsyncs use."""
        self._dir_fd = os.open(self._directory, os.O_RDONLY | os.O_CLOEXEC)

    @property
    def directory_fd(self) -> int | None:
        """The descriptor of the store directory (None before :meth:`open_directory`, after :meth:`close`)."""
        return self._dir_fd

    # --- segments ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._segments)

    def segment(self, number: int) -> Segment:
        """The segment ``number`` (it holds a pending event)."""
        return self._segments[number]

    def segments(self) -> list[Segment]:
        """The segments, in the order they were added."""
        return list(self._segments.values())

    def start_after(self, number: int) -> None:
        """Number the next new segment ``number + 1`` (recovery found segments up to ``number``)."""
        self._next_number = number + 1

    def add_recovered(self, seg: Segment) -> None:
        """Take over a segment found at open (its descriptors are opened when needed)."""
        self._segments[seg.number] = seg
        self.disk_bytes += seg.size + seg.ack_size

    def segment_for(self, size: int) -> Segment:
        """The segment to append ``size`` bytes to (a new one when needed).

        :raises OSError: if a new segment cannot be created (nothing changed but the old one's retirement).
        """
        seg = self._active
        if seg is not None and not self._active_broken and (seg.size == 0 or seg.size + size <= self._segment_bytes):
            return seg
        if seg is not None:
            self._retire(seg)
        number = self._next_number
        seg = Segment(number, self.path(segment_name(number, "log")), self.path(segment_name(number, "ack")))
        seg.fd = self._calls.open(seg.log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._next_number += 1
        self._read_fds += 1
        self._segments[number] = seg
        self._active = seg
        self._active_broken = False
        if self._sync != "never":
            # Synced by the commit that makes its first records durable, before their appends fire.
            self._directory_dirty = True
            self._new_segments.add(number)
        return seg

    def write(self, seg: Segment, frame: bytes) -> None:
        """Write ``frame`` at the end of ``seg`` (the active segment); :meth:`added` then accounts for it.

        :raises OSError: if the write failed.  Nothing of the record stays behind: the file is cut
            back; if that fails too (or the disk itself is failing), the next append starts a new segment.
        """
        fd = seg.fd
        assert fd is not None  # the active segment's descriptor stays open
        try:
            self._calls.write_all(fd, frame)
        except OSError as e:
            if not undo_partial_write(fd, seg.size) or e.errno not in (errno.ENOSPC, errno.EDQUOT):
                self._active_broken = True
            raise

    def added(self, seg: Segment, size: int) -> int:
        """Account for a record of ``size`` bytes that :meth:`write` wrote to ``seg``; return its offset."""
        offset = seg.size
        seg.size += size
        seg.live += 1
        self.disk_bytes += size
        seg.dirty_log = True
        self._dirty.add(seg)
        return offset

    def mark_broken(self, number: int) -> None:
        """Appends must not go on into segment ``number`` (its sync failed): the next one starts a segment."""
        if self._active is not None and self._active.number == number:
            self._active_broken = True

    def _retire(self, seg: Segment) -> None:
        """Stop appending to ``seg``: delete it if fully acked, else close it once no commit needs it."""
        self._active = None
        if seg.live == 0:
            self.delete_segment(seg)
            return
        if self._sync == "never":
            seg.dirty_log = False  # never fsynced; reads reopen it
        if seg.fd is not None and not seg.dirty_log:
            os.close(seg.fd)
            seg.fd = None
            self._read_fds -= 1
        if not (seg.dirty_log or seg.dirty_ack):
            self._dirty.discard(seg)

    def delete_segment(self, seg: Segment) -> None:
        """Delete both files of ``seg`` (``.log`` first: a lone ack file is discarded at open)."""
        self._close_fds(seg)
        self._dirty.discard(seg)
        self._new_segments.discard(seg.number)
        seg.unwritten = []
        self._segments.pop(seg.number, None)
        for path in (seg.log_path, seg.ack_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                self._errors.report("delete", path, e)
        self.disk_bytes -= seg.size + seg.ack_size

    # --- reads -----------------------------------------------------------------

    def read_record(self, seg: Segment, offset: int, size: int) -> bytes:
        """The ``size`` bytes at ``offset`` of ``seg``'s log file.

        :raises OSError: if it cannot be read (out of descriptors even after closing the cached ones, EIO).
        """
        return os.pread(self._read_fd(seg), size, offset)

    def _read_fd(self, seg: Segment) -> int:
        if seg.fd is None:
            if self._read_fds >= MAX_READ_FDS:
                self._close_read_fds()
            flags = os.O_RDONLY | os.O_CLOEXEC
            try:
                seg.fd = self._calls.open(seg.log_path, flags)
            except OSError as e:
                # Out of descriptors: give back the ones this store caches, then try once more.
                if e.errno not in (errno.EMFILE, errno.ENFILE) or not self._close_read_fds():
                    raise
                seg.fd = self._calls.open(seg.log_path, flags)
            self._read_fds += 1
        return seg.fd

    def _close_read_fds(self) -> int:
        """Close the read descriptors of retired segments that no commit needs; return how many."""
        closed = 0
        for other in self._segments.values():
            if other is not self._active and other.fd is not None and not other.dirty_log:
                os.close(other.fd)
                other.fd = None
                self._read_fds -= 1
                closed += 1
        return closed

    # --- acks ------------------------------------------------------------------

    def release(self, number: int, event_id: str, offset: int) -> bool:
        """Event ``event_id`` at ``offset`` of segment ``number`` is no longer pending: ack it.

        Deletes the segment instead if that was its last pending event and it is not the active one.
        Returns True if an ack record was written (a commit should sync it).
        """
        seg = self._segments[number]
        seg.live -= 1
        if seg.live == 0 and seg is not self._active:
            self.delete_segment(seg)
            return False
        return self.write_ack(seg, event_id, offset)

    def release_many(self, number: int, acks: list[tuple[str, int]]) -> bool:
        """:meth:`release` for several events of segment ``number`` (``(event_id, offset)`` each): one write."""
        seg = self._segments[number]
        seg.live -= len(acks)
        if seg.live == 0 and seg is not self._active:
            self.delete_segment(seg)
            return False
        now = self._wall()
        seg.unwritten.extend(_format.encode_ack(now, event_id, offset, seg.number) for event_id, offset in acks)
        return self.write_ack(seg, None, None)

    def write_ack(self, seg: Segment, event_id: str | None, offset: int | None) -> bool:
        """Append the ack of ``event_id`` (with any acks of ``seg`` that failed before) to its ack file.

        A failure is reported and the ack kept for the segment's next ack (and ``close``): until it is
        written, a restart would deliver the event again (a duplicate, never a loss).  Returns True
        if the acks were written (a commit should sync them).
        """
        if event_id is not None:
            assert offset is not None
            seg.unwritten.append(_format.encode_ack(self._wall(), event_id, offset, seg.number))
        data = b"".join(seg.unwritten)
        try:
            if seg.ack_fd is None:
                seg.ack_fd = self._calls.open(seg.ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                                              0o644)
            self._calls.write_all(seg.ack_fd, data)
        except OSError as e:
            if seg.ack_fd is not None:
                undo_partial_write(seg.ack_fd, seg.ack_size)
            self._errors.report("ack write", seg.ack_path, e)
            return False
        seg.unwritten = []
        seg.ack_size += len(data)
        self.disk_bytes += len(data)
        seg.dirty_ack = True
        self._dirty.add(seg)
        return True

    def retry_unwritten_acks(self) -> None:
        """Try once more to write the acks whose write failed (at close)."""
        for seg in list(self._segments.values()):
            if seg.unwritten:
                self.write_ack(seg, None, None)

    # --- what a commit syncs -----------------------------------------------------

    def has_unsynced(self) -> bool:
        """True if a segment file, an ack file or the directory holds writes no fsync has covered."""
        return bool(self._dirty or self._directory_dirty)

    def unsynced_files(self) -> list[SyncJob]:
        """``(descriptor, (kind, number, path))`` of every file to fsync, the directory last.

        The descriptors stay the log's; :meth:`mark_synced` says that a commit took the sync over.
        """
        jobs: list[SyncJob] = []
        for seg in self._dirty:
            if seg.dirty_log and seg.fd is not None:
                jobs.append((seg.fd, ("log", seg.number, seg.log_path)))
            if seg.dirty_ack and seg.ack_fd is not None:
                jobs.append((seg.ack_fd, ("ack", seg.number, seg.ack_path)))
        if self._directory_dirty:
            assert self._dir_fd is not None  # open from before recovery until after the last commit
            jobs.append((self._dir_fd, ("directory", None, self._directory)))
        return jobs

    def mark_directory_dirty(self) -> None:
        """An entry of the directory changed outside the log (``received.log`` replaced): sync the directory."""
        self._directory_dirty = True

    def mark_synced(self) -> Set[int]:
        """A commit took over the sync of every :meth:`unsynced_files`; return the segments it makes exist.

        The returned numbers are those of the segments created since the previous directory sync
        when the directory is among the files (else an empty set): a failed directory fsync fails
        their appends.  Retired segments' descriptors are closed now that no commit needs them.
        """
        for seg in self._dirty:
            seg.dirty_log = seg.dirty_ack = False
            if seg is not self._active and seg.fd is not None:
                os.close(seg.fd)
                seg.fd = None
                self._read_fds -= 1
        self._dirty.clear()
        if not self._directory_dirty:
            return _NONE
        self._directory_dirty = False
        new, self._new_segments = self._new_segments, set()
        return new

    # --- close -------------------------------------------------------------------

    def close_segments(self) -> None:
        """At close: delete the active segment if it holds no pending event; close every segment's descriptors."""
        active = self._active
        self._active = None
        if active is not None and active.live == 0:
            self.delete_segment(active)
        self.close_files()

    def close_files(self) -> None:
        """Close the descriptors of every segment (they reopen when needed)."""
        for seg in list(self._segments.values()):
            self._close_fds(seg)

    def close_directory(self) -> None:
        """Close the directory's descriptor."""
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _close_fds(self, seg: Segment) -> None:
        if seg.fd is not None:
            os.close(seg.fd)
            seg.fd = None
            self._read_fds -= 1
        if seg.ack_fd is not None:
            os.close(seg.ack_fd)
            seg.ack_fd = None
