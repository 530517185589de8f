"""The received-id window's compaction: off the reactor in a store with an fsync thread, and crash-safe at every step."""

from __future__ import annotations

import errno
import os
import shutil
import threading

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from gwproactor.store import FileEventStore, FileReceivedIds
from gwproactor.store._scan import scan_received
from tests.test_store_oserrors import ManualRunner


class PathFsync:
    """An fsync that records the file name (and thread) of each descriptor it syncs; can fail for one name."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.fail_for: str | None = None

    def __call__(self, fd: int) -> None:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if self.fail_for is not None and name == self.fail_for:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self.log.append((name, threading.current_thread().name))

    def names(self) -> list[str]:
        return [n for n, _ in self.log]


@pytest.fixture
def clock():
    c = Clock()
    c.advance(1_000_000)
    return c


def ids_in(path) -> list[str]:
    return scan_received((path / "received.log").read_bytes())[0]


def window_of(directory, window: int) -> set[str]:
    """The ids a fresh store opened on ``directory`` (a copy: as after a crash) remembers."""
    store = FileEventStore.open(str(directory), clock=Clock(), sync="never", received_window=window)
    try:
        return {i for i in (f"r{n}" for n in range(100)) if store.received.seen(i)}
    finally:
        store.close()


def test_compaction_runs_in_the_store_thread(tmp_path, clock):
    """With an fsync runner, the window's rewrite (write tmp, fsync) is a runner job: the reactor thread does none of it."""
    fsync = PathFsync()
    runner = ManualRunner()
    store = FileEventStore.open(str(tmp_path), clock=clock, sync="group", fsync=fsync, fsync_runner=runner,
                                received_window=5)
    for n in range(10):
        store.received.remember(f"r{n}")
    assert len(runner.jobs) == 1 and store.received.compacting
    assert not (tmp_path / "received.tmp").exists() and "received.tmp" not in fsync.names()
    store.received.remember("r10")  # accepted during the compaction: into the old file as usual
    store.received.remember("r11")
    runner.run_next()  # the thread's part: received.tmp written and fsynced
    assert not store.received.compacting and fsync.names() == ["received.tmp"]
    assert ids_in(tmp_path) == [f"r{n}" for n in range(5, 12)], "snapshot, then the ids accepted meanwhile"
    clock.advance(1)  # the store's next commit fsyncs the new file and the directory entry of the rename
    assert len(runner.jobs) == 1
    runner.run_next()
    assert set(fsync.names()[1:]) == {os.path.basename(tmp_path), "received.log"} and len(fsync.log) == 3
    assert store.received.stats()["compactions"] == 1
    store.close()
    assert window_of(tmp_path, 5) == {f"r{n}" for n in range(7, 12)}


