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
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from typing import Any
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred, DeferredList, fail, gatherResults, succeed
from twisted.logger import Logger
from zope.interface import implementer

from gwproactor.errors import CorruptRecord, EventNotFound, StoreClosed, StoreError, StoreFull, StoreReadError
from gwproactor.interfaces import IEventStore
from gwproactor.store import _format
from gwproactor.store._common import (
    DEFAULT_MAX_BYTES,
    DEFAULT_WINDOW,
    FULL_POLICIES,
    SYNC_POLICIES,
    BoundedStore,
    ProblemCallback,
    StoreLocked,
    StoreWriteError,
    SysCalls,
    check_choice,
    report_problem,
    undo_partial_write,
)
from gwproactor.store._commit import CommitMixin, FsyncThread
from gwproactor.store._parked import ParkedArea
from gwproactor.store._received import FileReceivedIds
from gwproactor.store._recovery import RecoveryMixin, Segment
from gwproactor.store._scan import LOCK_NAME, PARKED_DIR, SET_ASIDE_DIR, segment_name

DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024
DEFAULT_GROUP_MS = 10.0
_MAX_READ_FDS = 32
_log = Logger()


def _release_freed_memory() -> None:
    """Give memory freed by recovery back to the OS (glibc keeps it otherwise; a no-op elsewhere).

    Recovery of a large store parses every record once; without this the process keeps
    that transient peak (about 30 MB for 100,000 pending events) as resident memory.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PackedIndex:
    """The pending-id index: an insertion-ordered dict of id -> one packed int.

    An entry ``(segment number, offset, size, time)`` is packed into one Python int
    (time in whole milliseconds), which costs about a third of a 4-tuple of numbers:
    about 170 bytes per pending id with its uuid key, so 100,000 pending events
    take about 17 MB.
    """

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: dict[str, int] = {}

    @staticmethod
    def _pack(entry: tuple) -> int:
        number, offset, size, t = entry
        return (((int(t * 1000) << 32 | size) << 40 | offset) << 24) | number

    @staticmethod
    def _unpack(v: int) -> tuple:
        number = v & 0xFFFFFF
        v >>= 24
        offset = v & 0xFFFFFFFFFF
        v >>= 40
        return number, offset, v & 0xFFFFFFFF, (v >> 32) / 1000.0

    def __setitem__(self, key: str, entry: tuple) -> None:
        self._d[key] = self._pack(entry)

    def __delitem__(self, key: str) -> None:
        del self._d[key]

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __iter__(self):
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: str, default: Any = None) -> Any:
        v = self._d.get(key)
        return default if v is None else self._unpack(v)

    def pop(self, key: str, default: Any = None) -> Any:
        v = self._d.pop(key, None)
        return default if v is None else self._unpack(v)

    def values(self):
        return (self._unpack(v) for v in self._d.values())

    def popitem_oldest(self) -> tuple:
        key = next(iter(self._d))
        return key, self._unpack(self._d.pop(key))


def _lock_holder(fd: int) -> int | None:
    """The pid the holder of a store's LOCK wrote into it (None if unreadable)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


