"""The durable event store: an append-only log of segment files with per-segment ack files (decision D7).

Directory layout (``docs/store.rst`` explains it at length)::

    LOCK                    flock()ed while a store has the directory open
    seg-0000000001.log      event records (kind 1), appended in order; a new segment starts at open
    seg-0000000001.ack      ack records (kind 2) naming an event record of seg-…1.log (segment, offset, id)
    received.log            the received-id window (kind 3)
    set-aside/              what recovery or set_aside() took out of the log, for inspection
    parked/                 events the peer could not accept, one file each, until re-queued

Every record is one frame of :mod:`gwproactor.store._format` (magic, version, kind, length, time, id,
data, CRC-32).  An event is pending while its segment's ack file holds no ack naming its record.
A segment (``.log`` then ``.ack``) is deleted once every event in it is acked and it is no longer
the segment being appended to.  Memory holds one index entry per pending id, never payloads.

Sync policies: ``always`` fsyncs after each append before its Deferred fires; ``group`` fsyncs at
most once every ``group_ms`` and fires every append of the group after that fsync; ``never`` fires
right after ``write()`` (safe against a process crash, not against a power loss).  fsync runs on the
reactor thread unless ``fsync_in_thread`` (then only the fsync runs, one batch at a time, in a
thread of the store's own; the :class:`~gwproactor.proactor.Proactor` opens its store that way).
The received-id window (``received.log``) is synced by the same commits (:mod:`gwproactor.store._commit`).
An OS error fails exactly the appends it concerns, with :class:`~gwproactor.errors.StoreWriteError`,
and the store goes on working once the condition clears (``docs/store.rst``, "When the system fails").

:class:`FileEventStore` composes one object per job: :class:`~gwproactor.store._lock.DirectoryLock`
(``LOCK``), :class:`~gwproactor.store._segments.SegmentLog` (segment and ack files, their descriptors),
:class:`~gwproactor.store._index.PackedIndex` (where each pending event is),
:class:`~gwproactor.store._commit.GroupCommit` (fsyncs, and when appends become durable),
:class:`~gwproactor.store._recovery.Recovery` (at open), :class:`~gwproactor.store._common.SizeBound`
(``max_bytes`` and the full policy), :class:`~gwproactor.store._parked.ParkedArea` (``parked/``) and
:class:`~gwproactor.store._received.FileReceivedIds` (``received.log``).  Each gets what it needs
through its constructor; none reads another's private state.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList, fail, gatherResults, succeed
from twisted.logger import Logger
from zope.interface import implementer

from gwproactor.errors import CorruptRecord, EventNotFound, StoreClosed, StoreError, StoreFull, StoreReadError
from gwproactor.interfaces import IEventStore
from gwproactor.store import _format
from gwproactor.store._commit import FsyncThread, GroupCommit
from gwproactor.store._common import (
    DEFAULT_MAX_BYTES,
    DEFAULT_WINDOW,
    FULL_POLICIES,
    SYNC_POLICIES,
    ProblemCallback,
    SizeBound,
    StoreLocked,
    StoreWriteError,
    SysCalls,
    WriteErrors,
    check_choice,
    report_problem,
)
from gwproactor.store._index import PackedIndex
from gwproactor.store._lock import DirectoryLock, make_room_for
from gwproactor.store._parked import ParkedArea
from gwproactor.store._received import FileReceivedIds
from gwproactor.store._recovery import Recovery, release_freed_memory
from gwproactor.store._scan import LOCK_NAME, PARKED_DIR, SET_ASIDE_DIR
from gwproactor.store._segments import SegmentLog

__all__ = ["DEFAULT_GROUP_MS", "DEFAULT_SEGMENT_BYTES", "FileEventStore", "FsyncThread", "PackedIndex",
           "StoreLocked", "StoreWriteError"]

DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024
DEFAULT_GROUP_MS = 10.0
_log = Logger()


@implementer(IEventStore)
@attrs.define(eq=False)
class FileEventStore:
    """:class:`~gwproactor.interfaces.IEventStore` on disk; see the module docstring for the format.

    Construct it with :meth:`open` (recovery runs synchronously, before the reactor matters).

    :param directory: the store directory (created if missing).
    :param clock: provides ``seconds`` and ``callLater`` for the group-commit timer (default: the global reactor).
    :param wall: the wall clock (default :func:`time.time`) of the times the store writes into its files
        (record and ack times, ``set-aside/reasons.jsonl``) and of ``oldest_age_s``: seconds since the
        epoch, never the reactor's (monotonic) ``seconds()``.
    :param sync: ``always`` | ``group`` | ``never``.
    :param group_ms: longest wait for the group fsync under ``group``.
    :param segment_bytes: a new segment starts when the current one would grow past this.
    :param max_bytes: bound on pending bytes (framed record sizes), or None.
    :param full_policy: ``drop_oldest`` or ``reject_new``; each application calls ``on_problem``.
    :param on_problem: ``on_problem(summary, details)``: full policies, recovery, I/O errors.
    :param fsync: the fsync function (tests inject a counting one).
    :param fsync_runner: None (default) to fsync on the reactor thread; else
        ``fsync_runner(f) -> Deferred`` runs the zero-argument function ``f`` elsewhere: a batch
        (which only calls ``fsync`` on duplicated descriptors) or the rewrite of the received-id
        window (which writes, fsyncs and closes ``received.tmp`` only).  At most one batch is
        outstanding; appends wait for the batch that started after their write.
        ``open(fsync_in_thread=True)`` uses a :class:`FsyncThread`, which ``close()`` stops.
    :param received_window: size of :attr:`received`, the persisted received-id window.
    """

    _directory: str = attrs.field(alias="directory")
    _clock: object = attrs.field(alias="clock")
    _wall: Callable[[], float] = attrs.field(default=time.time, alias="wall")
    _sync: str = attrs.field(default="group", alias="sync")
    _group_ms: float = attrs.field(default=DEFAULT_GROUP_MS, alias="group_ms")
    _segment_bytes: int = attrs.field(default=DEFAULT_SEGMENT_BYTES, alias="segment_bytes")
    _max_bytes: int | None = attrs.field(default=DEFAULT_MAX_BYTES, alias="max_bytes")
    _full_policy: str = attrs.field(default="drop_oldest", alias="full_policy")
    _on_problem: ProblemCallback | None = attrs.field(default=None, alias="on_problem")
    _fsync: Callable[[int], None] = attrs.field(default=os.fsync, alias="fsync")
    _fsync_runner: Callable[[Callable[[], Any]], Deferred] | None = attrs.field(default=None, alias="fsync_runner")
    _calls: SysCalls = attrs.field(factory=SysCalls, alias="_calls")  # private seam: tests inject OS errors
    _fsync_thread: FsyncThread | None = attrs.field(init=False, default=None)
    received: FileReceivedIds | None = attrs.field(init=False, default=None)
    """The persisted received-id window of this directory (:class:`~gwproactor.interfaces.IReceivedIds`)."""
    _parked: ParkedArea = attrs.field(init=False)
    _index: PackedIndex = attrs.field(init=False, factory=PackedIndex)  # id -> (segment, offset, size, time)
    _errors: WriteErrors = attrs.field(init=False)
    _bound: SizeBound = attrs.field(init=False)
    _segments: SegmentLog = attrs.field(init=False)
    _commits: GroupCommit = attrs.field(init=False)
    _lock: DirectoryLock = attrs.field(init=False)
    _closed: bool = attrs.field(init=False, default=False)
    _pending_bytes: int = attrs.field(init=False, default=0)
    _appended: int = attrs.field(init=False, default=0)
    _acked: int = attrs.field(init=False, default=0)
    _set_aside: int = attrs.field(init=False, default=0)
    _corrupt_records: int = attrs.field(init=False, default=0)
    _corrupt_files: int = attrs.field(init=False, default=0)
    recovery_report: list[str] = attrs.field(init=False, factory=list)
    """One line per thing recovery set aside or repaired at open."""

    def __attrs_post_init__(self) -> None:
        # Only objects: no file is touched before open().
        self._errors = WriteErrors(self._on_problem)
        self._bound = SizeBound(self._max_bytes, self._full_policy, self._on_problem)
        self._segments = SegmentLog(self._directory, segment_bytes=self._segment_bytes, sync=self._sync,
                                    calls=self._calls, wall=self._wall, errors=self._errors)
        self._commits = GroupCommit(self._segments, clock=self._clock, sync=self._sync, group_ms=self._group_ms,
                                    fsync=self._fsync, runner=self._fsync_runner, calls=self._calls,
                                    errors=self._errors, on_problem=self._on_problem, on_failed=self._unpend,
                                    directory=self._directory)
        self._lock = DirectoryLock(self._directory)
        self._parked = ParkedArea(os.path.join(self._directory, PARKED_DIR), fsync=self._fsync, wall=self._wall)

    @classmethod
    def open(cls, directory: str, *, clock: Any = None, sync: str = "group", group_ms: float = DEFAULT_GROUP_MS,
             segment_bytes: int = DEFAULT_SEGMENT_BYTES, max_bytes: int | None = DEFAULT_MAX_BYTES,
             full_policy: str = "drop_oldest", on_problem: ProblemCallback | None = None,
             fsync: Callable[[int], None] = os.fsync, fsync_in_thread: bool = False,
             fsync_runner: Callable[[Callable[[], Any]], Deferred] | None = None,
             received_window: int = DEFAULT_WINDOW, wall: Callable[[], float] = time.time,
             _calls: SysCalls | None = None) -> FileEventStore:
        """Open (creating if needed) and recover the store in ``directory``.

        Never refuses to start because of what is in the directory: unreadable entries and corrupt
        records are moved or copied into ``set-aside/`` and reported through ``on_problem``.
        ``_calls`` (private) replaces the ``open`` / ``write`` / ``dup`` calls of the write path
        (:class:`~gwproactor.store._common.SysCalls`): tests inject OS errors through it.

        :raises StoreLocked: if another open store holds the directory.
        :raises ValueError: for bad settings.
        """
        check_choice("sync", sync, SYNC_POLICIES)
        check_choice("full_policy", full_policy, FULL_POLICIES)
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive; got {segment_bytes}")
        if clock is None:
            from twisted.internet import reactor as clock
        thread = None
        if fsync_in_thread and fsync_runner is None:
            fsync_runner = thread = FsyncThread(clock)
        self = cls(directory=directory, clock=clock, wall=wall, sync=sync, group_ms=group_ms,
                   segment_bytes=segment_bytes, max_bytes=max_bytes, full_policy=full_policy, on_problem=on_problem,
                   fsync=fsync, fsync_runner=fsync_runner, _calls=_calls if _calls is not None else SysCalls())
        self._fsync_thread = thread
        os.makedirs(directory, exist_ok=True)
        make_room_for(directory, LOCK_NAME, stat.S_ISREG)
        self._lock.acquire()
        try:
            self._segments.open_directory()
            make_room_for(directory, SET_ASIDE_DIR, stat.S_ISDIR)
            os.makedirs(os.path.join(directory, SET_ASIDE_DIR), exist_ok=True)
            make_room_for(directory, PARKED_DIR, stat.S_ISDIR)
            self._parked.load()
            for line in self._parked.problems:
                report_problem(on_problem, "event store: a parked event cannot be read", line)
            self._recover()
            self.received = FileReceivedIds.open(directory, clock=clock, wall=wall, window=received_window, sync=sync,
                                                 group_ms=group_ms, fsync=fsync, on_problem=on_problem,
                                                 on_dirty=self._commits.received_dirty, runner=fsync_runner,
                                                 _calls=self._calls)
            self._commits.attach_received(self.received)
        except BaseException:  # release the lock, files and thread, then re-raise whatever it is
            self._segments.close_files()
            self._segments.close_directory()
            self._lock.release()
            if thread is not None:
                thread.stop()
            raise
        if len(self._index) > 10_000:
            release_freed_memory()
        _log.info("event store {directory} opened: {pending} pending events in {segments} segments, sync {sync}",
                  directory=directory, pending=len(self._index), segments=len(self._segments), sync=sync)
        return self

    def _recover(self) -> None:
        recovery = Recovery(self._directory, log=self._segments, index=self._index, commit=self._commits,
                            calls=self._calls, wall=self._wall, on_problem=self._on_problem)
        self.recovery_report = recovery.report
        recovery.run()
        self._pending_bytes += recovery.pending_bytes
        self._corrupt_records += recovery.corrupt_records
        self._corrupt_files += recovery.corrupt_files

    # --- IEventStore ----------------------------------------------------------

    def append(self, event_id: str, payload: bytes) -> Deferred:
        """Store ``payload`` under ``event_id``; the Deferred fires when durable under the sync policy.

        Errbacks with StoreFull (``reject_new`` at the bound, or a record larger than the bound),
        StoreClosed, StoreWriteError (opening a segment, the write or the fsync failed: the event is
        not pending, append it again later) or StoreError (an id longer than 65535 UTF-8 bytes).
        """
        if self._closed:
            return fail(StoreClosed("append on a closed event store"))
        if event_id in self._index:
            if self._commits.in_group(event_id):
                return self._commits.join_group(event_id, self._index.get(event_id)[0])
            return succeed(event_id)
        now = self._wall()
        try:
            frame = _format.encode(_format.KIND_EVENT, now, event_id, payload)
        except ValueError as e:
            return fail(StoreError(f"event {event_id[:80]!r} cannot be stored: {e}"))
        size = len(frame)
        bound = self._bound
        limit = bound.max_bytes
        over = limit is not None and self._pending_bytes + size > limit  # else the bound has nothing to do
        if over and bound.rejects(size, self._pending_bytes):
            bound.make_room(event_id, size, self._pending_bytes, self._drop_oldest)  # counts and reports it
            return fail(StoreFull(f"event store full ({self._pending_bytes} of {self._max_bytes} bytes pending); "
                                  f"event {event_id} rejected"))
        log = self._segments
        try:
            seg = log.segment_for(size)
        except OSError as e:
            return fail(self._errors.report("segment open", e.filename or self._directory, e))
        try:
            log.write(seg, frame)
        except OSError as e:
            return fail(self._errors.report("append", seg.log_path, e))
        if over:  # drop_oldest only now: a failed write drops nothing
            bound.make_room(event_id, size, self._pending_bytes, self._drop_oldest)
        self._index[event_id] = (seg.number, log.added(seg, size), size, now)
        self._pending_bytes += size
        self._appended += 1
        return self._commits.durable(event_id, seg.number)

    def _unpend(self, event_id: str, number: int) -> None:
        """An append into segment ``number`` failed: its event is no longer pending (its record gets an ack)."""
        entry = self._index.get(event_id)
        if entry is None or entry[0] != number:
            return  # acked or dropped meanwhile
        del self._index[event_id]
        self._forget(event_id, entry, sync=False)

    def pending_ids(self) -> list[str]:
        """Return the pending ids, oldest first."""
        return list(self._index)

    def is_pending(self, event_id: str) -> bool:
        """True if ``event_id`` is pending (appended, neither acked, dropped, set aside nor parked)."""
        return event_id in self._index

    def _locate(self, event_id: str) -> tuple:
        """``(entry, segment)`` of a pending event; raise StoreClosed / EventNotFound."""
        self._check_open()
        entry = self._index.get(event_id)
        if entry is None:
            raise EventNotFound(f"no pending event {event_id!r}")
        return entry, self._segments.segment(entry[0])

    def read(self, event_id: str) -> bytes:
        """Read a pending event's payload from disk; raise EventNotFound / CorruptRecord / StoreClosed.

        An OS error (out of descriptors even after closing the ones this store caches, EIO) raises
        :class:`~gwproactor.errors.StoreReadError`, a CorruptRecord whose record may be intact.
        """
        (_, offset, size, _), seg = self._locate(event_id)
        try:
            raw = self._segments.read_record(seg, offset, size)
        except OSError as e:
            raise StoreReadError(f"event {event_id} in {seg.log_path} at {offset} cannot be read now: {e}",
                                 errno=e.errno) from e
        rec = _format.parse_at(raw, memoryview(raw), 0)
        if rec is None or rec.size != size or rec.kind != _format.KIND_EVENT or rec.event_id != event_id:
            raise CorruptRecord(f"event {event_id} in {seg.log_path} at {offset} failed its checks "
                                "(length, CRC or id); set it aside")
        return _format.data_of(raw, rec)

    def ack(self, event_id: str) -> bool:
        """Mark ``event_id`` delivered (an ack record is written); True if it was pending."""
        self._check_open()
        entry = self._index.pop(event_id, None)
        if entry is None:
            return False
        self._forget(event_id, entry)
        self._acked += 1
        return True

    def ack_many(self, event_ids: list[str]) -> list[bool]:
        """:meth:`ack` for several events (a batch): one ack-file write per segment; True for each one that was pending."""
        self._check_open()
        results = []
        by_segment: dict[int, list[tuple[str, int]]] = {}
        index = self._index
        for event_id in event_ids:
            entry = index.pop(event_id, None)
            results.append(entry is not None)
            if entry is not None:
                number, offset, size, _ = entry
                self._pending_bytes -= size
                self._acked += 1
                by_segment.setdefault(number, []).append((event_id, offset))
        written = False
        for number, acks in by_segment.items():
            written = self._segments.release_many(number, acks) or written
        if written:
            self._commits.sync_soon()
        return results

    def set_aside(self, event_id: str, reason: str) -> None:
        """Copy a pending event's record to ``set-aside/events.log`` (+ a line in ``reasons.jsonl``), then ack it.

        :raises EventNotFound: if ``event_id`` is not pending.
        """
        entry, seg = self._locate(event_id)
        _, offset, size, t = entry
        try:
            raw = self._segments.read_record(seg, offset, size)
        except OSError as e:
            raw = b""
            reason = f"{reason} (record unreadable: {e})"
        try:
            with open(os.path.join(self._directory, SET_ASIDE_DIR, "events.log"), "ab") as f:
                f.write(raw)
            with open(os.path.join(self._directory, SET_ASIDE_DIR, "reasons.jsonl"), "a",
                      encoding="utf-8") as f:
                f.write(json.dumps({"id": event_id, "reason": reason, "appended": t,
                                    "set_aside": self._wall(), "bytes": len(raw)}) + "\n")
        except OSError as e:
            report_problem(self._on_problem, "event store could not save a set-aside event",
                           f"event {event_id}: {e}; it is removed from the store anyway")
        del self._index[event_id]
        self._forget(event_id, entry)
        self._set_aside += 1

    def park(self, event_id: str, reason: str, payload: bytes | None = None) -> bool:
        """Keep an event the peer cannot accept in ``parked/`` (see :class:`~gwproactor.interfaces.IEventStore`).

        The parked copy is written and fsynced before a pending event leaves the log.

        :raises EventNotFound: / :raises CorruptRecord: for a pending event that is missing / unreadable.
        :raises StoreWriteError: if the parked copy cannot be written (the event stays as it was).
        """
        self._check_open()
        entry = None
        if payload is None:
            payload = self.read(event_id)
            entry = self._index.get(event_id)
        try:
            parked = self._parked.park(event_id, payload, reason, entry[3] if entry else None)
        except OSError as e:
            raise self._errors.report("park", os.path.join(self._directory, PARKED_DIR), e) from e
        if entry is not None:
            del self._index[event_id]
            self._forget(event_id, entry)
        return parked

    def parked(self) -> list[dict]:
        """The parked events, oldest park first."""
        self._check_open()
        return self._parked.entries()

    def requeue(self, event_ids: list[str] | None = None) -> Deferred:
        """Append parked events to the log again; each leaves ``parked/`` once durable there."""
        self._check_open()
        ids = self._parked.ids() if event_ids is None else list(event_ids)
        unknown = [i for i in ids if i not in self._parked]
        if unknown:
            return fail(EventNotFound(f"not parked: {', '.join(unknown[:5])}"))
        appends = []
        for event_id in ids:
            try:
                data = self._parked.read(event_id)
            except (EventNotFound, CorruptRecord) as e:
                report_problem(self._on_problem, "event store could not re-queue a parked event", str(e))
                continue
            appends.append(self.append(event_id, data).addCallback(self._requeued))
        return DeferredList(appends, consumeErrors=True).addCallback(self._requeue_result)

    def _requeued(self, event_id: str) -> str:
        try:
            self._parked.remove(event_id)
        except OSError as e:
            # Pending and still parked: a later requeue finds it pending already (a no-op append).
            report_problem(self._on_problem, "event store could not remove a re-queued parked event", str(e))
        return event_id

    def _requeue_result(self, results: list) -> list[str]:
        done = []
        for ok, value in results:
            if ok:
                done.append(value)
            else:
                report_problem(self._on_problem, "event store could not re-queue a parked event",
                               value.getErrorMessage())
        return done

    def stats(self) -> dict:
        """Return the store's counters (see ``docs/store.rst``)."""
        oldest = next(iter(self._index.values()), None)
        return {
            "pending": len(self._index),
            "pending_bytes": self._pending_bytes,
            "oldest_age_s": max(0.0, self._wall() - oldest[3]) if oldest else 0.0,
            "appended": self._appended,
            "acked": self._acked,
            "dropped": self._bound.dropped,
            "rejected": self._bound.rejected,
            "set_aside": self._set_aside,
            "parked": len(self._parked),
            "corrupt_records": self._corrupt_records,
            "corrupt_files": self._corrupt_files,
            "write_errors": self._errors.count,
            "segments": len(self._segments),
            "disk_bytes": self._segments.disk_bytes,
            "fsyncs": self._commits.fsyncs,
        }

    def close(self) -> Deferred:
        """Fsync what was written (under every policy), fire waiting appends, close every file, release the lock.

        Waits for an fsync batch or a compaction of the received-id window still running in the thread.
        """
        if self._closed:
            return succeed(None)
        self._closed = True
        waits = []
        idle = self._commits.begin_close()
        if idle is not None:
            waits.append(idle)
        if self.received is not None and self.received.compacting:
            waits.append(self.received.when_idle())
        if waits:
            return gatherResults(waits).addCallback(lambda _: self._finish_close())
        return self._finish_close()

    def _finish_close(self) -> Deferred:
        self._segments.retry_unwritten_acks()  # a last try for the acks that failed
        self._commits.final_commit()  # on this thread
        self._segments.close_segments()
        if self.received is not None:
            self.received.close()
        self._segments.close_directory()
        self._lock.release()
        if self._fsync_thread is not None:
            self._fsync_thread.stop()
            self._fsync_thread = None
        return succeed(None)

    # --- internals ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the event store is closed")

    def _forget(self, event_id: str, entry: tuple, sync: bool = True) -> None:
        """Ack a no-longer-pending event (its segment is deleted instead if that was its last one)."""
        number, offset, size, _ = entry
        self._pending_bytes -= size
        if self._segments.release(number, event_id, offset) and sync:
            self._commits.sync_soon()

    def _drop_oldest(self) -> int:
        event_id, entry = self._index.popitem_oldest()
        self._forget(event_id, entry)
        return entry[2]
