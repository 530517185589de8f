"""The persisted window of recently accepted incoming event ids (receiver-side dedup).

``received.log`` in the store directory holds one frame (kind 3, see :mod:`gwproactor.store._format`)
per remembered id.  When it holds twice the window it is rewritten with the current window only
(``received.tmp``, fsync, rename, fsync of the directory), so it stays between ``window`` and
``2 * window`` records.  In a store with an fsync thread the rewrite runs in that thread; ids
remembered meanwhile go to the old file as usual and are appended to the new one just before the
rename, so a process that dies at any step leaves a window with every id it had accepted.
"""

from __future__ import annotations

import errno
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from gwproactor.interfaces import IReceivedIds
from gwproactor.store import _format
from gwproactor.store._common import (
    DEFAULT_WINDOW,
    SYNC_POLICIES,
    ProblemCallback,
    SysCalls,
    check_choice,
    report_problem,
    undo_partial_write,
)
from gwproactor.store._scan import RECEIVED_NAME, TMP_SUFFIX, read_regular, scan_received

_TMP_NAME = "received" + TMP_SUFFIX


@implementer(IReceivedIds)
@attrs.define(eq=False)
class FileReceivedIds:
    """:class:`~gwproactor.interfaces.IReceivedIds` persisted in ``directory/received.log``.

    Build it with :meth:`open`.  Under ``always`` each :meth:`remember` is fsynced; under ``group``
    one fsync follows within ``group_ms``; under ``never`` ids reach the OS at once but are not
    fsynced.  A lost id can only let one duplicate through after a crash.

    With ``on_dirty`` (how :class:`~gwproactor.store.FileEventStore` opens it) the window never
    fsyncs on its own: a write sets :attr:`dirty` and calls ``on_dirty()`` (``on_dirty(directory=True)``
    after a compaction's rename), and the store's next commit fsyncs a duplicate of the file's
    descriptor (:meth:`dup_for_sync`) with its own files, in the store's fsync thread when it has one.
    With ``runner`` (the store's fsync thread; requires ``on_dirty``) the compaction's rewrite runs
    there too, off the calling thread.

    ``clock`` runs the group fsync timer; each record's time is ``wall()`` (:func:`time.time`).
    """

    _directory: str = attrs.field(alias="directory")
    _clock: Any = attrs.field(alias="clock")
    _wall: Callable[[], float] = attrs.field(default=time.time, alias="wall")
    window: int = DEFAULT_WINDOW
    _sync: str = attrs.field(default="group", alias="sync")
    _group_ms: float = attrs.field(default=10.0, alias="group_ms")
    _fsync: Callable[[int], None] = attrs.field(default=os.fsync, alias="fsync")
    _on_problem: ProblemCallback | None = attrs.field(default=None, alias="on_problem")
    _on_dirty: Callable[..., None] | None = attrs.field(default=None, alias="on_dirty")
    _runner: Callable[[Callable[[], object]], Deferred] | None = attrs.field(default=None, alias="runner")
    _calls: SysCalls = attrs.field(factory=SysCalls, alias="_calls")
    dirty: bool = attrs.field(init=False, default=False)
    """True while ``received.log`` holds writes that no fsync has covered yet."""
    _ids: OrderedDict = attrs.field(init=False, factory=OrderedDict)
    _fd: int | None = attrs.field(init=False, default=None)
    _size: int = attrs.field(init=False, default=0)
    _records: int = attrs.field(init=False, default=0)
    _compact_at: int = attrs.field(init=False, default=0)
    _during: list | None = attrs.field(init=False, default=None)  # frames written while a compaction runs
    _idle: list = attrs.field(init=False, factory=list)
    _closed: bool = attrs.field(init=False, default=False)
    _sync_call: Any = attrs.field(init=False, default=None)
    _held: list = attrs.field(init=False, factory=list)  # records kept for the next flush (see hold_writes)
    # Offsets in received.log of the last `window` records (None: not known, e.g. after a failed write).
    _starts: deque | None = attrs.field(init=False, default=None)
    _schedule_flush: Callable[[Callable[[], None]], object] | None = attrs.field(init=False, default=None)
    corrupt_records: int = attrs.field(init=False, default=0)
    fsyncs: int = attrs.field(init=False, default=0)
    compactions: int = attrs.field(init=False, default=0)

    @classmethod
    def open(cls, directory: str, *, clock: Any = None, window: int = DEFAULT_WINDOW, sync: str = "group",
             group_ms: float = 10.0, fsync: Callable[[int], None] = os.fsync,
             on_problem: ProblemCallback | None = None,
             on_dirty: Callable[..., None] | None = None, wall: Callable[[], float] = time.time,
             runner: Callable[[Callable[[], object]], Deferred] | None = None,
             _calls: SysCalls | None = None) -> FileReceivedIds:
        """Load the window from ``directory`` (created if missing); corrupt parts are skipped and reported."""
        check_choice("sync", sync, SYNC_POLICIES)
        if window < 1:
            raise ValueError(f"window must be at least 1; got {window}")
        if clock is None:
            from twisted.internet import reactor as clock
        os.makedirs(directory, exist_ok=True)
        self = cls(directory=directory, clock=clock, wall=wall, window=window, sync=sync, group_ms=group_ms,
                   fsync=fsync, on_problem=on_problem, on_dirty=on_dirty, runner=runner,
                   _calls=_calls if _calls is not None else SysCalls())
        self._compact_at = 2 * window
        self._load()
        return self

    @property
    def _path(self) -> str:
        return os.path.join(self._directory, RECEIVED_NAME)

    @property
    def _tmp_path(self) -> str:
        return os.path.join(self._directory, _TMP_NAME)

    def _load(self) -> None:
        buf = b""
        try:
            buf = read_regular(self._path)
        except FileNotFoundError:
            pass
        except OSError as e:
            report_problem(self._on_problem, "received-id window unreadable", f"{self._path}: {e}; starting empty")
            self.corrupt_records += 1
            os.replace(self._path, self._path + ".unreadable")
        ids, bad = scan_received(buf)
        for event_id in ids:
            self._ids[event_id] = None
            self._ids.move_to_end(event_id)
        while len(self._ids) > self.window:
            self._ids.popitem(last=False)
        self._records = len(ids)
        if not buf:
            self._starts = deque(maxlen=self.window)  # a new file: every record's offset is known from here
        if bad:
            self.corrupt_records += len(bad)
            report_problem(
                self._on_problem,
                "received-id window had corrupt records",
                f"{self._path}: {len(bad)} bad stretches ({sum(e - s for s, e in bad)} bytes) skipped; "
                "the file is rewritten with the readable ids",
            )
        if (bad or self._records >= self._compact_at) and self._compact():
            return
        self._fd = self._calls.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._size = os.fstat(self._fd).st_size

    def seen(self, event_id: str) -> bool:
        """True if ``event_id`` is in the window."""
        return event_id in self._ids

    def hold_writes(self, schedule_flush: Callable[[Callable[[], None]], object]) -> None:
        """From now on, keep :meth:`remember`'s records in memory until :meth:`flush` writes them, in one write.

        The owner promises to call :meth:`flush` before any ack of a remembered event can reach the
        kernel (the proactor registers it as a send barrier of its broker connections, see
        :meth:`~gwproactor.mqtt.BrokerConnection.add_send_barrier`), so a record still reaches the OS
        before its ack, as without holding.  ``schedule_flush(flush)`` is called when a first record is
        held (the proactor passes ``reactor.callLater(0, ...)``), so no record waits longer than the
        current reactor turn.
        """
        self._schedule_flush = schedule_flush

    def flush(self) -> None:
        """Write the held records (one write); nothing to do when none is held."""
        if self._held:
            frames, self._held = self._held, []
            if self._fd is not None:
                self._write(frames)

    def remember(self, event_id: str) -> None:
        """Add ``event_id`` to the window and to ``received.log``; a write error is reported, not raised."""
        if event_id in self._ids or self._fd is None:
            return
        self._ids[event_id] = None
        if len(self._ids) > self.window:
            self._ids.popitem(last=False)
        frame = _format.encode(_format.KIND_RECEIVED, self._wall(), event_id)
        if self._schedule_flush is not None:
            if not self._held:
                self._schedule_flush(self.flush)
            self._held.append(frame)
            return
        self._write([frame])

    def _write(self, frames: list[bytes]) -> None:
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        assert self._fd is not None  # callers check
        try:
            self._calls.write_all(self._fd, data)
        except OSError as e:
            undo_partial_write(self._fd, self._size)
            self._starts = None  # an id of the window is missing from the file: the next compaction rewrites it
            report_problem(self._on_problem, "received-id window write failed", f"{self._path}: {e}")
            return
        starts = self._starts
        if starts is not None:
            offset = self._size
            for frame in frames:
                starts.append(offset)
                offset += len(frame)
        self._size += len(data)
        self._records += len(frames)
        if self._during is not None:
            self._during.extend(frames)
        elif self._records >= self._compact_at and self._compact():
            return  # rewritten and fsynced here
        self.dirty = True
        if self._sync == "never":
            return
        if self._on_dirty is not None:
            self._on_dirty()
        elif self._sync == "always":
            self._do_fsync()
        elif self._sync_call is None:
            self._sync_call = self._clock.callLater(self._group_ms / 1000.0, self._group_fsync)

    def dup_for_sync(self) -> int | None:
        """A duplicate of the log's descriptor for a commit to fsync (the caller closes it), or None.

        None when there is nothing to sync (or the sync policy is ``never``).  Clears :attr:`dirty`
        once the duplicate exists: the caller now owns that sync and reports its failure
        (:meth:`sync_failed`).

        :raises OSError: if the descriptor cannot be duplicated (:attr:`dirty` stays set).
        """
        self.flush()
        if not self.dirty or self._fd is None or self._sync == "never":
            return None
        fd = self._calls.dup(self._fd)
        self.dirty = False
        return fd

    def synced(self) -> None:
        """Count an fsync that a commit ran on a :meth:`dup_for_sync` descriptor."""
        self.fsyncs += 1

    def sync_failed(self, error: BaseException) -> None:
        """Report a failed fsync of a :meth:`dup_for_sync` descriptor; the next write tries again."""
        self.dirty = True
        report_problem(self._on_problem, "received-id window fsync failed", f"{self._path}: {error}")

    def sync_now(self) -> None:
        """Fsync ``received.log`` on this thread if it is dirty (a failure is reported, not raised)."""
        self.flush()
        if self.dirty and self._sync != "never":
            self._do_fsync()

    def _group_fsync(self) -> None:
        self._sync_call = None
        self.flush()
        self._do_fsync()

    def _do_fsync(self) -> None:
        if self._fd is None:
            return
        self.dirty = False
        try:
            self._fsync(self._fd)
            self.fsyncs += 1
        except OSError as e:
            report_problem(self._on_problem, "received-id window fsync failed", f"{self._path}: {e}")

    # --- compaction -----------------------------------------------------------------

    @property
    def compacting(self) -> bool:
        """True while a compaction runs in the runner (the old file is still the window's)."""
        return self._during is not None

    def when_idle(self) -> Deferred:
        """A Deferred that fires once no compaction runs."""
        if self._during is None:
            return succeed(None)
        d: Deferred = Deferred()
        self._idle.append(d)
        return d

    def _compact(self) -> bool:
        """Rewrite ``received.log`` with the current window: tmp file, fsync, rename, fsync of the directory.

        With a runner (and a descriptor: not at open) the writing and the fsync run there and this
        returns False at once; otherwise they run here and this returns True if the window was
        rewritten.  Until the rename the old file stays the window's, so nothing is lost whenever
        the process dies.
        """
        starts = self._starts
        new_starts: list[int] = []
        job: Callable[[], int]
        if starts is not None and len(starts) == self.window == len(self._ids):
            # The file's last `window` records are the window, in order: copy their bytes (no re-encoding,
            # and nothing per record for the thread to do while holding the GIL).
            begin, end = starts[0], self._size
            new_starts = [offset - begin for offset in starts]
            count = len(starts)

            def job() -> int:
                return self._write_tail(begin, end)
        else:
            snapshot = list(self._ids)
            now = self._wall()
            count = len(snapshot)

            def job() -> int:
                return self._write_compacted(snapshot, now, new_starts)
        if self._runner is None or self._fd is None:
            try:
                fd = job()
            except OSError as e:
                self._compaction_failed(e)
                return False
            if not self._finish_compaction(fd, count, None, new_starts):
                return False
            self._sync_directory()
            return True
        self._during = []
        try:
            d = self._runner(job)
        except Exception as e:  # the runner could not start
            self._during = None
            self._compaction_failed(e)
            return False
        d.addCallbacks(self._compacted, self._compaction_error, callbackArgs=(count, new_starts))
        return False

    def _write_compacted(self, ids: list[str], now: float, starts: list[int]) -> int:
        """Write ``ids`` to ``received.tmp`` and fsync it; return its descriptor (open for appending).

        Fills ``starts`` with the records' offsets.  Runs in the runner's thread when there is one: it
        touches nothing of the window but ``ids`` and ``starts``.
        """
        frames = [_format.encode(_format.KIND_RECEIVED, now, i) for i in ids]
        offset = 0
        for frame in frames:
            starts.append(offset)
            offset += len(frame)
        return self._write_tmp(b"".join(frames))

    def _write_tail(self, begin: int, end: int) -> int:
        """Copy bytes ``begin``–``end`` of ``received.log`` (the window's records) to ``received.tmp``, fsynced.

        Runs in the runner's thread when there is one; the reactor thread only appends past ``end`` meanwhile.
        """
        src = self._calls.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(src, end - begin, begin)
        finally:
            os.close(src)
        if len(data) != end - begin:
            raise OSError(errno.EIO, f"{self._path}: read {len(data)} of {end - begin} bytes for the compaction")
        return self._write_tmp(data)

    def _write_tmp(self, data: bytes) -> int:
        tmp = self._tmp_path
        fd = self._calls.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            self._calls.write_all(fd, data)
            if self._sync != "never":
                self._fsync(fd)
        except BaseException:  # close and remove the half-written file, then re-raise whatever it is
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        return fd

    def _compacted(self, fd: int, count: int, starts: list[int]) -> None:
        during, self._during = self._during or [], None
        try:
            if self._finish_compaction(fd, count, during, starts) and self._sync != "never":
                if self._on_dirty is not None:
                    self.dirty = True
                    self._on_dirty(directory=True)  # the store's next commit syncs the rename
                else:
                    self._sync_directory()
        finally:
            self._fire_idle()  # whatever happened, close() must not wait for ever

    def _compaction_error(self, failure: Failure) -> None:
        self._during = None
        try:
            error = failure.value
            assert error is not None  # a Failure always holds its exception
            self._compaction_failed(error)
        finally:
            self._fire_idle()

    def _finish_compaction(self, fd: int, count: int, during: list | None = None,
                           starts: list[int] | None = None) -> bool:
        """Append the ids written meanwhile to the new file, rename it over the old one, use it; True if done."""
        if self._closed:  # the old file, closed complete, is the window
            os.close(fd)
            _unlink_quietly(self._tmp_path)
            return False
        try:
            if during:
                self._calls.write_all(fd, b"".join(during))
            os.replace(self._tmp_path, self._path)
        except OSError as e:
            os.close(fd)
            _unlink_quietly(self._tmp_path)
            self._compaction_failed(e)
            return False
        if self._sync != "never":
            self.fsyncs += 1  # the new file's, in _write_compacted
        old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)
        self._size = os.fstat(fd).st_size
        self._starts = None
        if starts is not None and len(starts) == count:
            known: deque = deque(starts, maxlen=self.window)
            offset = self._size - sum(len(frame) for frame in during or ())
            for frame in during or ():
                known.append(offset)
                offset += len(frame)
            self._starts = known
        self._records = count + len(during or ())
        self._compact_at = 2 * self.window
        self.compactions += 1
        self.dirty = bool(during)  # the ids appended here are not fsynced yet
        return True

    def _compaction_failed(self, error: BaseException) -> None:
        self._compact_at = self._records + self.window
        report_problem(self._on_problem, "received-id window compaction failed",
                       f"{self._path}: {error}; the window stays in {RECEIVED_NAME} and compaction is tried "
                       f"again after {self.window} more ids")

    def _fire_idle(self) -> None:
        idle, self._idle = self._idle, []
        for d in idle:
            d.callback(None)

    def _sync_directory(self) -> None:
        if self._sync == "never":
            return
        try:
            fd = self._calls.open(self._directory, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            report_problem(self._on_problem, "received-id window fsync failed", f"{self._directory}: {e}")
            return
        try:
            self._fsync(fd)
            self.fsyncs += 1
        except OSError as e:
            report_problem(self._on_problem, "received-id window fsync failed", f"{self._directory}: {e}")
        finally:
            os.close(fd)

    def close(self) -> None:
        """Fsync and close the file (a compaction still running is abandoned: the old file is complete)."""
        if self._sync_call is not None and self._sync_call.active():
            self._sync_call.cancel()
        self._sync_call = None
        self.flush()
        self._closed = True
        if self._fd is not None:
            if self.dirty and self._sync != "never":
                self._do_fsync()
            os.close(self._fd)
            self._fd = None

    def stats(self) -> dict:
        """Return the window's counters."""
        return {
            "ids": len(self._ids),
            "log_records": self._records,
            "corrupt_records": self.corrupt_records,
            "compactions": self.compactions,
            "fsyncs": self.fsyncs,
        }

    def __len__(self) -> int:
        return len(self._ids)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
