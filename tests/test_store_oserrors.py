"""FileEventStore when the system fails: EMFILE, ENOSPC and EIO in append, commit and ack.

Every failure fails exactly the appends it concerns, promptly, with StoreWriteError (errno and path),
is reported through on_problem, leaks no descriptor, and the store works again once the condition
clears: later appends succeed, nothing durable is lost, and a failed append's event is not pending.
Faults come from the store's private ``_calls`` seam (open / write / dup) and its ``fsync``; one test
lowers RLIMIT_NOFILE for real.
"""

from __future__ import annotations

import errno
import os
import resource

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from gwproactor.errors import CorruptRecord, StoreReadError
from gwproactor.store import FileEventStore, StoreWriteError
from gwproactor.store._common import SysCalls


class FaultyCalls:
    """The store's open / write / dup, each of which can be told to fail (after ``after`` more good calls)."""

    def __init__(self) -> None:
        self.faults: dict[str, tuple[int, int, object]] = {}  # name -> (errno, calls left before failing, match)
        self.calls: dict[str, int] = {"open": 0, "write": 0, "dup": 0}
        self.times: dict[str, int | None] = {}
        self.failures = 0
        self._real = SysCalls()

    def fail(self, name: str, code: int, after: int = 0, match=None, times: int | None = None) -> None:
        """Make ``name`` raise OSError(code) from its ``after+1``-th call on (for paths containing ``match``),
        ``times`` times (None: until :meth:`heal`)."""
        self.faults[name] = (code, after, match)
        self.times[name] = times

    def heal(self) -> None:
        self.faults.clear()

    def _check(self, name: str, what: object = None) -> None:
        self.calls[name] += 1
        fault = self.faults.get(name)
        if fault is None:
            return
        code, after, match = fault
        if match is not None and match not in str(what):
            return
        if after > 0:
            self.faults[name] = (code, after - 1, match)
            return
        self.failures += 1
        left = self.times.get(name)
        if left is not None:
            if left <= 1:
                del self.faults[name]
            else:
                self.times[name] = left - 1
        raise OSError(code, os.strerror(code), what if isinstance(what, str) else None)

    def open(self, path, flags, mode=0o777):
        self._check("open", path)
        return os.open(path, flags, mode)

    def write(self, fd, data):
        fault = self.faults.get("write")
        if fault is not None and fault[1] == 0 and len(data) > 1 and fault[0] == errno.ENOSPC:
            # A disk filling up: the first write takes half the bytes, the next one fails.
            self.faults["write"] = (fault[0], -1, fault[2])
            self.calls["write"] += 1
            return os.write(fd, bytes(data[: len(data) // 2]))
        if fault is not None and fault[1] == -1:
            self.faults["write"] = (fault[0], 0, fault[2])
        self._check("write")
        return os.write(fd, data)

    def write_all(self, fd, data):
        view = memoryview(data)
        while view:
            view = view[self.write(fd, view):]

    def dup(self, fd):
        self._check("dup")
        return os.dup(fd)


class Fsync:
    """An injectable fsync that can fail with an errno: for every descriptor, for directories only
    (``only="directory"``) or for files whose name ends with ``only``."""

    def __init__(self) -> None:
        self.code: int | None = None
        self.only: str | None = None
        self.calls = 0

    def __call__(self, fd: int) -> None:
        if self.code is not None and self._matches(fd):
            raise OSError(self.code, os.strerror(self.code))
        self.calls += 1

    def _matches(self, fd: int) -> bool:
        import stat

        if self.only is None:
            return True
        if self.only == "directory":
            return stat.S_ISDIR(os.fstat(fd).st_mode)
        return os.readlink(f"/proc/self/fd/{fd}").endswith(self.only)


class ManualRunner:
    """An fsync_runner whose jobs run only when the test says so (the store's thread, by hand)."""

    def __init__(self) -> None:
        self.jobs: list = []

    def __call__(self, job):
        d: Deferred = Deferred()
        self.jobs.append((job, d))
        return d

    def run_next(self) -> None:
        job, d = self.jobs.pop(0)
        try:
            result = job()
        except BaseException as e:
            d.errback(e)
        else:
            d.callback(result)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def duplicated(directory) -> list[str]:
    """Files of ``directory`` that more than one of this process's descriptors point at (a leaked dup)."""
    from collections import Counter

    targets = Counter()
    for name in os.listdir("/proc/self/fd"):
        try:
            targets[os.readlink(f"/proc/self/fd/{name}")] += 1
        except OSError:
            pass
    return [t for t, n in targets.items() if n > 1 and t.startswith(str(directory))]


def bounded(d: Deferred, seconds: float = 10.0) -> Deferred:
    """``d`` with a deadline on the real reactor (a Deferred that never fires fails the test, not hangs it)."""
    from twisted.internet import reactor

    return d.addTimeout(seconds, reactor)


def fired(d) -> list:
    out: list = []
    d.addBoth(out.append)
    return out


def failure_of(result: list) -> StoreWriteError:
    assert result and isinstance(result[0], Failure), f"not failed: {result}"
    assert result[0].check(StoreWriteError), result[0]
    return result[0].value


@pytest.fixture
def clock():
    c = Clock()
    c.advance(1_000_000)
    return c


class Harness:
    """A file store with faulty calls and fsync, its reported problems, and the descriptors open at start."""

    def __init__(self, path, clock, **kw) -> None:
        self.path = path
        self.clock = clock
        self.calls = FaultyCalls()
        self.fsync = Fsync()
        self.problems: list[tuple[str, str]] = []
        self.kw = kw
        self.fds = open_fds()
        self.store = self.open()

    def open(self) -> FileEventStore:
        kw = dict(self.kw)
        kw.setdefault("sync", "group")
        return FileEventStore.open(str(self.path), clock=self.clock, fsync=self.fsync, _calls=self.calls,
                                   on_problem=lambda s, d: self.problems.append((s, d)), **kw)

    def summaries(self) -> list[str]:
        return [s for s, _ in self.problems]

    def settle(self) -> None:
        self.clock.advance(1)

    def reopen(self) -> FileEventStore:
        """Close and reopen; assert that the close left no descriptor behind."""
        closed = fired(self.store.close())
        assert closed == [None]
        assert open_fds() == self.fds, "the store leaked a descriptor"
        self.problems.clear()
        self.store = self.open()
        return self.store


# --- commit: dup -------------------------------------------------------------------------


def test_emfile_from_dup_fsyncs_on_the_reactor_thread_and_the_appends_fire(tmp_path, clock):
    """EMFILE from os.dup for the fsync thread: the commit fsyncs inline, the appends fire, it is reported once."""
    runner = ManualRunner()
    h = Harness(tmp_path, clock, fsync_runner=runner)
    first = fired(h.store.append("a", b"x"))
    h.settle()
    runner.run_next()
    assert first == ["a"]
    h.store.ack("a")  # an ack file to sync too: the second dup of the batch is the one that fails
    h.calls.fail("dup", errno.EMFILE, after=1)
    before = open_fds()
    results = [fired(h.store.append(f"e{i}", b"x")) for i in range(3)]
    h.settle()
    assert runner.jobs == [] and results == [["e0"], ["e1"], ["e2"]], "durable without the thread"
    assert open_fds() == before, "the duplicate made before the failure is closed"
    assert h.summaries() == ["event store could not hand its fsyncs to the fsync thread"]
    assert "Too many open files" in h.problems[0][1]
    more = [fired(h.store.append(f"f{i}", b"x")) for i in range(2)]
    h.settle()
    assert more == [["f0"], ["f1"]] and len(h.problems) == 1, "reported once per episode"
    h.calls.heal()
    late = fired(h.store.append("late", b"x"))
    h.settle()
    assert len(runner.jobs) == 1 and late == []
    runner.run_next()
    assert late == ["late"]
    store = h.reopen()
    assert store.pending_ids() == ["e0", "e1", "e2", "f0", "f1", "late"] and h.problems == []
    store.close()


def test_emfile_from_dup_of_the_received_window_still_syncs_it(tmp_path, clock):
    """When received.log's descriptor cannot be duplicated, the inline fallback still fsyncs it (it stays dirty)."""
    names: list[str] = []
    runner = ManualRunner()
    calls = FaultyCalls()
    store = FileEventStore.open(str(tmp_path), clock=clock, sync="group", _calls=calls, fsync_runner=runner,
                                fsync=lambda fd: names.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
    calls.fail("dup", errno.EMFILE)
    store.received.remember("r1")
    clock.advance(1)
    assert runner.jobs == [] and names == ["received.log"] and not store.received.dirty
    store.close()


def test_emfile_from_dup_then_fsync_error_fails_the_appends(tmp_path, clock):
    """When the inline fallback's fsync fails too, the appends fail with StoreWriteError and are not pending."""
    runner = ManualRunner()
    h = Harness(tmp_path, clock, fsync_runner=runner)
    h.calls.fail("dup", errno.EMFILE)
    h.fsync.code = errno.EIO
    results = [fired(h.store.append(f"e{i}", b"x")) for i in range(2)]
    h.settle()
    for r in results:
        error = failure_of(r)
        assert error.errno == errno.EIO and "Input/output error" in str(error)
    assert h.store.pending_ids() == []
    h.calls.heal()
    h.fsync.code = None
    again = fired(h.store.append("e0", b"x"))
    h.settle()
    runner.run_next()
    assert again == ["e0"]
    store = h.reopen()
    assert store.pending_ids() == ["e0"]
    store.close()


def test_a_runner_that_cannot_start_fails_the_group_and_closes_the_duplicates(tmp_path, clock):
    """A runner that raises fails the group's appends (StoreWriteError), closes every duplicate, and the store recovers."""
    state = {"broken": True}
    runner = ManualRunner()

    def flaky(job):
        if state["broken"]:
            raise RuntimeError("thread pool stopped")
        return runner(job)

    h = Harness(tmp_path, clock, fsync_runner=flaky)
    r = fired(h.store.append("a", b"x"))
    h.settle()
    assert "thread pool stopped" in str(failure_of(r))
    assert duplicated(tmp_path) == [] and h.store.pending_ids() == []
    state["broken"] = False
    again = fired(h.store.append("a", b"x"))
    h.settle()
    runner.run_next()
    assert again == ["a"]
    h.reopen().close()


# --- commit: fsync ------------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
@pytest.mark.parametrize("where", ["inline", "runner"])
def test_fsync_error_fails_the_group_promptly_and_the_store_recovers(tmp_path, clock, code, where):
    """EIO / ENOSPC from fsync, inline or in the runner: the group fails (errno, path), is not pending, the store recovers."""
    runner = ManualRunner() if where == "runner" else None
    h = Harness(tmp_path, clock, fsync_runner=runner)
    good = fired(h.store.append("good", b"x"))
    h.settle()
    if runner:
        runner.run_next()
    assert good == ["good"]
    h.fsync.code = code
    results = [fired(h.store.append(f"e{i}", b"x")) for i in range(3)]
    h.settle()
    if runner:
        runner.run_next()
    for r in results:
        error = failure_of(r)
        assert error.errno == code and error.path.endswith(".log")
    assert h.store.pending_ids() == ["good"], "failed appends are not pending; the durable one stays"
    assert "event store fsync failed" in h.summaries()
    h.fsync.code = None
    again = [fired(h.store.append(f"e{i}", b"x")) for i in range(3)]
    h.settle()
    if runner:
        runner.run_next()
    assert again == [["e0"], ["e1"], ["e2"]]
    store = h.reopen()
    assert store.pending_ids() == ["good", "e0", "e1", "e2"]
    assert h.problems == [] and store.stats()["corrupt_records"] == 0
    store.close()


def test_sync_always_fsync_error_fails_at_once(tmp_path, clock):
    """Under always without a thread, an fsync error fails the append before append() returns."""
    h = Harness(tmp_path, clock, sync="always")
    h.fsync.code = errno.EIO
    r = fired(h.store.append("a", b"x"))
    assert failure_of(r).errno == errno.EIO and h.store.pending_ids() == []
    h.fsync.code = None
    assert fired(h.store.append("a", b"x")) == ["a"]
    h.reopen().close()


def test_directory_fsync_error_fails_only_the_appends_of_the_new_segment(tmp_path, clock):
    """A failed fsync of the directory fails the appends in the segment it created, not those of the old one."""
    h = Harness(tmp_path, clock, segment_bytes=150)
    first = fired(h.store.append("old0", b"x" * 40))
    h.settle()
    assert first == ["old0"]
    h.fsync.code, h.fsync.only = errno.EIO, "directory"
    old = fired(h.store.append("old1", b"x" * 40))  # still fits in the first segment
    new = fired(h.store.append("new0", b"x" * 40))  # starts the second one
    h.settle()
    assert old == ["old1"]
    assert failure_of(new).path == str(tmp_path) and "directory fsync" in str(failure_of(new))
    assert h.store.pending_ids() == ["old0", "old1"]
    h.fsync.code = None
    again = fired(h.store.append("new0", b"x" * 40))
    h.settle()
    assert again == ["new0"]
    store = h.reopen()
    assert store.pending_ids() == ["old0", "old1", "new0"]
    store.close()


# --- append: open and write ------------------------------------------------------------------


def test_emfile_opening_a_new_segment_fails_that_append_at_once(tmp_path, clock):
    """EMFILE when an append needs a new segment: that append fails at once (errno, path); later ones succeed."""
    h = Harness(tmp_path, clock, segment_bytes=100)
    a = fired(h.store.append("a", b"x" * 60))
    h.settle()
    h.calls.fail("open", errno.EMFILE, match=".log")
    b = fired(h.store.append("b", b"x" * 60))
    error = failure_of(b)
    assert error.errno == errno.EMFILE and error.path.endswith("seg-0000000002.log")
    assert "event store segment open failed" in h.summaries()
    assert h.store.pending_ids() == ["a"]
    h.calls.heal()
    c = fired(h.store.append("b", b"x" * 60))
    h.settle()
    assert a == ["a"] and c == ["b"]
    store = h.reopen()
    assert store.pending_ids() == ["a", "b"] and h.problems == []
    store.close()


@pytest.mark.parametrize("code, new_segment", [(errno.ENOSPC, False), (errno.EIO, True)])
def test_write_error_leaves_no_torn_record(tmp_path, clock, code, new_segment):
    """A failed write (half a record, then ENOSPC; or EIO) fails that append and leaves no partial record behind."""
    h = Harness(tmp_path, clock)
    fired(h.store.append("a", b"x" * 100))
    h.settle()
    seg = tmp_path / "seg-0000000001.log"
    size = seg.stat().st_size
    h.calls.fail("write", code)
    r = fired(h.store.append("b", b"y" * 100))
    assert failure_of(r).errno == code and "event store append failed" in h.summaries()
    assert seg.stat().st_size == size, "the partial record was cut off"
    h.calls.heal()
    again = fired(h.store.append("b", b"y" * 100))
    h.settle()
    assert again == ["b"]
    assert (tmp_path / "seg-0000000002.log").exists() == new_segment
    store = h.reopen()
    assert store.pending_ids() == ["a", "b"] and store.read("b") == b"y" * 100
    assert h.problems == [] and store.stats()["corrupt_records"] == 0
    store.close()


def test_failed_append_is_not_pending_after_a_restart(tmp_path, clock):
    """An append whose fsync failed does not come back after a restart (its record got an ack)."""
    h = Harness(tmp_path, clock)
    h.fsync.code = errno.EIO
    r = fired(h.store.append("lost", b"x"))
    h.settle()
    failure_of(r)
    h.fsync.code = None
    store = h.reopen()
    assert store.pending_ids() == []
    store.close()


# --- ack --------------------------------------------------------------------------------


def test_ack_write_failure_is_reported_and_retried(tmp_path, clock):
    """EMFILE opening the ack file: the ack is reported and kept; the next ack writes both; nothing leaks."""
    h = Harness(tmp_path, clock)
    for i in range(4):
        fired(h.store.append(f"e{i}", b"x"))
    h.settle()
    h.calls.fail("open", errno.EMFILE, match=".ack")
    assert h.store.ack("e0") is True
    assert "event store ack write failed" in h.summaries() and h.store.pending_ids() == ["e1", "e2", "e3"]
    h.calls.heal()
    assert h.store.ack("e1") is True
    h.settle()
    store = h.reopen()
    assert store.pending_ids() == ["e2", "e3"], "the failed ack was written with the next one"
    store.close()


def test_ack_still_failing_at_close_costs_a_duplicate_not_a_loss(tmp_path, clock):
    """An ack that could never be written brings its event back after a restart (a duplicate, never a loss)."""
    h = Harness(tmp_path, clock)
    for i in range(2):
        fired(h.store.append(f"e{i}", b"x"))
    h.settle()
    h.calls.fail("write", errno.EIO)
    h.store.ack("e0")
    closed = fired(h.store.close())
    assert closed == [None] and open_fds() == h.fds
    h.calls.heal()
    h.store = h.open()
    assert h.store.pending_ids() == ["e0", "e1"]
    assert h.store.stats()["corrupt_records"] == 0, "no torn ack record"
    h.store.close()


# --- the real thing: RLIMIT_NOFILE, the fsync thread, a real reactor ------------------------------


@pytest_twisted.ensureDeferred
async def test_emfile_for_real_with_the_fsync_thread(tmp_path):
    """With every descriptor in use (RLIMIT_NOFILE): appends to the open segment still become durable, an
    append that needs a new segment fails with EMFILE, an ack is kept; all recovers once descriptors are back."""
    from twisted.internet import reactor

    problems: list = []
    start = open_fds()
    store = FileEventStore.open(str(tmp_path), clock=reactor, sync="group", group_ms=1, fsync_in_thread=True,
                                segment_bytes=10_000, on_problem=lambda s, d: problems.append(s))
    assert await bounded(store.append("warm", b"x" * 100)) == "warm"  # the thread runs, the segment is open
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    try:
        highest = max(int(n) for n in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
        while True:  # take every free descriptor below the limit
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as e:
                assert e.errno == errno.EMFILE
                break
        durable = [store.append(f"e{i}", b"x" * 100) for i in range(3)]
        big = store.append("big", b"x" * 20_000)  # needs a new segment: no descriptor for it
        assert big.called
        big_result = fired(big)
        assert store.ack("warm") is True  # the ack file cannot be opened: kept for later
        for d in durable:  # bounded: a commit that lost its waiters would hang here
            assert await bounded(d) in ("e0", "e1", "e2")
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    error = failure_of(big_result)
    assert error.errno == errno.EMFILE and error.path.endswith(".log")
    assert "event store could not hand its fsyncs to the fsync thread" in problems
    assert "event store ack write failed" in problems
    assert await bounded(store.append("big", b"x" * 20_000)) == "big"
    assert await bounded(store.append("after", b"x")) == "after"
    await bounded(store.close())
    assert open_fds() == start, "nothing leaked"
    store = FileEventStore.open(str(tmp_path), clock=reactor, sync="never")
    assert store.pending_ids() == ["e0", "e1", "e2", "big", "after"]
    await store.close()


# --- read -------------------------------------------------------------------------------------


def test_read_out_of_descriptors_closes_cached_ones_and_retries(tmp_path, clock):
    """EMFILE opening a segment for a read: the store closes the descriptors it caches and tries once more;
    another OS error raises StoreReadError (a CorruptRecord whose record may be intact) with its errno."""
    h = Harness(tmp_path, clock, segment_bytes=100, sync="never")
    for i in range(4):
        h.store.append(f"e{i}", b"x" * 60)  # one segment each; the retired ones are closed
    assert h.store.read("e0") == h.store.read("e1") == b"x" * 60  # their descriptors are cached now
    h.calls.fail("open", errno.EMFILE, match="seg-0000000003.log", times=1)
    assert h.store.read("e2") == b"x" * 60 and h.calls.failures == 1
    h.calls.fail("open", errno.EIO, match=".log")
    with pytest.raises(StoreReadError) as info:
        h.store.read("e0")  # its cached descriptor was given back: reopened, and that fails
    assert isinstance(info.value, CorruptRecord) and info.value.errno == errno.EIO
    h.calls.heal()
    assert h.store.read("e0") == b"x" * 60
    h.reopen().close()


# --- the rest of the table in docs/store.rst ----------------------------------------------------


def test_ack_fsync_error_is_reported_and_fails_no_append(tmp_path, clock):
    """An fsync error of an ack file is reported; the appends of the same commit still fire."""
    h = Harness(tmp_path, clock)
    fired(h.store.append("a", b"x"))
    h.settle()
    h.store.ack("a")
    h.fsync.code, h.fsync.only = errno.EIO, ".ack"
    b = fired(h.store.append("b", b"x"))
    h.settle()
    assert b == ["b"] and "event store ack fsync failed" in h.summaries()
    h.fsync.code = None
    store = h.reopen()
    assert store.pending_ids() == ["b"]
    store.close()


def test_received_window_write_error_leaves_no_torn_frame(tmp_path, clock):
    """A failed write of a received id (half a frame, then ENOSPC) is reported and cut back; the id stays seen."""
    from gwproactor.store._scan import scan_received

    h = Harness(tmp_path, clock)
    h.store.received.remember("r0")
    h.calls.fail("write", errno.ENOSPC)
    h.store.received.remember("r1")
    assert "received-id window write failed" in h.summaries() and h.store.received.seen("r1")
    ids, bad = scan_received((tmp_path / "received.log").read_bytes())
    assert ids == ["r0"] and bad == []
    h.calls.heal()
    h.store.received.remember("r2")
    store = h.reopen()
    assert h.problems == [] and store.received.seen("r2") and not store.received.seen("r1")
    store.close()


def test_a_repair_that_cannot_be_written_at_open_leaves_the_files_and_opens(tmp_path, clock):
    """ENOSPC while recovery rewrites a damaged segment: open still succeeds, says so, and serves the events."""
    s = FileEventStore.open(str(tmp_path), clock=clock, sync="never")
    for i in range(3):
        s.append(f"e{i}", b"x" * 40)
    s.ack("e0")
    s.close()
    seg = tmp_path / "seg-0000000001.log"
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0xFF  # e2's CRC
    seg.write_bytes(bytes(data))
    calls = FaultyCalls()
    calls.fail("write", errno.ENOSPC)
    problems: list[str] = []
    store = FileEventStore.open(str(tmp_path), clock=clock, sync="never", _calls=calls,
                                on_problem=lambda a, b: problems.append(b))
    assert any("could not be rewritten" in d and "No space left" in d for d in problems)
    assert store.pending_ids() == ["e1"] and store.read("e1") == b"x" * 40, "e0 stays acked, e2 is damaged"
    assert not (tmp_path / "seg-0000000001.log.tmp").exists() and seg.read_bytes() == bytes(data)
    calls.heal()
    store.close()
    problems.clear()
    store = FileEventStore.open(str(tmp_path), clock=clock, sync="never", on_problem=lambda a, b: problems.append(b))
    assert store.pending_ids() == ["e1"] and problems and "could not be rewritten" not in problems[0]
    store.close()
