"""FileEventStore recovery at open: every readable record kept, everything bad set aside and reported."""

from __future__ import annotations

import os

import pytest
from twisted.internet.task import Clock

from gwproactor.store import FileEventStore
from gwproactor.store._format import record_size


@pytest.fixture
def clock():
    c = Clock()
    c.advance(1_000_000)
    return c


class Opened:
    """Open a store, collecting on_problem reports."""

    def __init__(self, path, clock, **kw) -> None:
        self.problems: list[tuple[str, str]] = []
        kw.setdefault("sync", "never")
        self.store = FileEventStore.open(str(path), clock=clock,
                                         on_problem=lambda s, d: self.problems.append((s, d)), **kw)


def fill(path, clock, n=5, payload=b"x" * 40, **kw) -> None:
    s = FileEventStore.open(str(path), clock=clock, sync="never", **kw)
    for i in range(n):
        s.append(f"e{i}", payload)
    s.close()


def aside(path) -> list[str]:
    return sorted(os.listdir(path / "set-aside"))


SEG1 = "seg-0000000001.log"
SIZE = record_size("e0", b"x" * 40)


def test_truncated_tail(tmp_path, clock):
    """A torn last record is copied aside; the records before it are kept; the file is repaired."""
    fill(tmp_path, clock)
    path = tmp_path / SEG1
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == ["e0", "e1", "e2", "e3"]
    assert o.store.read("e3") == b"x" * 40
    assert o.store.stats()["corrupt_records"] == 1
    assert len(o.problems) == 1 and "1 corrupt records" in o.problems[0][0]
    assert f"{SEG1}.at-{4 * SIZE}.bad" in aside(tmp_path)
    assert (tmp_path / "set-aside" / f"{SEG1}.at-{4 * SIZE}.bad").read_bytes() == data[4 * SIZE:-7]
    o.store.close()
    again = Opened(tmp_path, clock)
    assert again.problems == [] and again.store.pending_ids() == ["e0", "e1", "e2", "e3"]
    again.store.close()


def test_flipped_payload_byte_loses_one_record(tmp_path, clock):
    """A flipped byte inside one record loses only that record."""
    fill(tmp_path, clock)
    path = tmp_path / SEG1
    data = bytearray(path.read_bytes())
    data[2 * SIZE + 30] ^= 0x40
    path.write_bytes(bytes(data))
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == ["e0", "e1", "e3", "e4"]
    assert [o.store.read(i) for i in o.store.pending_ids()] == [b"x" * 40] * 4
    assert o.store.stats()["corrupt_records"] == 1
    assert f"{SEG1}.at-{2 * SIZE}.bad" in aside(tmp_path)
    o.store.close()


def test_flipped_length_byte_resyncs(tmp_path, clock):
    """A corrupt length field does not lose the records after it: the scan finds the next valid frame."""
    fill(tmp_path, clock)
    path = tmp_path / SEG1
    data = bytearray(path.read_bytes())
    data[1 * SIZE + 6] ^= 0x7F  # body length of e1
    path.write_bytes(bytes(data))
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == ["e0", "e2", "e3", "e4"]
    assert o.store.stats()["corrupt_records"] == 1
    o.store.close()


def test_garbage_between_records(tmp_path, clock):
    """Garbage inserted between records is set aside and the records on both sides are kept."""
    fill(tmp_path, clock)
    path = tmp_path / SEG1
    data = path.read_bytes()
    path.write_bytes(data[:2 * SIZE] + os.urandom(100) + b"\xe5\x01" + data[2 * SIZE:])
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == ["e0", "e1", "e2", "e3", "e4"]
    assert o.store.stats()["corrupt_records"] == 1
    o.store.close()


def test_garbage_segment_file(tmp_path, clock):
    """A segment file full of garbage is set aside entirely and the store starts empty."""
    (tmp_path / SEG1).write_bytes(os.urandom(5000))
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == []
    assert o.store.stats()["corrupt_records"] == 1
    assert SEG1 not in os.listdir(tmp_path)
    assert f"{SEG1}.at-0.bad" in aside(tmp_path)
    assert o.store.append("new", b"y").called
    assert "seg-0000000002.log" in os.listdir(tmp_path)
    o.store.close()


