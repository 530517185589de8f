"""Group commit of the file store: what to fsync, where the fsync runs, which appends it fires or fails.

A commit fsyncs every file written since the previous one (segments, ack files, the directory when
a segment was created or ``received.log`` replaced, the received-id window) and then fires the
appends of its group, in order.  With an fsync runner (:class:`FsyncThread`) only the fsyncs leave
the reactor thread, on duplicated descriptors.  An error fails exactly the appends it concerns: an
fsync error of a segment, the appends in that segment; a directory fsync error, the appends in the
segments created since the previous commit.  A failed append's event is not pending (its record
gets an ack), so the caller may append it again.  When descriptors cannot be duplicated (EMFILE)
the commit runs on the reactor thread instead: the appends still fire.  See ``docs/store.rst``.

A :class:`~gwproactor.store.file.FileEventStore` has one :class:`GroupCommit`; it learns what to sync
from the store's :class:`~gwproactor.store._segments.SegmentLog` and received-id window through their
public methods, and tells the store which appends failed through ``on_failed``.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Set
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gwproactor.store._common import ProblemCallback, StoreWriteError, SysCalls, WriteErrors, report_problem

if TYPE_CHECKING:
    from gwproactor.store._received import FileReceivedIds
    from gwproactor.store._segments import SegmentLog

_log = Logger(namespace="gwproactor.store")

__all__ = ["FsyncThread", "GroupCommit"]


class FsyncThread:
    """One daemon thread that runs a store's fsync batches (``FileEventStore.open(fsync_in_thread=True)``).

    It also runs the rewrite of the received-id window (its compaction), so that neither blocks
    the reactor.  The store's own thread rather than the reactor's pool: an application whose
    blocking calls fill the reactor's pool cannot delay durability, and the thread being a daemon
    means a store that is never closed cannot keep the process from exiting (a batch only fsyncs
    duplicated descriptors, and a compaction replaces the old window only once the new one is
    complete, so stopping half-way loses nothing that a crash would not).  A plain queue and
    ``callFromThread`` rather than a Twisted ``ThreadPool``: a commit is one handoff each way, and
    the reactor thread runs as little code for it as possible.

    :param reactor: provides ``callFromThread`` (results come back on the reactor thread).
    """

    def __init__(self, reactor: Any, name: str = "gwproactor-fsync") -> None:
        self._reactor = reactor
        self._name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def __call__(self, batch: Callable[[], Any]) -> Deferred:
        """Run ``batch()`` in the thread; the Deferred fires on the reactor thread with its result."""
        d: Deferred = Deferred()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put((batch, d))
        return d

    def _run(self) -> None:
        call_from_thread = self._reactor.callFromThread
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch, d = job
            try:
                result = batch()
            except BaseException as e:  # reported by the store as a failed batch
                call_from_thread(d.errback, e)
            else:
                call_from_thread(d.callback, result)

    def stop(self) -> None:
        """Let the thread finish what it runs and end it (joins it)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()


