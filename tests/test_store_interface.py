"""The IEventStore contract, run against both the file store and the memory store."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from gwproactor.errors import EventNotFound, StoreClosed, StoreError, StoreFull
from gwproactor.interfaces import IEventStore
from gwproactor.store import FileEventStore, MemoryEventStore
from gwproactor.store._format import record_size

STAT_KEYS = {
    "pending", "pending_bytes", "oldest_age_s", "appended", "acked", "dropped", "rejected", "set_aside",
    "corrupt_records", "segments", "disk_bytes", "fsyncs",
}


class Harness:
    """A store under test with its clock and the problems it reported."""

    def __init__(self, kind: str, tmp_path, **settings) -> None:
        self.kind = kind
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.problems: list[tuple[str, str]] = []
        self.tmp_path = tmp_path
        self.settings = settings
        self.store = self.make(**settings)

    def make(self, **settings):
        on_problem = lambda s, d: self.problems.append((s, d))  # noqa: E731
        if self.kind == "memory":
            return MemoryEventStore(clock=self.clock, wall=self.clock.seconds, on_problem=on_problem, **settings)
        return FileEventStore.open(str(self.tmp_path / "store"), clock=self.clock, wall=self.clock.seconds,
                                   on_problem=on_problem, sync="group", fsync=lambda fd: None, **settings)

    def result(self, d):
        """Let any group commit happen and return the Deferred's result (raise its failure)."""
        self.clock.advance(1)
        out = []
        d.addBoth(out.append)
        assert out, "Deferred did not fire"
        if isinstance(out[0], Failure):
            out[0].raiseException()
        return out[0]

    def append(self, event_id: str, payload: bytes = b'{"TypeName": "t"}'):
        return self.result(self.store.append(event_id, payload))


@pytest.fixture(params=["memory", "file"])
def harness(request, tmp_path):
    h = Harness(request.param, tmp_path)
    yield h
    h.store.close()


@pytest.fixture(params=["memory", "file"])
def kind(request):
    return request.param


def test_provides_interface(harness):
    """Both stores provide IEventStore."""
    assert verifyObject(IEventStore, harness.store)


def test_append_fires_with_id_and_keeps_order(harness):
    """append's Deferred fires with the id, and pending_ids is append order."""
    for i in range(5):
        assert harness.append(f"e{i}") == f"e{i}"
    assert harness.store.pending_ids() == [f"e{i}" for i in range(5)]


def test_read_returns_payload(harness):
    """read returns the exact payload bytes of a pending event."""
    harness.append("a", b"\x00\xffbinary payload")
    assert harness.store.read("a") == b"\x00\xffbinary payload"


def test_read_unknown_raises(harness):
    """read of an id that is not pending raises EventNotFound."""
    with pytest.raises(EventNotFound):
        harness.store.read("nope")


def test_ack_true_once_then_false(harness):
    """ack returns True for a pending id, False afterwards and for unknown ids."""
    harness.append("a")
    harness.append("b")
    assert harness.store.ack("a") is True
    assert harness.store.ack("a") is False
    assert harness.store.ack("zzz") is False
    assert harness.store.pending_ids() == ["b"]
    with pytest.raises(EventNotFound):
        harness.store.read("a")


def test_duplicate_append_is_noop(harness):
    """Appending an id that is pending fires its Deferred and stores nothing new."""
    harness.append("a", b"first")
    assert harness.append("a", b"second") == "a"
    assert harness.store.pending_ids() == ["a"]
    assert harness.store.read("a") == b"first"
    assert harness.store.stats()["appended"] == 1


def test_reappend_after_ack_is_new(harness):
    """An id appended again after its ack is a new pending event at the end."""
    harness.append("a", b"1")
    harness.append("b")
    harness.store.ack("a")
    harness.append("a", b"2")
    assert harness.store.pending_ids() == ["b", "a"]
    assert harness.store.read("a") == b"2"


def test_set_aside_removes_and_counts(harness):
    """set_aside removes the event from pending and counts it; unknown ids raise EventNotFound."""
    harness.append("a")
    harness.append("b")
    harness.store.set_aside("a", "undecodable")
    assert harness.store.pending_ids() == ["b"]
    assert harness.store.stats()["set_aside"] == 1
    with pytest.raises(EventNotFound):
        harness.store.set_aside("a", "again")


def test_stats_counters(harness):
    """stats reports pending count, bytes, oldest age and the counters."""
    harness.append("a", b"x" * 10)
    harness.clock.advance(5)
    harness.append("b", b"y" * 20)
    harness.store.ack("b")
    stats = harness.store.stats()
    assert STAT_KEYS <= set(stats)
    assert stats["pending"] == 1
    assert stats["pending_bytes"] == record_size("a", b"x" * 10)
    assert stats["oldest_age_s"] == pytest.approx(7.0)  # appended, +1 settle, +5, +1 settle
    assert stats["appended"] == 2
    assert stats["acked"] == 1