def test_zero_length_and_unknown_files(tmp_path, clock):
    """Zero-length segments and unknown files are moved aside and reported; stale temp/orphan files removed."""
    fill(tmp_path, clock)
    (tmp_path / "seg-0000000007.log").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "seg-0000000001.log.tmp").write_bytes(b"partial rewrite")
    (tmp_path / "seg-0000000004.ack").write_bytes(b"orphan")
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == ["e0", "e1", "e2", "e3", "e4"]
    assert o.store.stats()["corrupt_files"] == 2
    assert aside(tmp_path) == ["notes.txt", "seg-0000000007.log"]
    assert not (tmp_path / "seg-0000000001.log.tmp").exists()
    assert not (tmp_path / "seg-0000000004.ack").exists()
    details = o.problems[0][1]
    assert "empty segment" in details and "unknown entry" in details
    o.store.append("new", b"y")
    assert "seg-0000000008.log" in os.listdir(tmp_path)
    o.store.close()


def test_unreadable_entries(tmp_path, clock):
    """A directory, a FIFO and a dangling symlink where segments should be are moved aside, never opened."""
    fill(tmp_path, clock)
    os.mkdir(tmp_path / "seg-0000000002.log")
    os.mkfifo(tmp_path / "seg-0000000003.log")
    os.symlink(tmp_path / "missing", tmp_path / "seg-0000000004.log")
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == ["e0", "e1", "e2", "e3", "e4"]
    assert o.store.stats()["corrupt_files"] == 3
    assert aside(tmp_path) == ["seg-0000000002.log", "seg-0000000003.log", "seg-0000000004.log"]
    assert o.problems[0][1].count("not a regular file") == 3
    o.store.append("new", b"y")
    assert "seg-0000000005.log" in os.listdir(tmp_path)
    o.store.close()


def test_corrupt_ack_file_brings_events_back(tmp_path, clock):
    """A corrupt ack record is set aside; its event is pending again (a duplicate, never a loss)."""
    s = FileEventStore.open(str(tmp_path), clock=clock, sync="never")
    for i in range(4):
        s.append(f"e{i}", b"x" * 40)
    s.ack("e0")
    s.ack("e1")
    s.close()
    path = tmp_path / "seg-0000000001.ack"
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF  # CRC of the second ack
    path.write_bytes(bytes(data))
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == ["e1", "e2", "e3"]
    assert o.store.stats()["corrupt_records"] == 1
    o.store.close()
    again = Opened(tmp_path, clock)
    assert again.problems == [] and again.store.pending_ids() == ["e1", "e2", "e3"]
    again.store.close()


def test_corruption_with_acks_keeps_only_pending(tmp_path, clock):
    """A segment with a bad stretch and acks is rewritten with its pending events only, acks dropped safely."""
    s = FileEventStore.open(str(tmp_path), clock=clock, sync="never")
    for i in range(5):
        s.append(f"e{i}", b"x" * 40)
    s.ack("e1")
    s.close()
    path = tmp_path / SEG1
    data = bytearray(path.read_bytes())
    data[3 * SIZE + 30] ^= 0x01
    path.write_bytes(bytes(data))
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == ["e0", "e2", "e4"]
    assert not (tmp_path / "seg-0000000001.ack").exists()
    o.store.ack("e2")
    o.store.close()
    again = Opened(tmp_path, clock)
    assert again.store.pending_ids() == ["e0", "e4"] and again.problems == []
    again.store.close()


def test_corruption_across_segments(tmp_path, clock):
    """Corruption in one segment does not touch the others."""
    fill(tmp_path, clock, n=9, segment_bytes=3 * SIZE)
    path = tmp_path / "seg-0000000002.log"
    path.write_bytes(path.read_bytes()[:10])
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == ["e0", "e1", "e2", "e6", "e7", "e8"]
    assert o.store.stats()["segments"] == 2
    o.store.close()


def test_misplaced_lock_and_set_aside_entries(tmp_path, clock):
    """A directory named LOCK and a file named set-aside do not stop the store from opening."""
    fill(tmp_path, clock)
    os.unlink(tmp_path / "LOCK")
    os.mkdir(tmp_path / "LOCK")
    os.rename(tmp_path / "set-aside", tmp_path / "old")
    (tmp_path / "set-aside").write_text("not a directory")
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == ["e0", "e1", "e2", "e3", "e4"]
    assert {"LOCK.misplaced", "set-aside.misplaced", "old"} <= set(aside(tmp_path))
    assert o.store.stats()["corrupt_files"] == 3
    o.store.close()


# --- acks name their record exactly; a damaged length is never trusted --------------------------


