"""FileEventStore behaviour beyond the shared contract: restart, segments, sync policies, lock, received ids."""

from __future__ import annotations

import json
import os
import time

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from gwproactor.errors import CorruptRecord, StoreClosed
from gwproactor.interfaces import IReceivedIds
from gwproactor.store import FileEventStore, FileReceivedIds, MemoryReceivedIds, StoreLocked, StoreWriteError
from gwproactor.store._format import record_size


class FsyncCounter:
    """An injectable fsync that records calls (and can be told to fail)."""

    def __init__(self, log: list | None = None) -> None:
        self.calls = 0
        self.fail = False
        self.log = log if log is not None else []

    def __call__(self, fd: int) -> None:
        if self.fail:
            raise OSError(5, "Input/output error")
        self.calls += 1
        self.log.append("fsync")


def fired(d) -> list:
    out: list = []
    d.addBoth(out.append)
    return out


def value(d):
    out = fired(d)
    assert out, "Deferred did not fire"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


@pytest.fixture
def clock():
    c = Clock()
    c.advance(1_000_000)
    return c


def open_store(path, clock, **kw):
    kw.setdefault("sync", "never")
    kw.setdefault("wall", clock.seconds)  # the test's clock is also the wall clock of the record times
    return FileEventStore.open(str(path), clock=clock, **kw)


def seg_files(path, ext="log"):
    return sorted(n for n in os.listdir(path) if n.startswith("seg-") and n.endswith("." + ext))


def test_restart_keeps_pending_payloads_order_and_times(tmp_path, clock):
    """Pending events, their payloads, order and append times survive close + reopen; acks too."""
    s = open_store(tmp_path, clock)
    for i in range(10):
        value(s.append(f"e{i}", f"payload {i}".encode()))
        clock.advance(1)
    s.ack("e0")
    s.ack("e5")
    value(s.close())
    clock.advance(100)
    s = open_store(tmp_path, clock)
    assert s.pending_ids() == [f"e{i}" for i in range(10) if i not in (0, 5)]
    assert s.read("e7") == b"payload 7"
    assert s.stats()["oldest_age_s"] == pytest.approx(109)
    s.close()


def test_segments_roll_and_are_deleted_when_fully_acked(tmp_path, clock):
    """Segments roll at segment_bytes; a segment and its ack file go once every event in it is acked."""
    size = record_size("e00", b"x" * 100)
    s = open_store(tmp_path, clock, segment_bytes=3 * size)
    for i in range(9):
        value(s.append(f"e{i:02d}", b"x" * 100))
    assert seg_files(tmp_path) == ["seg-0000000001.log", "seg-0000000002.log", "seg-0000000003.log"]
    assert s.stats()["segments"] == 3
    s.ack("e00")
    s.ack("e01")
    assert "seg-0000000001.ack" in os.listdir(tmp_path)
    s.ack("e02")
    assert seg_files(tmp_path) == ["seg-0000000002.log", "seg-0000000003.log"]
    assert seg_files(tmp_path, "ack") == []
    for i in range(6, 9):
        s.ack(f"e{i:02d}")
    assert "seg-0000000003.log" in os.listdir(tmp_path), "the active segment stays until it rolls or closes"
    assert s.stats()["disk_bytes"] == sum(os.path.getsize(tmp_path / n) for n in seg_files(tmp_path)
                                          + seg_files(tmp_path, "ack"))
    for i in range(3, 6):
        s.ack(f"e{i:02d}")
    value(s.close())
    assert seg_files(tmp_path) == [] and seg_files(tmp_path, "ack") == []


def test_new_segment_after_restart_does_not_reuse_numbers(tmp_path, clock):
    """After reopening, appends go to a new segment numbered after every existing one."""
    s = open_store(tmp_path, clock)
    value(s.append("a", b"1"))
    value(s.close())
    s = open_store(tmp_path, clock)
    value(s.append("b", b"2"))
    assert seg_files(tmp_path) == ["seg-0000000001.log", "seg-0000000002.log"]
    s.close()


def test_read_goes_to_disk(tmp_path, clock):
    """read reads the record from disk (memory holds no payload): a byte changed on disk is a CorruptRecord."""
    s = open_store(tmp_path, clock)
    value(s.append("a", b"hello world"))
    path = tmp_path / "seg-0000000001.log"
    data = bytearray(path.read_bytes())
    data[-6] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecord):
        s.read("a")
    s.close()