def test_empty_stats(harness):
    """An empty store reports zero pending and zero age."""
    stats = harness.store.stats()
    assert stats["pending"] == 0 and stats["pending_bytes"] == 0 and stats["oldest_age_s"] == 0.0


def test_drop_oldest_makes_room_and_reports(kind, tmp_path):
    """At the bound, drop_oldest drops the oldest events, counts them and calls on_problem with counts."""
    size = record_size("e0", b"p" * 50)
    h = Harness(kind, tmp_path, max_bytes=3 * size, full_policy="drop_oldest")
    for i in range(3):
        h.append(f"e{i}", b"p" * 50)
    assert h.problems == []
    h.append("e3", b"p" * 50)
    assert h.store.pending_ids() == ["e1", "e2", "e3"]
    assert h.store.stats()["dropped"] == 1
    assert len(h.problems) == 1
    assert "dropped 1 oldest" in h.problems[0][0]
    h.append("big", b"p" * (2 * 50 + record_size("e", b"")))
    assert h.store.pending_ids() == ["e3", "big"]
    assert h.store.stats()["pending_bytes"] <= 3 * size
    assert h.store.stats()["dropped"] == 3
    assert len(h.problems) == 2 and "dropped 2 oldest" in h.problems[1][0]
    h.store.close()


def test_reject_new_errbacks_and_reports(kind, tmp_path):
    """At the bound, reject_new errbacks the append with StoreFull, counts it and calls on_problem."""
    size = record_size("e0", b"p" * 50)
    h = Harness(kind, tmp_path, max_bytes=2 * size, full_policy="reject_new")
    h.append("e0", b"p" * 50)
    h.append("e1", b"p" * 50)
    with pytest.raises(StoreFull):
        h.append("e2", b"p" * 50)
    assert h.store.pending_ids() == ["e0", "e1"]
    assert h.store.stats()["rejected"] == 1
    assert len(h.problems) == 1 and "rejected" in h.problems[0][0]
    h.store.ack("e0")
    h.append("e2", b"p" * 50)
    assert h.store.pending_ids() == ["e1", "e2"]
    h.store.close()


def test_record_larger_than_bound_rejected(kind, tmp_path):
    """A record larger than max_bytes is rejected even under drop_oldest, and nothing is dropped."""
    h = Harness(kind, tmp_path, max_bytes=100)
    h.append("a", b"x")
    with pytest.raises(StoreFull):
        h.append("huge", b"x" * 200)
    assert h.store.pending_ids() == ["a"]
    assert h.store.stats()["rejected"] == 1 and h.store.stats()["dropped"] == 0
    h.store.close()


def test_closed_store_refuses(harness):
    """After close, append errbacks StoreClosed and read/ack/set_aside raise StoreClosed."""
    harness.append("a")
    harness.result(harness.store.close())
    with pytest.raises(StoreClosed):
        harness.append("b")
    for call in (lambda: harness.store.read("a"), lambda: harness.store.ack("a"),
                 lambda: harness.store.set_aside("a", "x")):
        with pytest.raises(StoreClosed):
            call()


