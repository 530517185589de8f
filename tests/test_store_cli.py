"""The `gwproactor store inspect | verify | export` commands."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys

import pytest
from twisted.internet.task import Clock

from gwproactor.store import FileEventStore
from gwproactor.store.cli import add_store_subcommands, main


def snapshot(path) -> dict:
    """Name → sha256 of every file under ``path`` (to prove a command changed nothing)."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            out[rel] = hashlib.sha256(open(full, "rb").read()).hexdigest() if os.path.isfile(full) else "dir"
    return out


@pytest.fixture
def store_dir(tmp_path):
    clock = Clock()
    clock.advance(1_700_000_000)
    s = FileEventStore.open(str(tmp_path), clock=clock, wall=clock.seconds, sync="never")
    for i in range(3):
        s.append(f"p{i}", json.dumps({"TypeName": "gridworks.event.problem", "N": i}).encode())
        clock.advance(1)
    s.append("c0", json.dumps({"TypeName": "gridworks.event.comm.peer.active"}).encode())
    s.append("g0", json.dumps({"TypeName": "gw", "Payload": {"TypeName": "gridworks.event.startup"}}).encode())
    s.append("bad", b"\xff not json")
    s.append("acked", json.dumps({"TypeName": "x"}).encode())
    s.ack("acked")
    s.close()
    return tmp_path


def test_inspect_json(store_dir, capsys):
    """inspect reports pending count, oldest/newest and per-TypeName counts (non-JSON as <undecodable>)."""
    assert main(["inspect", str(store_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pending"] == 6
    assert report["types"] == {"gridworks.event.problem": 3, "gridworks.event.comm.peer.active": 1,
                               "gridworks.event.startup": 1, "<undecodable>": 1}
    assert report["oldest_appended"].startswith("2023-11-14T22:13:20")
    assert report["newest_appended"].startswith("2023-11-14T22:13:23")
    assert report["problems"] == []


def test_inspect_text(store_dir, capsys):
    """inspect prints a readable summary."""
    assert main(["inspect", str(store_dir)]) == 0
    out = capsys.readouterr().out
    assert "pending events:   6" in out and "gridworks.event.problem" in out


def test_verify_clean_store(store_dir, capsys):
    """verify exits 0 on a clean store."""
    assert main(["verify", str(store_dir)]) == 0
    assert "0 problems" in capsys.readouterr().out


def test_verify_corrupt_store_fails_without_modifying(store_dir, capsys):
    """verify exits 1 on a flipped byte and an unreadable entry, and leaves every file as it was."""
    path = store_dir / "seg-0000000001.log"
    data = bytearray(path.read_bytes())
    data[40] ^= 0x10
    path.write_bytes(bytes(data))
    os.mkdir(store_dir / "seg-0000000009.log")
    before = snapshot(store_dir)
    assert main(["verify", str(store_dir)]) == 1
    out = capsys.readouterr().out
    assert "CORRUPT seg-0000000001.log: bytes 0.." in out
    assert "CORRUPT seg-0000000009.log: not a regular file" in out
    assert snapshot(store_dir) == before


def test_export_json_lines(store_dir, capsys):
    """export writes one JSON line per pending event, oldest first, with id, decoded payload and time."""
    assert main(["export", str(store_dir)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [x["id"] for x in lines] == ["p0", "p1", "p2", "c0", "g0", "bad"]
    assert lines[1]["payload"] == {"TypeName": "gridworks.event.problem", "N": 1}
    assert lines[1]["appended"] == 1_700_000_001
    assert lines[5]["payload"] is None and "payload_base64" in lines[5]


def test_progress_on_large_store(tmp_path, capsys):
    """With --progress, a store of more than 10,000 records reports progress on stderr."""
    s = FileEventStore.open(str(tmp_path), clock=Clock(), sync="never")
    for i in range(10_001):
        s.append(f"e{i}", b'{"TypeName": "t"}')
    s.close()
    assert main(["verify", str(tmp_path), "--progress"]) == 0
    captured = capsys.readouterr()
    assert "10001 records read" in captured.err
    assert "10001 records checked" in captured.out


def test_missing_directory(tmp_path, capsys):
    """A missing directory is exit status 2 with a message."""
    assert main(["inspect", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_add_store_subcommands(store_dir, capsys):
    """add_store_subcommands plugs `store ...` into a parent argparse parser."""
    parser = argparse.ArgumentParser(prog="gwproactor")
    add_store_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["store", "verify", str(store_dir)])
    assert args.func(args) == 0


def test_standalone_module(store_dir):
    """`python -m gwproactor.store.cli verify DIR` runs standalone and sets the exit status."""
    proc = subprocess.run([sys.executable, "-m", "gwproactor.store.cli", "verify", str(store_dir)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "0 problems" in proc.stdout


def _parked_store(tmp_path):
    directory = tmp_path / "parked-store"
    store = FileEventStore.open(str(directory), clock=Clock(), sync="never")
    store.append("e1", json.dumps({"TypeName": "gridworks.event.problem"}).encode())
    store.append("e2", b"{}")
    store.park("e1", "refused by the peer")
    store.park("r1", "handle_event failed", json.dumps({"TypeName": "gridworks.event.x"}).encode())
    store.close()
    return directory


def test_parked_lists_without_modifying(tmp_path, capsys):
    """`store parked --json` lists every parked event with its reason and type, and changes nothing."""
    directory = _parked_store(tmp_path)
    before = snapshot(directory)
    assert main(["parked", str(directory), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted((e["id"], e["type_name"]) for e in report["parked"]) == [
        ("e1", "gridworks.event.problem"), ("r1", "gridworks.event.x")]
    assert snapshot(directory) == before


def test_requeue_makes_parked_events_pending(tmp_path, capsys):
    """`store requeue --id` re-queues one parked event; `--all` the rest; the store then holds them pending."""
    directory = _parked_store(tmp_path)
    assert main(["requeue", str(directory), "--id", "r1"]) == 0
    assert "1 events re-queued" in capsys.readouterr().out
    assert main(["requeue", str(directory), "--all"]) == 0
    store = FileEventStore.open(str(directory), clock=Clock(), sync="never")
    try:
        assert sorted(store.pending_ids()) == ["e1", "e2", "r1"] and store.parked() == []
    finally:
        store.close()


def test_requeue_refuses_a_store_in_use_and_unknown_ids(tmp_path, capsys):
    """`store requeue` exits 2 with a clear line when the store is locked or an id is not parked."""
    directory = _parked_store(tmp_path)
    assert main(["requeue", str(directory), "--id", "nope"]) == 2
    assert "not parked: nope" in capsys.readouterr().err
    store = FileEventStore.open(str(directory), clock=Clock(), sync="never")
    try:
        assert main(["requeue", str(directory), "--all"]) == 2
        assert "stop the process" in capsys.readouterr().err
    finally:
        store.close()
