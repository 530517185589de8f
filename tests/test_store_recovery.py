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