def test_sync_always_fsyncs_each_append_before_firing(tmp_path, clock):
    """Under always, each append's Deferred fires only after an fsync of its segment."""
    log: list = []
    fs = FsyncCounter(log)
    s = open_store(tmp_path, clock, sync="always", fsync=fs)
    base = fs.calls
    for i in range(5):
        s.append(f"e{i}", b"x").addCallback(lambda eid: log.append(eid))
    assert fs.calls - base == 5 + 1  # one per append + the directory fsync of the new segment
    assert log[-2:] == ["fsync", "e4"]
    assert all(log[log.index(f"e{i}") - 1] == "fsync" for i in range(5))
    assert s.stats()["fsyncs"] == fs.calls
    s.close()


def test_sync_group_fires_all_after_one_fsync(tmp_path, clock):
    """Under group, appends of one turn fire together after one fsync; fsyncs are at least group_ms apart."""
    fs = FsyncCounter()
    s = open_store(tmp_path, clock, sync="group", group_ms=10, fsync=fs)
    base = fs.calls
    results = [fired(s.append(f"e{i}", b"x")) for i in range(100)]
    assert not any(results) and fs.calls == base
    clock.advance(0)  # after a quiet spell the group is synced on the next reactor turn
    assert all(r == [f"e{i}"] for i, r in enumerate(results))
    assert fs.calls - base == 2  # the segment, and the directory entry of the new segment, in one commit
    later = fired(s.append("late", b"x"))
    clock.advance(0.009)
    assert later == []  # the previous fsync was less than group_ms ago
    clock.advance(0.001)
    assert later == ["late"] and fs.calls - base == 3
    assert clock.getDelayedCalls() == []
    s.close()


def test_sync_group_duplicate_waits_for_commit(tmp_path, clock):
    """A duplicate append during the group fires with the group, not before the data is durable."""
    s = open_store(tmp_path, clock, sync="group", fsync=FsyncCounter())
    first = fired(s.append("a", b"x"))
    dup = fired(s.append("a", b"x"))
    assert first == [] and dup == []
    clock.advance(1)
    assert first == ["a"] and dup == ["a"]
    s.close()


def test_sync_never_fires_at_once_without_fsync(tmp_path, clock):
    """Under never, appends fire right after write() and nothing is fsynced before close."""
    fs = FsyncCounter()
    s = open_store(tmp_path, clock, sync="never", fsync=fs, segment_bytes=100)
    for i in range(10):
        assert fired(s.append(f"e{i}", b"x" * 30)) == [f"e{i}"]
    s.ack("e9")
    assert fs.calls == 0 and clock.getDelayedCalls() == []
    value(s.close())
    assert fs.calls == 2, "close fsyncs the active segment and its ack file"


def test_close_commits_the_open_group(tmp_path, clock):
    """close fsyncs and fires the appends of a group that has not committed yet."""
    fs = FsyncCounter()
    s = open_store(tmp_path, clock, sync="group", fsync=fs)
    d = fired(s.append("a", b"x"))
    value(s.close())
    assert d == ["a"]
    assert clock.getDelayedCalls() == []


def test_fsync_failure_fails_the_group_and_its_events_are_not_pending(tmp_path, clock):
    """An fsync error fails the group's appends (StoreWriteError with errno and path), is reported, and leaves
    those events not pending; appended again once the disk is back, they are stored once and survive a restart."""
    problems: list = []
    fs = FsyncCounter()
    s = open_store(tmp_path, clock, sync="group", fsync=fs, on_problem=lambda a, b: problems.append(a))
    fs.fail = True
    results = [fired(s.append(f"e{i}", b"x")) for i in range(3)]
    clock.advance(1)
    for r in results:
        assert isinstance(r[0], Failure) and r[0].check(StoreWriteError)
        assert r[0].value.errno == 5 and r[0].value.path.endswith(".log") and r[0].value.path in str(r[0].value)
    assert s.stats()["write_errors"] >= 1
    assert "event store fsync failed" in problems
    assert s.pending_ids() == [], "a failed append is not pending: append it again"
    fs.fail = False
    again = [fired(s.append(f"e{i}", b"x")) for i in range(3)]
    clock.advance(1)
    assert again == [["e0"], ["e1"], ["e2"]]
    value(s.close())
    s = open_store(tmp_path, clock)
    assert s.pending_ids() == ["e0", "e1", "e2"] and s.stats()["corrupt_records"] == 0
    s.close()