def two_segments(path, clock, acked=("e0", "e3")):
    """Two segments of three equal-sized records each, with ``acked`` acked; returns the pending ids."""
    s = FileEventStore.open(str(path), clock=clock, sync="never", segment_bytes=3 * SIZE)
    for i in range(6):
        s.append(f"e{i}", b"x" * 40)
    for event_id in acked:
        s.ack(event_id)
    s.close()
    return [f"e{i}" for i in range(6) if f"e{i}" not in acked]


def verify(path) -> tuple[int, str]:
    import contextlib
    import io

    from gwproactor.store import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main(["verify", str(path)])
    return status, out.getvalue()


def test_swapped_ack_files_ack_nothing(tmp_path, clock):
    """Ack files swapped between segments ack nothing there: acked events come back, no pending one is lost."""
    pending = two_segments(tmp_path, clock)
    a, b = tmp_path / "seg-0000000001.ack", tmp_path / "seg-0000000002.ack"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    status, report = verify(tmp_path)
    assert status == 1 and report.count("not a record of this segment") == 2, report
    o = Opened(tmp_path, clock)
    assert set(pending) <= set(o.store.pending_ids()) == {f"e{i}" for i in range(6)}
    assert o.store.stats()["corrupt_records"] == 2 and len(o.problems) == 1
    o.store.close()
    again = Opened(tmp_path, clock)
    assert again.problems == [] and again.store.pending_ids() == [f"e{i}" for i in range(6)]
    again.store.close()
    assert verify(tmp_path)[0] == 0


def test_swapped_segment_files_keep_every_pending_event(tmp_path, clock):
    """Segment files swapped under their ack files: acks whose id does not match the record ack nothing."""
    pending = two_segments(tmp_path, clock)
    a, b = tmp_path / "seg-0000000001.log", tmp_path / "seg-0000000002.log"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    assert verify(tmp_path)[0] == 1
    o = Opened(tmp_path, clock)
    assert set(pending) <= set(o.store.pending_ids())
    o.store.close()


def test_legacy_offset_only_acks_are_checked_by_id(tmp_path, clock):
    """An ack holding only an offset (the earlier format) acks its record only if the id matches too."""
    from gwproactor.store import _format

    fill(tmp_path, clock, n=3)
    legacy = lambda event_id, offset: _format.encode(_format.KIND_ACK, 1.0, event_id, offset.to_bytes(8, "big"))  # noqa: E731
    (tmp_path / "seg-0000000001.ack").write_bytes(legacy("e0", 0) + legacy("e9", SIZE))
    status, report = verify(tmp_path)
    assert status == 1 and "names event 'e9' at offset" in report, report
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == ["e1", "e2"]
    o.store.close()
    assert verify(tmp_path)[0] == 0


def test_copied_ack_file_does_not_ack_an_id_appended_again(tmp_path, clock):
    """An id acked at offset 0 of one segment and appended again at offset 0 of the next stays pending when
    the first ack file is copied over the second (the ack names its segment, not only offset and id)."""
    s = FileEventStore.open(str(tmp_path), clock=clock, sync="never")
    s.append("x", b"x" * 40)
    s.append("keep", b"k")  # keeps segment 1 (and its ack file) on disk
    s.ack("x")
    s.close()
    s = FileEventStore.open(str(tmp_path), clock=clock, sync="never")
    s.append("x", b"x" * 40)  # a re-queue: offset 0 of segment 2
    s.append("y", b"y")
    s.ack("y")
    s.close()
    (tmp_path / "seg-0000000002.ack").write_bytes((tmp_path / "seg-0000000001.ack").read_bytes())
    assert verify(tmp_path)[0] == 1
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == ["keep", "x", "y"] and o.store.read("x") == b"x" * 40
    o.store.close()


@pytest.mark.parametrize("bit", [7, 8, 9, 10, 11])
def test_length_bit_landing_on_a_later_record_loses_only_that_record(tmp_path, clock, bit):
    """A flipped length bit that points exactly at a later record's start costs the damaged record only."""
    s = FileEventStore.open(str(tmp_path), clock=clock, sync="never")
    for i in range(40):  # 128-byte records: bits 7-11 move the end by whole records
        s.append(f"e{i}", b"x" * (128 - record_size(f"e{i}", b"")))
    s.close()
    path = tmp_path / SEG1
    data = bytearray(path.read_bytes())
    data[1 * 128 + 7 - bit // 8] ^= 1 << (bit % 8)  # e1's body length grows by 2**bit bytes
    path.write_bytes(bytes(data))
    o = Opened(tmp_path, clock)
    assert o.store.pending_ids() == [f"e{i}" for i in range(40) if i != 1]
    assert o.store.stats()["corrupt_records"] == 1
    o.store.close()
