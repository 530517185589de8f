"""The persisted window of recently accepted incoming event ids (receiver-side dedup).

``received.log`` in the store directory holds one frame (kind 3, see :mod:`gwproactor.store._format`)
per remembered id.  When it holds twice the window it is rewritten with the current window only
(``received.tmp`` + fsync + rename), so it stays between ``window`` and ``2 * window`` records.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable

import attrs
from zope.interface import implementer

from gwproactor.interfaces import IReceivedIds
from gwproactor.store import _format
from gwproactor.store._common import DEFAULT_WINDOW, SYNC_POLICIES, ProblemCallback, check_choice, report_problem
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
    fsyncs on its own: a write sets :attr:`dirty` and calls ``on_dirty()``, and the store's next
    commit fsyncs a duplicate of the file's descriptor (:meth:`dup_for_sync`) with its own files,
    in the store's fsync thread when it has one.

    ``clock`` runs the group fsync timer; each record's time is ``wall()`` (:func:`time.time`).
    """

    _directory: str = attrs.field(alias="directory")
    _clock: object = attrs.field(alias="clock")
    _wall: Callable[[], float] = attrs.field(default=time.time, alias="wall")
    window: int = DEFAULT_WINDOW
    _sync: str = attrs.field(default="group", alias="sync")
    _group_ms: float = attrs.field(default=10.0, alias="group_ms")
    _fsync: Callable[[int], None] = attrs.field(default=os.fsync, alias="fsync")
    _on_problem: ProblemCallback | None = attrs.field(default=None, alias="on_problem")
    _on_dirty: Callable[[], None] | None = attrs.field(default=None, alias="on_dirty")
    dirty: bool = attrs.field(init=False, default=False)
    """True while ``received.log`` holds writes that no fsync has covered yet."""
    _ids: OrderedDict = attrs.field(init=False, factory=OrderedDict)
    _fd: int | None = attrs.field(init=False, default=None)
    _records: int = attrs.field(init=False, default=0)
    _sync_call: object = attrs.field(init=False, default=None)
    corrupt_records: int = attrs.field(init=False, default=0)
    fsyncs: int = attrs.field(init=False, default=0)
    compactions: int = attrs.field(init=False, default=0)

    @classmethod
    def open(cls, directory: str, *, clock=None, window: int = DEFAULT_WINDOW, sync: str = "group",
             group_ms: float = 10.0, fsync: Callable[[int], None] = os.fsync,
             on_problem: ProblemCallback | None = None,
             on_dirty: Callable[[], None] | None = None, wall: Callable[[], float] = time.time) -> FileReceivedIds:
        """Load the window from ``directory`` (created if missing); corrupt parts are skipped and reported."""
        check_choice("sync", sync, SYNC_POLICIES)
        if window < 1:
            raise ValueError(f"window must be at least 1; got {window}")
        if clock is None:
            from twisted.internet import reactor as clock
        os.makedirs(directory, exist_ok=True)
        self = cls(directory=directory, clock=clock, wall=wall, window=window, sync=sync, group_ms=group_ms,
                   fsync=fsync, on_problem=on_problem, on_dirty=on_dirty)
        self._load()
        return self

    @property
    def _path(self) -> str:
        return os.path.join(self._directory, RECEIVED_NAME)

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
        if bad:
            self.corrupt_records += len(bad)
            report_problem(
                self._on_problem,
                "received-id window had corrupt records",
                f"{self._path}: {len(bad)} bad stretches ({sum(e - s for s, e in bad)} bytes) skipped; "
                "the file is rewritten with the readable ids",
            )
        if bad or self._records >= 2 * self.window:
            self._compact()
        else:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def seen(self, event_id: str) -> bool:
        """True if ``event_id`` is in the window."""
        return event_id in self._ids

    def remember(self, event_id: str) -> None:
        """Add ``event_id`` to the window and to ``received.log``; a write error is reported, not raised."""
        if event_id in self._ids or self._fd is None:
            return
        self._ids[event_id] = None
        if len(self._ids) > self.window:
            self._ids.popitem(last=False)
        try:
            os.write(self._fd, _format.encode(_format.KIND_RECEIVED, self._wall(), event_id))
        except OSError as e:
            report_problem(self._on_problem, "received-id window write failed", f"{self._path}: {e}")
            return
        self._records += 1
        if self._records >= 2 * self.window:
            self._compact()
            return
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

        None when there is nothing to sync (or the sync policy is ``never``).  Clears :attr:`dirty`:
        the caller now owns that sync and reports its failure (:meth:`sync_failed`).
        """
        if not self.dirty or self._fd is None or self._sync == "never":
            return None
        self.dirty = False
        return os.dup(self._fd)

    def synced(self) -> None:
        """Count an fsync that a commit ran on a :meth:`dup_for_sync` descriptor."""
        self.fsyncs += 1

    def sync_failed(self, error: OSError) -> None:
        """Report a failed fsync of a :meth:`dup_for_sync` descriptor; the next write tries again."""
        self.dirty = True
        report_problem(self._on_problem, "received-id window fsync failed", f"{self._path}: {error}")

    def sync_now(self) -> None:
        """Fsync ``received.log`` on this thread if it is dirty (a failure is reported, not raised)."""
        if self.dirty and self._sync != "never":
            self._do_fsync()

    def _group_fsync(self) -> None:
        self._sync_call = None
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

    def _compact(self) -> None:
        """Rewrite ``received.log`` with the current window (tmp file, fsync, rename)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        tmp = os.path.join(self._directory, _TMP_NAME)
        now = self._wall()
        data = b"".join(_format.encode(_format.KIND_RECEIVED, now, i) for i in self._ids)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            if self._sync != "never":
                self._fsync(fd)
                self.fsyncs += 1
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
        self._records = len(self._ids)
        self.compactions += 1
        self.dirty = False
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def close(self) -> None:
        """Fsync and close the file."""
        if self._sync_call is not None and self._sync_call.active():
            self._sync_call.cancel()
        self._sync_call = None
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