def test_drops_and_set_aside_persist(tmp_path, clock):
    """Dropped and set-aside events stay gone after a restart; set-aside bytes and reason are kept."""
    size = record_size("e0", b"x" * 10)
    s = open_store(tmp_path, clock, max_bytes=3 * size)
    for i in range(5):
        value(s.append(f"e{i}", b"x" * 10))
    s.set_aside("e3", "undecodable payload")
    value(s.close())
    s = open_store(tmp_path, clock, max_bytes=3 * size)
    assert s.pending_ids() == ["e2", "e4"]
    s.close()
    aside = tmp_path / "set-aside"
    assert b"e3" in (aside / "events.log").read_bytes()
    reason = json.loads((aside / "reasons.jsonl").read_text().splitlines()[0])
    assert reason["id"] == "e3" and reason["reason"] == "undecodable payload"


def test_files_carry_wall_time_not_the_clock(tmp_path):
    """Record, ack, received-id and set-aside times are time.time(), whatever the (monotonic) timer clock says."""
    from gwproactor.store import _format

    clock = Clock()
    clock.advance(5.0)  # a monotonic clock reads seconds since boot, not since the epoch
    before = time.time()
    s = FileEventStore.open(str(tmp_path), clock=clock, sync="never")
    for i in range(3):
        value(s.append(f"e{i}", b"x"))
    s.ack("e0")
    s.set_aside("e1", "test")
    s.received.remember("r0")
    assert s.stats()["oldest_age_s"] < 60
    value(s.close())
    after = time.time()
    kinds, times = [], []
    for name in sorted(os.listdir(tmp_path)):
        if name.endswith((".log", ".ack")):
            records, _ = _format.scan((tmp_path / name).read_bytes())
            kinds += [r.kind for r in records]
            times += [r.time for r in records]
    reason = json.loads((tmp_path / "set-aside" / "reasons.jsonl").read_text().splitlines()[0])
    times += [reason["appended"], reason["set_aside"]]
    assert {_format.KIND_EVENT, _format.KIND_ACK, _format.KIND_RECEIVED} <= set(kinds)
    assert all(before - 1 <= t <= after + 1 for t in times), times


def test_second_open_is_locked(tmp_path, clock):
    """A second open of the same directory raises StoreLocked until the first closes."""
    s = open_store(tmp_path, clock)
    with pytest.raises(StoreLocked):
        open_store(tmp_path, clock)
    s.close()
    open_store(tmp_path, clock).close()


def test_closed_store_append_fails(tmp_path, clock):
    """Append after close errbacks StoreClosed (file store)."""
    s = open_store(tmp_path, clock)
    s.close()
    with pytest.raises(StoreClosed):
        value(s.append("a", b"x"))


def test_bad_sync_policy(tmp_path, clock):
    """An unknown sync policy is a ValueError."""
    with pytest.raises(ValueError, match="always"):
        open_store(tmp_path, clock, sync="sometimes")


# --- received ids ------------------------------------------------------------------


def test_received_ids_provide_interface(tmp_path, clock):
    """FileReceivedIds, the store's window and MemoryReceivedIds provide IReceivedIds."""
    s = open_store(tmp_path / "s", clock)
    assert verifyObject(IReceivedIds, s.received)
    assert verifyObject(IReceivedIds, FileReceivedIds.open(str(tmp_path / "r"), clock=clock))
    assert verifyObject(IReceivedIds, MemoryReceivedIds())
    s.close()


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_received_window_is_bounded(tmp_path, clock, kind):
    """The window keeps the last `window` ids; older ones are no longer seen."""
    r = FileReceivedIds.open(str(tmp_path), clock=clock, window=3, sync="never") if kind == "file" \
        else MemoryReceivedIds(window=3)
    for i in range(5):
        r.remember(f"r{i}")
    assert [r.seen(f"r{i}") for i in range(5)] == [False, False, True, True, True]


def test_received_ids_survive_restart_and_compact(tmp_path, clock):
    """Remembered ids survive a reopen; the log is compacted when it reaches twice the window."""
    fs = FsyncCounter()
    r = FileReceivedIds.open(str(tmp_path), clock=clock, window=10, sync="always", fsync=fs)
    for i in range(25):
        r.remember(f"r{i}")
    assert r.stats()["compactions"] == 1
    assert 10 <= r.stats()["log_records"] < 20
    r.close()
    r = FileReceivedIds.open(str(tmp_path), clock=clock, window=10, sync="always", fsync=fs)
    assert [i for i in range(25) if r.seen(f"r{i}")] == list(range(15, 25))
    r.close()