class GroupCommit:
    """The commits of one file store: when they run, what they fsync, which appends they fire or fail.

    :param log: the store's segment log (what is written but not synced yet).
    :param clock: provides ``seconds`` and ``callLater`` (the group-commit timer).
    :param sync: ``always`` | ``group`` | ``never``.
    :param group_ms: longest wait for the group fsync under ``group``.
    :param fsync: the fsync function.
    :param runner: None to fsync on the calling (reactor) thread, else ``runner(f) -> Deferred`` that
        runs a batch elsewhere (an :class:`FsyncThread`); at most one batch is outstanding.
    :param calls: provides ``dup`` (descriptors handed to the runner).
    :param errors: counts and reports failed OS calls.
    :param on_problem: ``on_problem(summary, details)``, or None.
    :param on_failed: ``on_failed(event_id, number)``: the append of ``event_id`` into segment
        ``number`` failed; the store makes that event no longer pending (its record gets an ack).
    :param directory: the store directory, named in log lines.
    """

    def __init__(self, log: SegmentLog, *, clock: Any, sync: str, group_ms: float, fsync: Callable[[int], None],
                 runner: Callable[[Callable[[], Any]], Deferred] | None, calls: SysCalls, errors: WriteErrors,
                 on_problem: ProblemCallback | None, on_failed: Callable[[str, int], None], directory: str) -> None:
        self._log = log
        self._clock = clock
        self._sync = sync
        self._group_ms = group_ms
        self._fsync = fsync
        self._runner = runner
        self._dup = calls.dup
        self._errors = errors
        self._on_problem = on_problem
        self._on_failed = on_failed
        self._directory = directory
        self._received: FileReceivedIds | None = None
        self._waiters: list = []  # (Deferred, event_id, segment number) of the open group
        self._group_ids: set = set()
        self._group_call: Any = None
        self._last_commit: float | None = None
        self._busy = False
        self._commit_wanted = False
        self._idle_waiters: list = []
        self._dup_failing = False
        self._closed = False
        self.fsyncs = 0
        """Fsyncs run so far (files and the directory)."""

    def attach_received(self, received: FileReceivedIds) -> None:
        """Sync ``received`` (the store's received-id window, opened with ``on_dirty=received_dirty``) too."""
        self._received = received

    # --- what the store calls ----------------------------------------------------

    def durable(self, event_id: str, number: int) -> Deferred:
        """A Deferred that fires with ``event_id`` once its record (just written into segment ``number``) is durable.

        Errbacks with :class:`StoreWriteError` if the commit that covers it fails for that segment.
        """
        if self._sync == "never":
            return succeed(event_id)
        d: Deferred = Deferred()
        if self._sync == "always" and self._runner is None:
            self._finish_group([(d, event_id, number)], self._sync_dirty())
            return d
        self._waiters.append((d, event_id, number))
        self._group_ids.add(event_id)
        if self._sync == "always":
            self.commit()
        else:
            self._schedule_commit()
        return d

    def in_group(self, event_id: str) -> bool:
        """True if an append of ``event_id`` waits for the open group."""
        return event_id in self._group_ids

    def join_group(self, event_id: str, number: int) -> Deferred:
        """Another append of ``event_id`` (:meth:`in_group`): it fires or fails with the first."""
        d: Deferred = Deferred()
        self._waiters.append((d, event_id, number))
        return d

    def received_dirty(self, directory: bool = False) -> None:
        """The received-id window wrote (or, with ``directory``, replaced) ``received.log``: sync it like an ack."""
        if directory:
            self._log.mark_directory_dirty()
        if not self._closed:
            self.sync_soon()

    def sync_soon(self) -> None:
        """Something nothing waits for (an ack, a received id) was written: sync it under the policy."""
        if self._sync == "never":
            return
        if self._sync == "group":
            self._schedule_commit()
        elif self._runner is None:
            self._sync_dirty()
        else:
            self.commit()

    def fsync_file(self, fd: int) -> None:
        """Fsync ``fd`` on this thread and count it (recovery's rewritten files).

        :raises OSError: if the fsync fails.
        """
        self._fsync(fd)
        self.fsyncs += 1

    def fsync_directory(self) -> StoreWriteError | None:
        """Fsync the store directory on this thread; return the (reported) error, if any."""
        fd = self._log.directory_fd
        assert fd is not None, "the directory is open from before recovery until after the last commit"
        try:
            self._fsync(fd)
            self.fsyncs += 1
        except OSError as e:
            return self._errors.report("directory fsync", self._directory, e)
        return None

    def begin_close(self) -> Deferred | None:
        """Stop the group timer and start no more batches; return a Deferred for a batch still running."""
        if self._group_call is not None and self._group_call.active():
            self._group_call.cancel()
        self._group_call = None
        self._closed = True
        if not self._busy:
            return None
        idle: Deferred = Deferred()
        self._idle_waiters.append(idle)
        return idle

    def final_commit(self) -> None:
        """The last commit (at close, after :meth:`begin_close`'s batch is done): on this thread."""
        self._runner = None
        self.commit()

    # --- the commit --------------------------------------------------------------

    def _schedule_commit(self) -> None:
        # "At most every group_ms": an append after a quiet spell is synced on the next
        # reactor turn (low latency when idle); under load fsyncs are group_ms apart.
        if self._group_call is None:
            interval = self._group_ms / 1000.0
            now = self._clock.seconds()
            delay = 0.0 if self._last_commit is None else max(0.0, self._last_commit + interval - now)
            self._group_call = self._clock.callLater(delay, self.commit)

    def _directory_failed(self, error: StoreWriteError | None, new: Set[int], errors: dict) -> None:
        """A failed directory fsync fails the appends of the segments created since the last one."""
        if error is None:
            return
        for number in new:
            errors.setdefault(number, error)
            self._log.mark_broken(number)

    def _sync_dirty(self) -> dict[int, StoreWriteError]:
        """Fsync every dirty file on this thread; return the error of each segment whose appends fail.

        The received-id window's failure is reported by the window and fails no append; an ack file's
        is reported and fails no append (a lost ack costs one duplicate delivery).
        """
        errors: dict[int, StoreWriteError] = {}
        if self._received is not None:
            self._received.sync_now()
        directory_error = None
        for fd, (kind, number, path) in self._log.unsynced_files():
            try:
                self._fsync(fd)
                self.fsyncs += 1
            except OSError as e:
                if kind == "log":
                    assert number is not None  # a segment file's job names its segment
                    errors.setdefault(number, self._errors.report("fsync", path, e))
                    self._log.mark_broken(number)
                elif kind == "ack":
                    self._errors.report("ack fsync", path, e)
                else:  # the directory, after the segments: their own errors are the more telling ones
                    directory_error = self._errors.report("directory fsync", path, e)
        self._directory_failed(directory_error, self._log.mark_synced(), errors)
        return errors

    def commit(self) -> None:
        """End the current group: fsync, then fire (or fail) the Deferreds of its appends."""
        self._group_call = None
        self._last_commit = self._clock.seconds()
        if self._busy:
            self._commit_wanted = True
            return
        waiters, self._waiters = self._waiters, []
        self._group_ids = set()
        received = self._received
        if self._runner is None or not (self._log.has_unsynced() or (received is not None and received.dirty)):
            self._finish_group(waiters, self._sync_dirty())
            return
        try:
            jobs, new = self._take_jobs()
        except OSError as e:
            # No descriptor for the thread (EMFILE): sync on this thread, which needs none.
            self._dup_failed(e)
            self._finish_group(waiters, self._sync_dirty())
            return
        if self._dup_failing:
            self._dup_failing = False
            _log.info("event store {directory}: fsyncs run in the fsync thread again", directory=self._directory)
        self._busy = True
        fsync = self._fsync

        def run_batch() -> list:
            # Runs in the fsync thread: touches nothing but its own duplicated descriptors.
            errors = []
            for fd, tag in jobs:
                try:
                    fsync(fd)
                except OSError as e:
                    errors.append((tag, e))
                finally:
                    os.close(fd)
            return errors

        try:
            d = self._runner(run_batch)
        except Exception as e:  # the runner could not even start (e.g. thread pool stopped)
            for fd, _ in jobs:
                os.close(fd)
            d = fail(e)
        d.addBoth(self._batch_done, [tag for _, tag in jobs], waiters, new)

    def _take_jobs(self) -> tuple[list, Set[int]]:
        """Duplicate the descriptor of every dirty file for the fsync thread, which now owns that sync.

        Returns the jobs and the segments whose appends a failed directory fsync fails.

        :raises OSError: if a descriptor cannot be duplicated; then nothing changed (the duplicates
            made so far are closed, every dirty flag is still set).
        """
        dup = self._dup
        jobs: list = []
        try:
            for fd, tag in self._log.unsynced_files():
                jobs.append((dup(fd), tag))
            if self._received is not None:
                received_fd = self._received.dup_for_sync()  # last: it clears the window's dirty flag
                if received_fd is not None:
                    jobs.append((received_fd, ("received", None, None)))
        except OSError:
            for fd, _ in jobs:
                os.close(fd)
            raise
        return jobs, self._log.mark_synced()

    def _dup_failed(self, e: OSError) -> None:
        if not self._dup_failing:
            self._dup_failing = True
            report_problem(self._on_problem, "event store could not hand its fsyncs to the fsync thread",
                           f"{self._directory}: duplicating a descriptor failed ({e}); fsyncing on the reactor "
                           "thread until descriptors are available again (appends still become durable)")

    def _batch_done(self, result: list | Failure, tags: list, waiters: list, new: Set[int]) -> None:
        self._busy = False
        errors: dict[int, StoreWriteError] = {}
        with_received = any(kind == "received" for kind, _, _ in tags)
        received = self._received  # a "received" job comes from it, so it is set when one is in tags
        if not isinstance(result, list):  # the runner itself failed: nothing was synced
            failed = result.value
            assert failed is not None  # a Failure always holds its exception
            error = self._errors.report("fsync", "the fsync thread", failed)
            for number in {number for _, _, number in waiters} | {n for _, n, _ in tags if n is not None}:
                errors[number] = error
                self._log.mark_broken(number)
            if with_received:
                assert received is not None
                received.sync_failed(failed)
        else:
            received_ok = with_received
            for (kind, number, path), e in result:
                if kind == "received":  # its failure is reported but fails no append
                    assert received is not None
                    received_ok = False
                    received.sync_failed(e)
                elif kind == "log":
                    assert number is not None  # a segment file's job names its segment
                    errors.setdefault(number, self._errors.report("fsync", path, e))
                    self._log.mark_broken(number)
                elif kind == "ack":
                    self._errors.report("ack fsync", path, e)
                else:
                    self._directory_failed(self._errors.report("directory fsync", path, e), new, errors)
            if received_ok:
                assert received is not None
                received.synced()
            self.fsyncs += len(tags) - len(result) - (1 if received_ok else 0)
        self._finish_group(waiters, errors)
        if not self._closed and (self._commit_wanted or (self._sync == "always" and self._waiters)):
            self._commit_wanted = False
            self.commit()
        if not self._busy:
            idle, self._idle_waiters = self._idle_waiters, []
            for d in idle:
                d.callback(None)

    def _finish_group(self, waiters: list, errors: dict) -> None:
        """Fire the appends of a group in order; those in a segment of ``errors`` fail and are not pending."""
        if errors:
            for _, event_id, number in waiters:
                if number in errors:
                    self._on_failed(event_id, number)
        for d, event_id, number in waiters:
            error = errors.get(number)
            if error is None:
                d.callback(event_id)
            else:
                d.errback(error)
