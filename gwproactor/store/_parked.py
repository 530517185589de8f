"""The parked area of a file store: events the peer could not accept, kept one file each until re-queued.

``parked/<key>.event`` holds one framed event record (:mod:`gwproactor.store._format`, so it is
CRC-checked like the log); ``parked/<key>.json`` says why and when it was parked.  ``<key>`` is
derived from the event id (a hash), so any id can be parked.  Parking is rare (one event the peer's
application refuses), so each park is written and fsynced at once, on the calling thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from gwproactor.errors import CorruptRecord, EventNotFound
from gwproactor.store import _format

__all__ = ["ParkedArea"]

_EVENT = ".event"
_INFO = ".json"


def _key(event_id: str) -> str:
    return hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:40]


class ParkedArea:
    """The ``parked/`` directory of a store (see the module docstring).

    :param directory: the ``parked`` directory (created if missing).
    :param fsync: the fsync function.
    :param wall: the wall clock of ``parked_at`` (a timestamp, shown to people as a date).
    """

    def __init__(self, directory: str, fsync: Any = os.fsync, wall: Any = time.time) -> None:
        self._directory = directory
        self._fsync = fsync
        self._wall = wall
        self._ids: dict[str, str] = {}  # event id -> key
        self.problems: list[str] = []
        """What :meth:`load` could not read (left in place)."""

    def load(self) -> None:
        """Find the parked events (reads each record once: parked events are few)."""
        os.makedirs(self._directory, exist_ok=True)
        self._ids.clear()
        for name in sorted(os.listdir(self._directory)):
            if not name.endswith(_EVENT):
                continue
            path = os.path.join(self._directory, name)
            try:
                rec = self._record(path)
            except (OSError, CorruptRecord) as e:
                self.problems.append(f"{path}: {e}")
                continue
            self._ids[rec[0]] = name[: -len(_EVENT)]

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> list[str]:
        """The parked ids, in the order :meth:`entries` lists them."""
        return [entry["id"] for entry in self.entries()]

    def entries(self) -> list[dict[str, Any]]:
        """``{"id", "reason", "parked_at", "appended_at", "bytes"}`` per parked event, oldest park first."""
        out = []
        for event_id, key in self._ids.items():
            info: dict[str, Any] = {}
            try:
                with open(self._path(key, _INFO), encoding="utf-8") as f:
                    info = json.load(f)
            except (OSError, ValueError):
                pass
            out.append({
                "id": event_id,
                "reason": info.get("reason", "(reason file missing)"),
                "parked_at": info.get("parked_at"),
                "appended_at": info.get("appended_at"),
                "bytes": info.get("bytes"),
            })
        out.sort(key=lambda e: (e["parked_at"] is None, e["parked_at"] or 0.0))
        return out

    def park(self, event_id: str, payload: bytes, reason: str, appended_at: float | None = None) -> bool:
        """Keep ``payload`` as parked event ``event_id``; False if it was parked already.

        :raises OSError: if the files cannot be written (nothing is half-parked: the record is
            renamed into place last).
        """
        if event_id in self._ids:
            return False
        key = _key(event_id)
        now = self._wall()
        info = {"id": event_id, "reason": reason, "parked_at": now, "appended_at": appended_at, "bytes": len(payload)}
        self._write(self._path(key, _INFO), json.dumps(info).encode("utf-8") + b"\n")
        self._write(self._path(key, _EVENT), _format.encode(_format.KIND_EVENT, now, event_id, payload))
        self._sync_directory()
        self._ids[event_id] = key
        return True

    def read(self, event_id: str) -> bytes:
        """The payload of a parked event; raise EventNotFound / CorruptRecord."""
        key = self._ids.get(event_id)
        if key is None:
            raise EventNotFound(f"no parked event {event_id!r}")
        try:
            found, data = self._record(self._path(key, _EVENT))
        except OSError as e:
            raise CorruptRecord(f"parked event {event_id} cannot be read: {e}") from e
        if found != event_id:
            raise CorruptRecord(f"parked file for {event_id} holds {found!r}")
        return data

    def remove(self, event_id: str) -> None:
        """Forget a parked event (after it was re-queued durably); no-op if not parked."""
        key = self._ids.pop(event_id, None)
        if key is None:
            return
        for ext in (_EVENT, _INFO):  # the record first: a lone .json is ignored
            try:
                os.unlink(self._path(key, ext))
            except FileNotFoundError:
                pass
        self._sync_directory()

    # -- internals -----------------------------------------------------------

    def _path(self, key: str, ext: str) -> str:
        return os.path.join(self._directory, key + ext)

    @staticmethod
    def _record(path: str) -> tuple[str, bytes]:
        with open(path, "rb") as f:
            raw = f.read()
        rec = _format.parse_at(raw, memoryview(raw), 0)
        if rec is None or rec.kind != _format.KIND_EVENT or rec.size != len(raw):
            raise CorruptRecord(f"{path} is not one valid event record")
        return rec.event_id, _format.data_of(raw, rec)

    def _write(self, path: str, data: bytes) -> None:
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            self._fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def _sync_directory(self) -> None:
        fd = os.open(self._directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)