def test_store_received_window_persists(tmp_path, clock):
    """The store's own received window persists in its directory across restarts."""
    s = open_store(tmp_path, clock, sync="group", fsync=FsyncCounter())
    s.received.remember("x1")
    clock.advance(1)
    s.close()
    s = open_store(tmp_path, clock)
    assert s.received.seen("x1") and not s.received.seen("x2")
    s.close()


def test_received_corrupt_log_reported(tmp_path, clock):
    """A corrupt received.log keeps its readable ids and reports the rest."""
    r = FileReceivedIds.open(str(tmp_path), clock=clock, sync="never")
    for i in range(3):
        r.remember(f"r{i}")
    r.close()
    with open(tmp_path / "received.log", "ab") as f:
        f.write(b"\x00garbage")
    problems: list = []
    r = FileReceivedIds.open(str(tmp_path), clock=clock, sync="never", on_problem=lambda a, b: problems.append(a))
    assert all(r.seen(f"r{i}") for i in range(3))
    assert r.stats()["corrupt_records"] == 1 and len(problems) == 1
    r.close()


# --- fsync off the reactor thread ----------------------------------------------------


class ManualRunner:
    """An fsync_runner whose batches run only when the test says so."""

    def __init__(self) -> None:
        self.batches: list = []

    def __call__(self, batch):
        d = Deferred()
        self.batches.append((batch, d))
        return d

    def run_next(self) -> None:
        batch, d = self.batches.pop(0)
        d.callback(batch())


def test_runner_group_one_outstanding_batch(tmp_path, clock):
    """With an fsync runner, a group's appends fire when its batch completes; only one batch is outstanding."""
    fs = FsyncCounter()
    runner = ManualRunner()
    s = open_store(tmp_path, clock, sync="group", fsync=fs, fsync_runner=runner)
    first = [fired(s.append(f"a{i}", b"x")) for i in range(3)]
    clock.advance(0.01)
    assert len(runner.batches) == 1 and not any(first)
    second = [fired(s.append(f"b{i}", b"x")) for i in range(2)]
    clock.advance(0.01)
    assert len(runner.batches) == 1, "no second batch while one is outstanding"
    runner.run_next()
    assert first == [["a0"], ["a1"], ["a2"]] and not any(second)
    assert len(runner.batches) == 1, "the waiting group starts its batch at once"
    runner.run_next()
    assert second == [["b0"], ["b1"]]
    value(s.close())


def test_runner_always_batches_waiting_appends(tmp_path, clock):
    """Under always with a runner, appends made during an fsync share the next one, and each waits for its own."""
    fs = FsyncCounter()
    runner = ManualRunner()
    s = open_store(tmp_path, clock, sync="always", fsync=fs, fsync_runner=runner)
    a = fired(s.append("a", b"x"))
    b = fired(s.append("b", b"x"))
    c = fired(s.append("c", b"x"))
    assert len(runner.batches) == 1 and not (a or b or c)
    runner.run_next()
    assert a == ["a"] and not (b or c)
    runner.run_next()
    assert b == ["b"] and c == ["c"]
    assert runner.batches == []
    value(s.close())


def test_runner_close_waits_for_outstanding_batch(tmp_path, clock):
    """close waits for the outstanding fsync batch, then commits the rest on the reactor thread."""
    fs = FsyncCounter()
    runner = ManualRunner()
    s = open_store(tmp_path, clock, sync="group", fsync=fs, fsync_runner=runner)
    a = fired(s.append("a", b"x"))
    clock.advance(0.01)
    b = fired(s.append("b", b"x"))
    closed = fired(s.close())
    assert closed == [] and a == [] and b == []
    runner.run_next()
    assert a == ["a"] and b == ["b"] and closed == [None]
    assert runner.batches == [] and clock.getDelayedCalls() == []


def test_runner_fsync_error_fails_the_batch(tmp_path, clock):
    """An fsync error in the batch fails its appends with StoreWriteError."""
    fs = FsyncCounter()
    runner = ManualRunner()
    s = open_store(tmp_path, clock, sync="group", fsync=fs, fsync_runner=runner)
    a = fired(s.append("a", b"x"))
    clock.advance(0.01)
    fs.fail = True
    runner.run_next()
    assert a[0].check(StoreWriteError)
    fs.fail = False
    value(s.close())