def test_bad_full_policy_rejected(kind, tmp_path):
    """An unknown full policy is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="drop_oldest"):
        Harness(kind, tmp_path, full_policy="keep_all")


def test_overlong_id_is_a_store_error(kind, tmp_path):
    """An id longer than 65535 UTF-8 bytes errbacks with StoreError and drops nothing."""
    h = Harness(kind, tmp_path, max_bytes=100)
    h.append("a", b"x")
    with pytest.raises(StoreError, match="65535"):
        h.append("i" * 70_000, b"x")
    assert h.store.pending_ids() == ["a"]
    h.store.close()


def test_park_moves_a_pending_event_to_the_parked_area(harness):
    """park(id) takes a pending event out of pending_ids, lists it in parked() with its reason, counts it."""
    harness.append("a", b'{"TypeName": "x"}')
    harness.append("b")
    assert harness.store.park("a", "refused by the peer") is True
    assert harness.store.pending_ids() == ["b"]
    [entry] = harness.store.parked()
    assert (entry["id"], entry["reason"], entry["bytes"]) == ("a", "refused by the peer", len(b'{"TypeName": "x"}'))
    assert entry["parked_at"] == harness.clock.seconds()  # the store's wall clock (here the test's)
    assert harness.store.stats()["parked"] == 1
    assert harness.store.stats()["pending_bytes"] == record_size("b", b'{"TypeName": "t"}')
    with pytest.raises(EventNotFound):
        harness.store.park("a", "again")


def test_park_with_payload_keeps_an_event_that_was_never_pending(harness):
    """park(id, reason, payload) keeps a received event the application refused; a second park is a no-op."""
    assert harness.store.park("r", "handle_event failed", b'{"TypeName": "y"}') is True
    assert harness.store.park("r", "handle_event failed", b'{"TypeName": "y"}') is False
    assert harness.store.pending_ids() == []
    assert [e["id"] for e in harness.store.parked()] == ["r"]


def test_requeue_makes_parked_events_pending_again(harness):
    """requeue() appends parked events again (same id and bytes) and empties the parked area."""
    harness.append("a", b'{"TypeName": "x"}')
    harness.store.park("a", "why")
    harness.store.park("r", "why", b'{"TypeName": "y"}')
    assert sorted(harness.result(harness.store.requeue())) == ["a", "r"]
    assert sorted(harness.store.pending_ids()) == ["a", "r"]
    assert harness.store.read("a") == b'{"TypeName": "x"}'
    assert harness.store.read("r") == b'{"TypeName": "y"}'
    assert harness.store.parked() == []


def test_requeue_of_an_unknown_id_changes_nothing(harness):
    """requeue(["nope"]) errbacks with EventNotFound and leaves the parked area as it was."""
    harness.store.park("r", "why", b"{}")
    with pytest.raises(EventNotFound):
        harness.result(harness.store.requeue(["r", "nope"]))
    assert [e["id"] for e in harness.store.parked()] == ["r"]
    assert harness.store.pending_ids() == []


def test_parked_events_survive_reopening(tmp_path):
    """The file store's parked events are still listed, and re-queueable, after close and reopen."""
    h = Harness("file", tmp_path)
    h.append("a", b'{"TypeName": "x"}')
    h.store.park("a", "why")
    h.store.park("r", "why", b'{"TypeName": "y"}')
    h.result(h.store.close())
    h.store = h.make()
    assert h.store.pending_ids() == []
    assert sorted(e["id"] for e in h.store.parked()) == ["a", "r"]
    assert sorted(h.result(h.store.requeue(["a"]))) == ["a"]
    h.result(h.store.close())
    h.store = h.make()
    assert h.store.pending_ids() == ["a"] and [e["id"] for e in h.store.parked()] == ["r"]
    h.store.close()


def test_a_damaged_parked_file_is_reported_not_fatal(tmp_path):
    """A parked record that fails its checks is reported at open; the store opens and the rest is listed."""
    h = Harness("file", tmp_path)
    h.store.park("r1", "why", b'{"TypeName": "y"}')
    h.store.park("r2", "why", b'{"TypeName": "z"}')
    h.result(h.store.close())
    parked_dir = tmp_path / "store" / "parked"
    victim = sorted(parked_dir.glob("*.event"))[0]
    victim.write_bytes(victim.read_bytes()[:-3] + b"xyz")
    h.store = h.make()
    assert len(h.store.parked()) == 1
    assert any("parked event cannot be read" in s for s, _ in h.problems)
    h.store.close()


def test_ack_many_acks_each_and_says_which_were_pending(harness):
    """ack_many: like ack for each id (unknown and repeated ids give False), in the order given."""
    for n in range(5):
        harness.append(f"e{n}")
    assert harness.store.ack_many(["e1", "nope", "e3", "e1"]) == [True, False, True, False]
    assert harness.store.pending_ids() == ["e0", "e2", "e4"]
    assert harness.store.is_pending("e0") and not harness.store.is_pending("e1")
    assert harness.store.stats()["acked"] == 2


def test_file_ack_many_writes_once_per_segment_and_survives_a_crash(tmp_path):
    """A batch's acks spanning two segments are two ack-file writes; a copy of the directory (a crash) keeps them."""
    import shutil

    h = Harness("file", tmp_path, segment_bytes=600)
    for n in range(8):
        h.append(f"e{n}", b'{"TypeName": "t", "Pad": "' + b"x" * 100 + b'"}')
    assert h.store.stats()["segments"] >= 2
    writes: list[int] = []
    calls = h.store._segments._calls

    class Counting:
        def __getattr__(self, name: str):
            return getattr(calls, name)

        def write_all(self, fd: int, data: bytes) -> None:
            writes.append(fd)
            calls.write_all(fd, data)

    h.store._segments._calls = Counting()
    first_two_segments = ["e0", "e1", "e2", "e3", "e4"]
    h.store.ack_many(first_two_segments)
    assert 1 <= len(writes) <= 2  # at most one per segment (a segment with nothing left is deleted instead)
    shutil.copytree(tmp_path / "store", tmp_path / "crashed", ignore=shutil.ignore_patterns("*.lock", "LOCK"))
    h.store._segments._calls = calls
    h.store.close()
    reopened = FileEventStore.open(str(tmp_path / "crashed"), clock=Clock(), sync="never")
    try:
        assert reopened.pending_ids() == ["e5", "e6", "e7"]
    finally:
        reopened.close()