@pytest.mark.parametrize("step", ["queued", "tmp written", "tmp torn", "renamed"])
def test_a_crash_at_any_step_of_the_compaction_loses_no_id(tmp_path, clock, step):
    """A process that dies before, during or after the rewrite leaves a window with every id it had accepted."""
    runner = ManualRunner()
    live = tmp_path / "live"
    store = FileEventStore.open(str(live), clock=clock, sync="group", fsync=lambda fd: None, fsync_runner=runner,
                                received_window=5)
    for n in range(10):
        store.received.remember(f"r{n}")
    store.received.remember("r10")
    store.received.remember("r11")
    expected = {f"r{n}" for n in range(12) if store.received.seen(f"r{n}")}
    assert expected == {f"r{n}" for n in range(7, 12)}
    job, d = runner.jobs.pop(0)
    if step != "queued":
        fd = job()
    if step == "renamed":
        d.callback(fd)
    crashed = tmp_path / "crashed"
    shutil.copytree(live, crashed, ignore=shutil.ignore_patterns("LOCK"))  # the directory as a crash leaves it
    if step == "tmp torn":
        tmp = crashed / "received.tmp"
        tmp.write_bytes(tmp.read_bytes()[: tmp.stat().st_size // 2])
    assert window_of(crashed, 5) == expected
    assert not (crashed / "received.tmp").exists(), "recovery removes the leftover"
    if step in ("tmp written", "tmp torn"):
        d.callback(fd)
    elif step == "queued":
        d.callback(job())
    store.close()


def test_a_failed_compaction_keeps_the_window_and_is_tried_again(tmp_path, clock):
    """An fsync error in the rewrite is reported; the old file stays the window; a later compaction succeeds."""
    problems: list[str] = []
    fsync = PathFsync()
    fsync.fail_for = "received.tmp"
    r = FileReceivedIds.open(str(tmp_path), clock=clock, window=5, sync="group", fsync=fsync,
                             on_problem=lambda s, d: problems.append(s))
    for n in range(10):
        r.remember(f"r{n}")
    assert problems == ["received-id window compaction failed"]
    assert not (tmp_path / "received.tmp").exists() and r.stats()["compactions"] == 0
    r.remember("r10")
    assert ids_in(tmp_path)[-1] == "r10", "still appending to the old file"
    fsync.fail_for = None
    for n in range(11, 15):
        r.remember(f"r{n}")
    assert r.stats()["compactions"] == 1 and ids_in(tmp_path) == [f"r{n}" for n in range(10, 15)]
    r.close()


def test_a_failed_compaction_in_the_runner_keeps_the_window(tmp_path, clock):
    """A rewrite that fails in the store's thread is reported and the old file stays the window."""
    problems: list[str] = []
    fsync = PathFsync()
    fsync.fail_for = "received.tmp"
    runner = ManualRunner()
    store = FileEventStore.open(str(tmp_path), clock=clock, sync="group", fsync=fsync, fsync_runner=runner,
                                received_window=5, on_problem=lambda s, d: problems.append(s))
    for n in range(10):
        store.received.remember(f"r{n}")
    runner.run_next()
    assert problems == ["received-id window compaction failed"] and not store.received.compacting
    assert not (tmp_path / "received.tmp").exists()
    store.received.remember("r10")
    clock.advance(1)
    runner.run_next()  # the store's commit still syncs the old file
    closed: list = []
    store.close().addBoth(closed.append)
    assert closed == [None]
    assert window_of(tmp_path, 5) == {f"r{n}" for n in range(6, 11)}


def test_close_waits_for_a_running_compaction(tmp_path, clock):
    """close() fires only once the compaction in the thread is done; nothing is left half-written."""
    runner = ManualRunner()
    store = FileEventStore.open(str(tmp_path), clock=clock, sync="group", fsync=lambda fd: None, fsync_runner=runner,
                                received_window=5)
    for n in range(10):
        store.received.remember(f"r{n}")
    closed: list = []
    store.close().addBoth(closed.append)
    assert closed == []
    runner.run_next()
    assert closed == [None] and not (tmp_path / "received.tmp").exists()
    assert window_of(tmp_path, 5) == {f"r{n}" for n in range(5, 10)}


@pytest_twisted.ensureDeferred
async def test_compaction_in_the_fsync_thread_on_the_real_reactor(tmp_path):
    """fsync_in_thread=True: the rewrite's fsync runs in the gwproactor-fsync thread and every id survives."""
    from twisted.internet import reactor

    fsync = PathFsync()
    store = FileEventStore.open(str(tmp_path), clock=reactor, sync="group", group_ms=1, fsync=fsync,
                                fsync_in_thread=True, received_window=50)
    for n in range(100):
        store.received.remember(f"r{n}")
    assert store.received.compacting
    await store.received.when_idle().addTimeout(10, reactor)
    threads = {t for name, t in fsync.log if name == "received.tmp"}
    assert threads == {"gwproactor-fsync"}
    assert store.received.stats()["compactions"] == 1
    await store.close()
    store = FileEventStore.open(str(tmp_path), clock=reactor, sync="never", received_window=50)
    assert all(store.received.seen(f"r{n}") for n in range(50, 100))
    await store.close()


class CountingWrites:
    """Wraps the window's SysCalls and counts ``write_all`` calls on ``received.log``."""

    def __init__(self, calls) -> None:
        self._calls = calls
        self.writes = 0

    def __getattr__(self, name):
        return getattr(self._calls, name)

    def write_all(self, fd, data):
        self.writes += 1
        return self._calls.write_all(fd, data)


def test_held_records_are_written_together_at_flush(tmp_path, clock):
    """hold_writes: remember() keeps records until flush() writes them in one write; the flush is scheduled once."""
    window = FileReceivedIds.open(str(tmp_path), clock=clock, sync="never")
    window._calls = counting = CountingWrites(window._calls)
    scheduled = []
    window.hold_writes(scheduled.append)
    for n in range(5):
        window.remember(f"r{n}")
    assert window.seen("r4") and counting.writes == 0 and ids_in(tmp_path) == []
    assert scheduled == [window.flush]  # one fallback flush for the whole batch
    window.flush()
    assert counting.writes == 1 and ids_in(tmp_path) == [f"r{n}" for n in range(5)]
    window.flush()  # nothing held: no write
    assert counting.writes == 1
    window.remember("r5")
    assert len(scheduled) == 2
    window.close()  # close writes what is held
    assert ids_in(tmp_path)[-1] == "r5"


def test_held_records_are_written_before_a_commit_syncs_the_window(tmp_path, clock):
    """A store commit that fsyncs the window (dup_for_sync) writes the held records first, so the fsync covers them."""
    store = FileEventStore.open(str(tmp_path), clock=clock, sync="group")
    store.received.hold_writes(lambda flush: None)  # no fallback: only the commit can write them
    store.received.remember("r0")
    assert ids_in(tmp_path) == []
    fd = store.received.dup_for_sync()
    assert fd is not None and ids_in(tmp_path) == ["r0"]
    os.close(fd)
    store.close()


@pytest.mark.parametrize("threaded", [False, True])
def test_compactions_copy_the_window_tail_and_keep_every_id(tmp_path, clock, monkeypatch, threaded):
    """After the first compaction each one copies the file's last `window` records (no re-encoding), also
    while ids keep coming during a threaded one; a crash copy after each holds exactly the window."""
    tails: list[tuple[int, int]] = []
    original = FileReceivedIds._write_tail

    def spy(self, begin, end):
        tails.append((begin, end))
        return original(self, begin, end)

    monkeypatch.setattr(FileReceivedIds, "_write_tail", spy)
    runner = ManualRunner() if threaded else None
    live = tmp_path / "live"
    store = FileEventStore.open(str(live), clock=clock, sync="group", fsync=lambda fd: None,
                                fsync_runner=runner, received_window=5)
    received = store.received
    n = 0
    for round_ in range(6):
        while received.stats()["compactions"] == round_ and not received.compacting:
            received.remember(f"r{n}")
            n += 1
        if threaded:
            received.remember(f"r{n}")  # arrives while the thread rewrites
            n += 1
            runner.run_next()
        clock.advance(1)
        if threaded and runner.jobs:
            runner.run_next()  # the store's commit
        expected = {f"r{i}" for i in range(n) if received.seen(f"r{i}")}
        assert len(expected) == 5
        crashed = tmp_path / f"crashed{round_}"
        shutil.copytree(live, crashed, ignore=shutil.ignore_patterns("LOCK"))
        assert window_of_ids(crashed, 5, n) == expected
    assert received.stats()["compactions"] == 6 and len(tails) == 6  # every one a tail copy (a new file)
    store.close()


def window_of_ids(directory, window: int, n: int) -> set[str]:
    store = FileEventStore.open(str(directory), clock=Clock(), sync="never", received_window=window)
    try:
        return {f"r{i}" for i in range(n) if store.received.seen(f"r{i}")}
    finally:
        store.close()


def test_after_a_failed_write_the_compaction_rewrites_the_window(tmp_path, clock, monkeypatch):
    """A record whose write failed is missing from the file: the next compaction encodes the window again
    (not a tail copy), so the id is back on disk."""
    tails: list[int] = []
    original = FileReceivedIds._write_tail
    monkeypatch.setattr(FileReceivedIds, "_write_tail", lambda self, b, e: tails.append(b) or original(self, b, e))
    problems: list[str] = []
    r = FileReceivedIds.open(str(tmp_path), clock=clock, window=5, sync="never",
                             on_problem=lambda s, d: problems.append(s))
    r.remember("r0")
    calls = r._calls

    class FailOnce:
        failed = False

        def __getattr__(self, name):
            return getattr(calls, name)

        def write_all(self, fd, data):
            if not FailOnce.failed:
                FailOnce.failed = True
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return calls.write_all(fd, data)

    r._calls = FailOnce()
    r.remember("r1")  # in the window, not in the file
    assert problems == ["received-id window write failed"] and "r1" not in ids_in(tmp_path)
    r._calls = calls
    for n in range(2, 11):  # the failed write is no record: 10 records after r10
        r.remember(f"r{n}")
    assert r.stats()["compactions"] == 1 and tails == []  # the rewrite from the window, not a copy
    assert ids_in(tmp_path) == [f"r{n}" for n in range(6, 11)]
    for n in range(11, 16):
        r.remember(f"r{n}")
    assert r.stats()["compactions"] == 2 and len(tails) == 1  # offsets known again: a tail copy
    assert ids_in(tmp_path) == [f"r{n}" for n in range(11, 16)]
    r.close()