def test_received_ids_are_synced_by_the_store_commit(tmp_path, clock):
    """A remembered id starts no fsync of its own: the store's next commit (its batch) syncs received.log."""
    fs = FsyncCounter()
    runner = ManualRunner()
    s = open_store(tmp_path, clock, sync="group", fsync=fs, fsync_runner=runner)
    s.received.remember("r1")
    assert s.received.dirty and fs.calls == 0
    clock.advance(0.01)
    assert len(runner.batches) == 1 and fs.calls == 0, "the reactor thread did not fsync"
    runner.run_next()
    assert fs.calls == 1 and not s.received.dirty
    assert s.received.stats()["fsyncs"] == 1 and s.stats()["fsyncs"] == 0
    # An append and an id in the same group share one batch.
    a = fired(s.append("a", b"x"))
    s.received.remember("r2")
    clock.advance(0.01)
    assert len(runner.batches) == 1
    runner.run_next()
    # 4 = received.log before; then, in this batch, the new segment's directory entry, the segment
    # and received.log.
    assert a == ["a"] and fs.calls == 4 and s.stats()["fsyncs"] == 2 and s.received.stats()["fsyncs"] == 2
    assert clock.getDelayedCalls() == []
    value(s.close())


def test_runner_new_segment_directory_synced_in_the_batch(tmp_path, clock):
    """With a runner nothing is fsynced on the reactor thread: a new segment's directory entry goes in the batch."""
    log: list = []

    def fsync(fd):
        log.append("dir" if os.path.samestat(os.fstat(fd), os.stat(tmp_path)) else "file")

    runner = ManualRunner()
    s = open_store(tmp_path, clock, sync="group", fsync=fsync, fsync_runner=runner)
    a = fired(s.append("a", b"x"))
    clock.advance(0.01)
    assert log == [] and a == []
    runner.run_next()
    assert sorted(log) == ["dir", "file"] and a == ["a"]
    value(s.close())


def test_received_ids_fsync_failure_is_reported_not_fatal(tmp_path, clock):
    """A failed fsync of received.log is reported and retried with the next id; the appends of the batch succeed."""

    problems: list = []
    state = {"fail_received": True}
    received_fd: list = []

    def fsync(fd):
        if state["fail_received"] and os.path.samestat(os.fstat(fd), os.stat(tmp_path / "received.log")):
            raise OSError(5, "Input/output error")
        received_fd.append(fd)

    runner = ManualRunner()
    s = open_store(tmp_path, clock, sync="group", fsync=fsync, fsync_runner=runner,
                   on_problem=lambda summary, details: problems.append(summary))
    a = fired(s.append("a", b"x"))
    s.received.remember("r1")
    clock.advance(0.01)
    runner.run_next()
    assert a == ["a"]
    assert problems == ["received-id window fsync failed"] and s.received.dirty
    assert s.stats()["write_errors"] == 0
    state["fail_received"] = False
    s.received.remember("r2")
    clock.advance(0.01)
    runner.run_next()
    assert not s.received.dirty and s.received.stats()["fsyncs"] == 1
    value(s.close())


def test_received_ids_sync_policies_in_the_store(tmp_path, clock):
    """Without a runner: group syncs ids with the group commit, always at once, never not at all."""
    for sync, after_remember, after_group in (("always", 1, 1), ("group", 0, 1), ("never", 0, 0)):
        directory = tmp_path / sync
        fs = FsyncCounter()
        s = open_store(directory, clock, sync=sync, fsync=fs)
        before = fs.calls
        s.received.remember("r1")
        assert fs.calls - before == after_remember, sync
        clock.advance(0.01)
        assert fs.calls - before == after_group, sync
        value(s.close())


@pytest_twisted.ensureDeferred
async def test_fsync_in_thread_on_the_real_reactor(tmp_path):
    """fsync_in_thread=True runs fsyncs in the store's own daemon thread and every append still fires."""
    import threading

    from twisted.internet import reactor

    threads: set = set()

    def fsync(fd):
        threads.add(threading.current_thread())
        os.fsync(fd)

    s = FileEventStore.open(str(tmp_path), clock=reactor, sync="group", group_ms=2, fsync=fsync,
                            fsync_in_thread=True)
    ids = await gatherResults([s.append(f"e{i}", b"x" * 100) for i in range(200)])
    s.received.remember("r1")
    assert ids == [f"e{i}" for i in range(200)]
    assert s.stats()["fsyncs"] >= 1
    workers = {t for t in threads if t is not threading.main_thread()}
    assert len(workers) == 1
    (worker,) = workers
    assert worker.daemon and "gwproactor-fsync" in worker.name
    await s.close()
    assert not worker.is_alive(), "close() ends the fsync thread"
    assert s.received.stats()["fsyncs"] >= 1 or not s.received.dirty
    s = FileEventStore.open(str(tmp_path), clock=reactor, sync="never")
    assert len(s.pending_ids()) == 200
    await s.close()

