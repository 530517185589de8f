"""Group commit of the file store: what to fsync, where the fsync runs, which appends it fires or fails.

A commit fsyncs every file written since the previous one (segments, ack files, the directory when
a segment was created or ``received.log`` replaced, the received-id window) and then fires the
appends of its group, in order.  With an fsync runner (:class:`FsyncThread`) only the fsyncs leave
the reactor thread, on duplicated descriptors.  An error fails exactly the appends it concerns: an
fsync error of a segment, the appends in that segment; a directory fsync error, the appends in the
segments created since the previous commit.  A failed append's event is not pending (its record
gets an ack), so the caller may append it again.  When descriptors cannot be duplicated (EMFILE)
the commit runs on the reactor thread instead: the appends still fire.  See ``docs/store.rst``.

:class:`CommitMixin` is part of :class:`~gwproactor.store.file.FileEventStore` and uses its state.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any
from collections.abc import Callable

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from gwproactor.store._common import StoreWriteError, report_problem

_log = Logger(namespace="gwproactor.store")


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


class CommitMixin:
    """The commit steps of :class:`~gwproactor.store.file.FileEventStore`.

    The host provides the sync settings and state (``_sync``, ``_fsync``, ``_fsync_runner``,
    ``_calls``, ``_dirty``, ``_directory_dirty``, ``_new_segments``, ``_waiters`` of
    ``(Deferred, event_id, segment number)`` ...), ``_io_error``, ``_unpend`` and ``_synced``.
    """

    __slots__ = ()

    def _received_dirty(self, directory: bool = False) -> None:
        """The received-id window wrote (or, with ``directory``, replaced) ``received.log``: sync it like an ack."""
        if directory:
            self._directory_dirty = True
        if not self._closed:
            self._sync_soon()

    def _sync_soon(self) -> None:
        """Something nothing waits for (an ack, a received id) was written: sync it under the policy."""
        if self._sync == "group":
            self._schedule_commit()
        elif self._fsync_runner is None:
            self._sync_dirty()
        else:
            self._commit()

    def _schedule_commit(self) -> None:
        # "At most every group_ms": an append after a quiet spell is synced on the next
        # reactor turn (low latency when idle); under load fsyncs are group_ms apart.
        if self._group_call is None:
            interval = self._group_ms / 1000.0
            now = self._clock.seconds()
            delay = 0.0 if self._last_commit is None else max(0.0, self._last_commit + interval - now)
            self._group_call = self._clock.callLater(delay, self._commit)

    def _fsync_directory(self) -> StoreWriteError | None:
        """Fsync the store directory (its descriptor is held open: no descriptor is needed for this)."""
        try:
            self._fsync(self._dir_fd)
            self._fsyncs += 1
        except OSError as e:
            return self._io_error("directory fsync", self._directory, e)
        return None

    def _directory_failed(self, error: StoreWriteError | None, new: set, errors: dict) -> None:
        """A failed directory fsync fails the appends of the segments created since the last one."""
        if error is None:
            return
        for number in new:
            errors.setdefault(number, error)
            self._broken(number)

    def _broken(self, number: int) -> None:
        """Appends must not go on into segment ``number`` (its sync failed): the next one starts a segment."""
        if self._active is not None and self._active.number == number:
            self._active_broken = True

    def _sync_dirty(self) -> dict[int, StoreWriteError]:
        """Fsync every dirty file on this thread; return the error of each segment whose appends fail.

        The received-id window's failure is reported by the window and fails no append; an ack file's
        is reported and fails no append (a lost ack costs one duplicate delivery).
        """
        errors: dict[int, StoreWriteError] = {}
        if self.received is not None:
            self.received.sync_now()
        for seg in list(self._dirty):
            if seg.dirty_log and seg.fd is not None:
                try:
                    self._fsync(seg.fd)
                    self._fsyncs += 1
                except OSError as e:
                    errors.setdefault(seg.number, self._io_error("fsync", seg.log_path, e))
                    self._broken(seg.number)
            if seg.dirty_ack and seg.ack_fd is not None:
                try:
                    self._fsync(seg.ack_fd)
                    self._fsyncs += 1
                except OSError as e:
                    self._io_error("ack fsync", seg.ack_path, e)
            seg.dirty_log = seg.dirty_ack = False
            self._synced(seg)
        self._dirty.clear()
        if self._directory_dirty:  # after the segments: their own errors are the more telling ones
            self._directory_dirty = False
            new, self._new_segments = self._new_segments, set()
            self._directory_failed(self._fsync_directory(), new, errors)
        return errors

    def _commit(self) -> None:
        """End the current group: fsync, then fire (or fail) the Deferreds of its appends."""
        self._group_call = None
        self._last_commit = self._clock.seconds()
        if self._fsync_busy:
            self._commit_wanted = True
            return
        waiters, self._waiters = self._waiters, []
        self._group_ids = set()
        received = self.received
        if self._fsync_runner is None or not (self._dirty or self._directory_dirty
                                              or (received is not None and received.dirty)):
            self._finish_group(waiters, self._sync_dirty())
            return
        new = self._new_segments if self._directory_dirty else set()
        try:
            jobs = self._take_jobs()
        except OSError as e:
            # No descriptor for the thread (EMFILE): sync on this thread, which needs none.
            self._dup_failed(e)
            self._finish_group(waiters, self._sync_dirty())
            return
        if self._dup_failing:
            self._dup_failing = False
            _log.info("event store {directory}: fsyncs run in the fsync thread again", directory=self._directory)
        if new:
            self._new_segments = set()
        self._fsync_busy = True
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
            d = self._fsync_runner(run_batch)
        except Exception as e:  # the runner could not even start (e.g. thread pool stopped)
            for fd, _ in jobs:
                os.close(fd)
            d = fail(e)
        d.addBoth(self._batch_done, [tag for _, tag in jobs], waiters, new)

    def _take_jobs(self) -> list:
        """Duplicate the descriptor of every dirty file for the fsync thread, which now owns that sync.

        :raises OSError: if a descriptor cannot be duplicated; then nothing changed (the duplicates
            made so far are closed, every dirty flag is still set).
        """
        dup = self._calls.dup
        jobs: list = []
        try:
            for seg in self._dirty:
                if seg.dirty_log and seg.fd is not None:
                    jobs.append((dup(seg.fd), ("log", seg.number, seg.log_path)))
                if seg.dirty_ack and seg.ack_fd is not None:
                    jobs.append((dup(seg.ack_fd), ("ack", seg.number, seg.ack_path)))
            if self._directory_dirty:
                jobs.append((dup(self._dir_fd), ("directory", None, self._directory)))
            if self.received is not None:
                fd = self.received.dup_for_sync()  # last: it clears the window's dirty flag
                if fd is not None:
                    jobs.append((fd, ("received", None, None)))
        except OSError:
            for fd, _ in jobs:
                os.close(fd)
            raise
        for seg in self._dirty:
            seg.dirty_log = seg.dirty_ack = False
            self._synced(seg)
        self._dirty.clear()
        self._directory_dirty = False
        return jobs

    def _dup_failed(self, e: OSError) -> None:
        if not self._dup_failing:
            self._dup_failing = True
            report_problem(self._on_problem, "event store could not hand its fsyncs to the fsync thread",
                           f"{self._directory}: duplicating a descriptor failed ({e}); fsyncing on the reactor "
                           "thread until descriptors are available again (appends still become durable)")

    def _batch_done(self, result, tags: list, waiters: list, new: set) -> None:
        self._fsync_busy = False
        errors: dict[int, StoreWriteError] = {}
        with_received = any(kind == "received" for kind, _, _ in tags)
        if not isinstance(result, list):  # the runner itself failed: nothing was synced
            error = self._io_error("fsync", "the fsync thread", result.value)
            for number in {number for _, _, number in waiters} | {n for _, n, _ in tags if n is not None}:
                errors[number] = error
                self._broken(number)
            if with_received:
                self.received.sync_failed(result.value)
        else:
            received_ok = with_received
            for (kind, number, path), e in result:
                if kind == "received":  # its failure is reported but fails no append
                    received_ok = False
                    self.received.sync_failed(e)
                elif kind == "log":
                    errors.setdefault(number, self._io_error("fsync", path, e))
                    self._broken(number)
                elif kind == "ack":
                    self._io_error("ack fsync", path, e)
                else:
                    self._directory_failed(self._io_error("directory fsync", path, e), new, errors)
            if received_ok:
                self.received.synced()
            self._fsyncs += len(tags) - len(result) - (1 if received_ok else 0)
        self._finish_group(waiters, errors)
        if not self._closed and (self._commit_wanted or (self._sync == "always" and self._waiters)):
            self._commit_wanted = False
            self._commit()
        if not self._fsync_busy:
            idle, self._idle_waiters = self._idle_waiters, []
            for d in idle:
                d.callback(None)

    def _finish_group(self, waiters: list, errors: dict) -> None:
        """Fire the appends of a group in order; those in a segment of ``errors`` fail and are not pending."""
        if errors:
            for _, event_id, number in waiters:
                if number in errors:
                    self._unpend(event_id, number)
        for d, event_id, number in waiters:
            error = errors.get(number)
            if error is None:
                d.callback(event_id)
            else:
                d.errback(error)
