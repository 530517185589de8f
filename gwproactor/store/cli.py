"""``gwproactor store inspect | verify | export | parked | requeue DIR``: tools for an event store directory.

``inspect``, ``verify``, ``export`` and ``parked`` never modify the store (no lock is taken, nothing is
moved aside), so they may run next to a live process; what they see is then a snapshot that may be
slightly behind.  ``requeue`` makes parked events pending again: it takes the store's lock, so the
process that owns the store must be stopped (the running process can do the same through
``Proactor.requeue_parked``).
Standalone: ``python -m gwproactor.store.cli inspect DIR``.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import functools
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from gwproactor.store import _format
from gwproactor.store._scan import (
    PARKED_DIR,
    RECEIVED_NAME,
    SET_ASIDE_DIR,
    SegmentScan,
    list_directory,
    read_regular,
    scan_received,
    scan_segment,
)

PROGRESS_EVERY = 10_000
UNDECODABLE = "<undecodable>"


def add_store_subcommands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``store`` with its ``inspect`` / ``verify`` / ``export`` subcommands to an argparse ``subparsers``.

    Each leaf parser sets ``func``; run it as ``args.func(args)`` (returns the exit code).
    """
    store = subparsers.add_parser("store", help="inspect, verify or export an event store directory",
                                  description=__doc__.splitlines()[0])
    _add_commands(store.add_subparsers(dest="store_command", required=True, metavar="COMMAND"))
    return store