@implementer(IEventStore)
@attrs.define(eq=False)
class FileEventStore(BoundedStore, RecoveryMixin, CommitMixin):
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
    _fsync_runner: Callable[[Callable[[], list]], Deferred] | None = attrs.field(default=None, alias="fsync_runner")
    _calls: SysCalls = attrs.field(factory=SysCalls, alias="_calls")  # private seam: tests inject OS errors
    _fsync_thread: FsyncThread | None = attrs.field(init=False, default=None)
    received: FileReceivedIds | None = attrs.field(init=False, default=None)
    """The persisted received-id window of this directory (:class:`~gwproactor.interfaces.IReceivedIds`)."""
    _parked: ParkedArea | None = attrs.field(init=False, default=None)
    _index: PackedIndex = attrs.field(init=False, factory=lambda: PackedIndex())  # id -> (segment, offset, size, time)
    _segments: dict = attrs.field(init=False, factory=dict)
    _active: Segment | None = attrs.field(init=False, default=None)
    _active_broken: bool = attrs.field(init=False, default=False)
    _next_number: int = attrs.field(init=False, default=1)
    _lock_fd: int | None = attrs.field(init=False, default=None)
    _dir_fd: int | None = attrs.field(init=False, default=None)  # held open: a directory fsync needs no new fd
    _new_segments: set = attrs.field(init=False, factory=set)  # created since the last directory fsync
    _dup_failing: bool = attrs.field(init=False, default=False)
    _waiters: list = attrs.field(init=False, factory=list)
    _group_ids: set = attrs.field(init=False, factory=set)
    _group_call: object = attrs.field(init=False, default=None)
    _last_commit: float | None = attrs.field(init=False, default=None)
    _dirty: set = attrs.field(init=False, factory=set)
    _fsync_busy: bool = attrs.field(init=False, default=False)
    _directory_dirty: bool = attrs.field(init=False, default=False)
    _commit_wanted: bool = attrs.field(init=False, default=False)
    _idle_waiters: list = attrs.field(init=False, factory=list)
    _read_fds: int = attrs.field(init=False, default=0)
    _closed: bool = attrs.field(init=False, default=False)
    _pending_bytes: int = attrs.field(init=False, default=0)
    _disk_bytes: int = attrs.field(init=False, default=0)
    _appended: int = attrs.field(init=False, default=0)
    _acked: int = attrs.field(init=False, default=0)
    _dropped: int = attrs.field(init=False, default=0)
    _rejected: int = attrs.field(init=False, default=0)
    _set_aside: int = attrs.field(init=False, default=0)
    _corrupt_records: int = attrs.field(init=False, default=0)
    _corrupt_files: int = attrs.field(init=False, default=0)
    _write_errors: int = attrs.field(init=False, default=0)
    _fsyncs: int = attrs.field(init=False, default=0)
    recovery_report: list[str] = attrs.field(init=False, factory=list)
    """One line per thing recovery set aside or repaired at open."""

    @classmethod
    def open(cls, directory: str, *, clock=None, sync: str = "group", group_ms: float = DEFAULT_GROUP_MS,
             segment_bytes: int = DEFAULT_SEGMENT_BYTES, max_bytes: int | None = DEFAULT_MAX_BYTES,
             full_policy: str = "drop_oldest", on_problem: ProblemCallback | None = None,
             fsync: Callable[[int], None] = os.fsync, fsync_in_thread: bool = False,
             fsync_runner: Callable[[Callable[[], list]], Deferred] | None = None,
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
        self = cls(directory=directory, clock=clock, wall=wall, sync=sync, group_ms=group_ms, segment_bytes=segment_bytes,
                   max_bytes=max_bytes, full_policy=full_policy, on_problem=on_problem, fsync=fsync,
                   fsync_runner=fsync_runner, _calls=_calls if _calls is not None else SysCalls())
        self._fsync_thread = thread
        os.makedirs(directory, exist_ok=True)
        self._make_room_for(LOCK_NAME, stat.S_ISREG)
        self._lock()
        try:
            self._dir_fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
            self._make_room_for(SET_ASIDE_DIR, stat.S_ISDIR)
            os.makedirs(os.path.join(directory, SET_ASIDE_DIR), exist_ok=True)
            self._make_room_for(PARKED_DIR, stat.S_ISDIR)
            self._parked = ParkedArea(os.path.join(directory, PARKED_DIR), fsync=fsync, wall=self._wall)
            self._parked.load()
            for line in self._parked.problems:
                report_problem(on_problem, "event store: a parked event cannot be read", line)
            self._recover()
            self.received = FileReceivedIds.open(directory, clock=clock, wall=wall, window=received_window, sync=sync,
                                                 group_ms=group_ms, fsync=fsync, on_problem=on_problem,
                                                 on_dirty=self._received_dirty, runner=fsync_runner,
                                                 _calls=self._calls)
        except BaseException:
            for seg in self._segments.values():
                self._close_fds(seg)
            self._close_dir_fd()
            self._unlock()
            if thread is not None:
                thread.stop()
            raise
        if len(self._index) > 10_000:
            _release_freed_memory()
        _log.info("event store {directory} opened: {pending} pending events in {segments} segments, sync {sync}",
                  directory=directory, pending=len(self._index), segments=len(self._segments), sync=sync)
        return self

    # --- lock -----------------------------------------------------------------

    def _lock(self) -> None:
        # The flock is the lock; the pid written into the file only names its holder in the error.
        fd = os.open(os.path.join(self._directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _lock_holder(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                if holder is None:
                    who = "another store (its pid is unknown)"
                else:
                    who = f"{'this process' if holder == os.getpid() else 'process'} {holder}"
                raise StoreLocked(f"event store {self._directory} is locked by {who}; stop it, or give this "
                                  "one a directory of its own", pid=holder) from None
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # a full disk must not stop the store from opening; the error just cannot name us
        self._lock_fd = fd

    def _make_room_for(self, name: str, is_right_kind: Callable[[int], bool]) -> None:
        """Rename a wrong kind of entry squatting on ``name``; recovery then moves it into set-aside/."""
        path = os.path.join(self._directory, name)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if not is_right_kind(mode):
            target, n = f"{path}.misplaced", 0
            while os.path.lexists(target):
                n += 1
                target = f"{path}.misplaced{n}"
            os.rename(path, target)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _close_dir_fd(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

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
            if event_id in self._group_ids:
                d = Deferred()
                self._waiters.append((d, event_id, self._index.get(event_id)[0]))
                return d
            return succeed(event_id)
        now = self._wall()
        try:
            frame = _format.encode(_format.KIND_EVENT, now, event_id, payload)
        except ValueError as e:
            return fail(StoreError(f"event {event_id[:80]!r} cannot be stored: {e}"))
        size = len(frame)
        if self._rejects(size):
            self._make_room(event_id, size)  # counts and reports the rejection
            return fail(StoreFull(f"event store full ({self._pending_bytes} of {self._max_bytes} bytes pending); "
                                  f"event {event_id} rejected"))
        try:
            seg = self._segment_for(size)
        except OSError as e:
            return fail(self._io_error("segment open", e.filename or self._directory, e))
        try:
            self._calls.write_all(seg.fd, frame)
        except OSError as e:
            # Nothing of the record may stay behind: cut the file back; if that fails too (or the disk
            # itself is failing), the next append starts a new segment.
            if not undo_partial_write(seg.fd, seg.size) or e.errno not in (errno.ENOSPC, errno.EDQUOT):
                self._active_broken = True
            return fail(self._io_error("append", seg.log_path, e))
        self._make_room(event_id, size)  # drop_oldest only now: a failed write drops nothing
        self._index[event_id] = (seg.number, seg.size, size, now)
        seg.size += size
        seg.live += 1
        self._pending_bytes += size
        self._disk_bytes += size
        self._appended += 1
        seg.dirty_log = True
        self._dirty.add(seg)
        if self._sync == "never":
            return succeed(event_id)
        d = Deferred()
        if self._sync == "always" and self._fsync_runner is None:
            self._finish_group([(d, event_id, seg.number)], self._sync_dirty())
            return d
        self._waiters.append((d, event_id, seg.number))
        self._group_ids.add(event_id)
        if self._sync == "always":
            self._commit()
        else:
            self._schedule_commit()
        return d

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

    def _locate(self, event_id: str) -> tuple:
        """``(entry, segment)`` of a pending event; raise StoreClosed / EventNotFound."""
        self._check_open()
        entry = self._index.get(event_id)
        if entry is None:
            raise EventNotFound(f"no pending event {event_id!r}")
        return entry, self._segments[entry[0]]

    def read(self, event_id: str) -> bytes:
        """Read a pending event's payload from disk; raise EventNotFound / CorruptRecord / StoreClosed.

        An OS error (out of descriptors even after closing the ones this store caches, EIO) raises
        :class:`~gwproactor.errors.StoreReadError`, a CorruptRecord whose record may be intact.
        """
        (_, offset, size, _), seg = self._locate(event_id)
        try:
            raw = os.pread(self._read_fd(seg), size, offset)
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

    def set_aside(self, event_id: str, reason: str) -> None:
        """Copy a pending event's record to ``set-aside/events.log`` (+ a line in ``reasons.jsonl``), then ack it.

        :raises EventNotFound: if ``event_id`` is not pending.
        """
        entry, seg = self._locate(event_id)
        _, offset, size, t = entry
        try:
            raw = os.pread(self._read_fd(seg), size, offset)
        except OSError as e:
            raw = b""
            reason = f"{reason} (record unreadable: {e})"
        try:
            with open(self._path(SET_ASIDE_DIR, "events.log"), "ab") as f:
                f.write(raw)
            with open(self._path(SET_ASIDE_DIR, "reasons.jsonl"), "a", encoding="utf-8") as f:
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
            raise self._io_error("park", os.path.join(self._directory, PARKED_DIR), e) from e
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
            "dropped": self._dropped,
            "rejected": self._rejected,
            "set_aside": self._set_aside,
            "parked": len(self._parked) if self._parked is not None else 0,
            "corrupt_records": self._corrupt_records,
            "corrupt_files": self._corrupt_files,
            "write_errors": self._write_errors,
            "segments": len(self._segments),
            "disk_bytes": self._disk_bytes,
            "fsyncs": self._fsyncs,
        }

    def close(self) -> Deferred:
        """Fsync what was written (under every policy), fire waiting appends, close every file, release the lock.

        Waits for an fsync batch or a compaction of the received-id window still running in the thread.
        """
        if self._closed:
            return succeed(None)
        if self._group_call is not None and self._group_call.active():
            self._group_call.cancel()
        self._group_call = None
        self._closed = True
        waits = []
        if self._fsync_busy:
            idle: Deferred = Deferred()
            self._idle_waiters.append(idle)
            waits.append(idle)
        if self.received is not None and self.received.compacting:
            waits.append(self.received.when_idle())
        if waits:
            return gatherResults(waits).addCallback(lambda _: self._finish_close())
        return self._finish_close()

    def _finish_close(self) -> Deferred:
        self._fsync_runner = None  # the last commit runs here, on this thread
        for seg in list(self._segments.values()):
            if seg.unwritten:
                self._write_ack(seg, None, None, sync=False)  # a last try for the acks that failed
        self._commit()
        active = self._active
        self._active = None
        if active is not None and active.live == 0:
            self._delete_segment(active)
        for seg in list(self._segments.values()):
            self._close_fds(seg)
        if self.received is not None:
            self.received.close()
        self._close_dir_fd()
        self._unlock()
        if self._fsync_thread is not None:
            self._fsync_thread.stop()
            self._fsync_thread = None
        return succeed(None)

    # --- internals ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the event store is closed")

    def _io_error(self, what: str, path: str, e: BaseException) -> StoreWriteError:
        """Count and report a failed OS call; return the StoreWriteError for whatever it fails.

        The summary is constant per ``what`` (the proactor rate-limits problems by summary); the
        details and the message name the file and the error.
        """
        self._write_errors += 1
        report_problem(self._on_problem, f"event store {what} failed", f"{path}: {e}")
        return StoreWriteError(f"event store {what} failed on {path}: {e}", errno=getattr(e, "errno", None),
                               path=path)

    def _segment_for(self, size: int) -> Segment:
        """The segment to append ``size`` bytes to (a new one when needed).

        :raises OSError: if a new segment cannot be created (nothing changed but the old one's retirement).
        """
        seg = self._active
        if seg is not None and not self._active_broken and (seg.size == 0 or seg.size + size <= self._segment_bytes):
            return seg
        if seg is not None:
            self._retire(seg)
        number = self._next_number
        seg = Segment(number, self._path(segment_name(number, "log")), self._path(segment_name(number, "ack")))
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

    def _retire(self, seg: Segment) -> None:
        """Stop appending to ``seg``: delete it if fully acked, else close it once no commit needs it."""
        self._active = None
        if seg.live == 0:
            self._delete_segment(seg)
            return
        if self._sync == "never":
            seg.dirty_log = False  # never fsynced; reads reopen it
        if seg.fd is not None and not seg.dirty_log:
            os.close(seg.fd)
            seg.fd = None
            self._read_fds -= 1
        if not (seg.dirty_log or seg.dirty_ack):
            self._dirty.discard(seg)

    def _synced(self, seg: Segment) -> None:
        """A commit took over the sync of ``seg``: a retired segment's descriptor is no longer needed."""
        if seg is not self._active and seg.fd is not None:
            os.close(seg.fd)
            seg.fd = None
            self._read_fds -= 1

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

    def _read_fd(self, seg: Segment) -> int:
        if seg.fd is None:
            if self._read_fds >= _MAX_READ_FDS:
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

    def _forget(self, event_id: str, entry: tuple, sync: bool = True) -> None:
        """Write the ack of a no-longer-pending event and delete its segment if that was its last one."""
        number, offset, size, _ = entry
        seg = self._segments[number]
        self._pending_bytes -= size
        seg.live -= 1
        if seg.live == 0 and seg is not self._active:
            self._delete_segment(seg)
            return
        self._write_ack(seg, event_id, offset, sync)

    def _write_ack(self, seg: Segment, event_id: str | None, offset: int | None, sync: bool = True) -> None:
        """Append the ack of ``event_id`` (with any acks of ``seg`` that failed before) to its ack file.

        A failure is reported and the ack kept for the segment's next ack (and ``close``): until it is
        written, a restart would deliver the event again (a duplicate, never a loss).
        """
        if event_id is not None:
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
            self._io_error("ack write", seg.ack_path, e)
            return
        seg.unwritten = []
        seg.ack_size += len(data)
        self._disk_bytes += len(data)
        seg.dirty_ack = True
        self._dirty.add(seg)
        if sync and self._sync != "never":
            self._sync_soon()

    def _drop_oldest(self) -> int:
        event_id, entry = self._index.popitem_oldest()
        self._forget(event_id, entry)
        return entry[2]

    def _delete_segment(self, seg: Segment) -> None:
        self._close_fds(seg)
        self._dirty.discard(seg)
        self._new_segments.discard(seg.number)
        seg.unwritten = []
        self._segments.pop(seg.number, None)
        for path in (seg.log_path, seg.ack_path):  # log first: a lone ack file is discarded at open
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                self._io_error("delete", path, e)
        self._disk_bytes -= seg.size + seg.ack_size

    def _close_fds(self, seg: Segment) -> None:
        if seg.fd is not None:
            os.close(seg.fd)
            seg.fd = None
            self._read_fds -= 1
        if seg.ack_fd is not None:
            os.close(seg.ack_fd)
            seg.ack_fd = None