def _add_commands(sub: Any) -> None:
    for name, func, text in (
        ("inspect", cmd_inspect, "counts, bytes, oldest/newest pending event, pending events per TypeName"),
        ("verify", cmd_verify, "check every record; exit status 1 if anything is corrupt"),
        ("export", cmd_export, "pending events as JSON lines on stdout (id, payload, appended time)"),
        ("parked", cmd_parked, "parked events (the peer could not accept them): id, reason, times"),
        ("requeue", cmd_requeue, "make parked events pending again (the owning process must be stopped)"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("directory", help="the event store directory")
        p.add_argument("--progress", action="store_true",
                       help=f"report progress on stderr every {PROGRESS_EVERY} records (default: when stderr is a TTY)")
        if name in ("inspect", "parked"):
            p.add_argument("--json", action="store_true", help="print the report as JSON")
        if name == "requeue":
            which = p.add_mutually_exclusive_group(required=True)
            which.add_argument("--id", action="append", dest="ids", metavar="EVENT_ID",
                               help="a parked event id (repeatable)")
            which.add_argument("--all", action="store_true", help="every parked event")
        p.set_defaults(func=func)


def main(argv: list[str] | None = None) -> int:
    """Run one store command; returns the exit status (0 ok, 1 corruption found by verify, 2 usage/IO error)."""
    parser = argparse.ArgumentParser(prog="gwproactor store", description=__doc__.splitlines()[0])
    _add_commands(parser.add_subparsers(dest="store_command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.func(args)


# --- survey --------------------------------------------------------------------


class _Progress:
    def __init__(self, args: argparse.Namespace) -> None:
        self.enabled = bool(getattr(args, "progress", False)) or sys.stderr.isatty()
        self.count = 0
        self.next_at = PROGRESS_EVERY

    def add(self, n: int) -> None:
        self.count += n
        if self.enabled and self.count >= self.next_at:
            print(f"... {self.count} records read", file=sys.stderr, flush=True)
            self.next_at = (self.count // PROGRESS_EVERY + 1) * PROGRESS_EVERY


def _segments(directory: str, progress: _Progress, problems: list[str], keep: bool = False
              ) -> Iterator[SegmentScan]:
    """Yield the scan of every readable segment in order, noting every problem."""
    listing = list_directory(directory)
    problems.extend(f"{name}: {reason}" for name, reason in listing.bad)
    for number in sorted(listing.logs):
        name = listing.logs[number]
        try:
            scan = scan_segment(directory, number, name, listing.acks.get(number), keep=keep)
        except OSError as e:
            problems.append(f"{name}: unreadable ({e})")
            continue
        problems.extend(scan.problems(name, listing.acks.get(number)))
        progress.add(len(scan.events) + scan.ack_records)
        yield scan


def _pending(directory: str, progress: _Progress, problems: list[str]) -> Iterator[tuple[str, float, bytes]]:
    """Yield ``(event_id, appended, payload)`` of every pending event, oldest first, as the store would see them."""
    seen: set[str] = set()
    for scan in _segments(directory, progress, problems, keep=True):
        buf = scan.buf
        assert buf is not None  # scanned with keep=True
        view = memoryview(buf)
        for offset, _size, t, event_id in scan.pending():
            if event_id in seen:
                continue
            seen.add(event_id)
            rec = _format.parse_at(buf, view, offset)
            assert rec is not None  # the scan found a valid record there
            yield event_id, t, _format.data_of(buf, rec)


def _type_name(payload: bytes) -> str:
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return UNDECODABLE
    if not isinstance(obj, dict):
        return UNDECODABLE
    inner = obj.get("Payload")
    if obj.get("TypeName") == "gw" and isinstance(inner, dict) and isinstance(inner.get("TypeName"), str):
        return inner["TypeName"]
    name = obj.get("TypeName")
    return name if isinstance(name, str) else UNDECODABLE


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="milliseconds")


def _check_directory(directory: str) -> str | None:
    if not os.path.isdir(directory):
        return f"gwproactor store: {directory} is not a directory"
    return None


# --- commands ------------------------------------------------------------------


def _store_command(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Exit with status 2 and a message when ``args.directory`` is not a store directory, else run ``command``."""

    @functools.wraps(command)
    def checked(args: argparse.Namespace) -> int:
        error = _check_directory(args.directory)
        if error:
            print(error, file=sys.stderr)
            return 2
        return command(args)

    return checked


@_store_command
def cmd_inspect(args: argparse.Namespace) -> int:
    """Print counts, bytes, oldest/newest pending and per-type counts of the store in ``args.directory``."""
    progress = _Progress(args)
    problems: list[str] = []
    types: Counter = Counter()
    pending = pending_bytes = 0
    oldest = newest = None
    for _event_id, t, payload in _pending(args.directory, progress, problems):
        pending += 1
        pending_bytes += len(payload)
        oldest = t if oldest is None else min(oldest, t)
        newest = t if newest is None else max(newest, t)
        types[_type_name(payload)] += 1
    listing = list_directory(args.directory)
    disk = 0
    for name in list(listing.logs.values()) + list(listing.acks.values()):
        disk += os.lstat(os.path.join(args.directory, name)).st_size
    received = 0
    if listing.received:
        try:
            ids, _ = scan_received(read_regular(os.path.join(args.directory, RECEIVED_NAME)))
            received = len(set(ids))
        except OSError as e:
            problems.append(f"{RECEIVED_NAME}: unreadable ({e})")
    aside_dir = os.path.join(args.directory, SET_ASIDE_DIR)
    aside = sorted(os.listdir(aside_dir)) if os.path.isdir(aside_dir) else []
    parked_dir = os.path.join(args.directory, PARKED_DIR)
    parked = [n for n in os.listdir(parked_dir) if n.endswith(".event")] if os.path.isdir(parked_dir) else []
    report = {
        "directory": args.directory,
        "segments": len(listing.logs),
        "disk_bytes": disk,
        "pending": pending,
        "pending_payload_bytes": pending_bytes,
        "oldest_appended": _iso(oldest),
        "newest_appended": _iso(newest),
        "types": dict(types.most_common()),
        "received_ids": received,
        "set_aside_entries": len(aside),
        "parked": len(parked),
        "problems": problems,
    }
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
        return 0
    print(f"directory:        {args.directory}")
    print(f"segments:         {report['segments']} ({disk} bytes on disk)")
    print(f"pending events:   {pending} ({pending_bytes} payload bytes)")
    print(f"oldest appended:  {report['oldest_appended']}")
    print(f"newest appended:  {report['newest_appended']}")
    print(f"received ids:     {received}")
    print(f"set-aside:        {len(aside)} entries")
    print(f"parked:           {len(parked)} events (see 'parked')")
    print("pending by TypeName:")
    for name, count in types.most_common():
        print(f"  {count:>10}  {name}")
    if problems:
        print(f"problems ({len(problems)}; run 'verify'):")
        for line in problems:
            print(f"  {line}")
    return 0


@_store_command
def cmd_verify(args: argparse.Namespace) -> int:
    """Check every record of the store in ``args.directory``; exit status 1 if anything is corrupt."""
    progress = _Progress(args)
    problems: list[str] = []
    records = 0
    for scan in _segments(args.directory, progress, problems):
        records += len(scan.events) + scan.ack_records
    received_path = os.path.join(args.directory, RECEIVED_NAME)
    if os.path.isfile(received_path) and not os.path.islink(received_path):  # else a listing problem already
        try:
            found, bad = scan_received(read_regular(received_path))
            records += len(found)
            problems.extend(f"{RECEIVED_NAME}: bytes {s}..{e} failed their checks" for s, e in bad)
        except OSError as e:
            problems.append(f"{RECEIVED_NAME}: unreadable ({e})")
    parked_dir = os.path.join(args.directory, PARKED_DIR)
    if os.path.isdir(parked_dir):
        from gwproactor.store._parked import ParkedArea

        area = ParkedArea(parked_dir)
        area.load()
        records += len(area)
        problems.extend(area.problems)
    for line in problems:
        print(f"CORRUPT {line}")
    print(f"{records} records checked, {len(problems)} problems")
    return 1 if problems else 0


@_store_command
def cmd_export(args: argparse.Namespace) -> int:
    """Write the pending events of ``args.directory`` to stdout as JSON lines, oldest first."""
    progress = _Progress(args)
    problems: list[str] = []
    out = sys.stdout
    for event_id, t, payload in _pending(args.directory, progress, problems):
        line = {"id": event_id, "appended": t, "appended_iso": _iso(t)}
        try:
            line["payload"] = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            line["payload"] = None
            line["payload_base64"] = base64.b64encode(payload).decode("ascii")
        out.write(json.dumps(line) + "\n")
    for p in problems:
        print(f"gwproactor store export: skipped {p}", file=sys.stderr)
    return 0


@_store_command
def cmd_parked(args: argparse.Namespace) -> int:
    """List the parked events of ``args.directory`` (read-only)."""
    from gwproactor.store._parked import ParkedArea

    area = ParkedArea(os.path.join(args.directory, PARKED_DIR))
    if os.path.isdir(os.path.join(args.directory, PARKED_DIR)):
        area.load()
    entries = area.entries()
    for entry in entries:
        entry["parked_iso"] = _iso(entry["parked_at"])
        try:
            entry["type_name"] = _type_name(area.read(entry["id"]))
        except Exception:
            entry["type_name"] = UNDECODABLE
    if getattr(args, "json", False):
        print(json.dumps({"parked": entries, "problems": area.problems}, indent=2))
        return 0
    print(f"{len(entries)} parked events in {args.directory}")
    for entry in entries:
        print(f"  {entry['id']}  {entry['parked_iso']}  {entry['type_name']}  {entry['reason']}")
    for line in area.problems:
        print(f"  unreadable: {line}")
    return 0


class _WallClock:
    """The store's clock for a one-off command: wall time, no timers (sync ``always`` needs none)."""

    @staticmethod
    def seconds() -> float:
        import time

        return time.time()

    def callLater(self, delay: float, f: Callable, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - unused
        raise RuntimeError("no timers in the store CLI")


@_store_command
def cmd_requeue(args: argparse.Namespace) -> int:
    """Make parked events of ``args.directory`` pending again; status 2 if the store is in use."""
    from gwproactor.errors import EventNotFound
    from gwproactor.store import FileEventStore
    from gwproactor.store._common import StoreLocked

    try:
        store = FileEventStore.open(args.directory, clock=_WallClock(), sync="always")
    except StoreLocked as e:
        print(f"gwproactor store requeue: {e}; stop the process that uses it first", file=sys.stderr)
        return 2
    results: list = []
    try:
        store.requeue(None if args.all else args.ids).addBoth(results.append)
    finally:
        store.close()
    result = results[0] if results else None
    if not isinstance(result, list):
        if result is not None and result.check(EventNotFound):
            print(f"gwproactor store requeue: {result.getErrorMessage()}; nothing re-queued", file=sys.stderr)
            return 2
        print(f"gwproactor store requeue failed: {result}", file=sys.stderr)
        return 1
    print(f"{len(result)} events re-queued")
    return 0


if __name__ == "__main__":
    sys.exit(main())
