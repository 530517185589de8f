"""An event store and a received-id window kept in RAM, with the same behaviour as the file ones (for tests)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from gwproactor.errors import EventNotFound, StoreClosed, StoreError, StoreFull
from gwproactor.interfaces import IEventStore, IReceivedIds
from gwproactor.store import _format
from gwproactor.store._common import (
    DEFAULT_MAX_BYTES,
    DEFAULT_WINDOW,
    FULL_POLICIES,
    ProblemCallback,
    SizeBound,
    check_choice,
)


def _default_clock() -> Any:
    from twisted.internet import reactor

    return reactor


@implementer(IEventStore)
@attrs.define(eq=False)
class MemoryEventStore:
    """:class:`~gwproactor.interfaces.IEventStore` in RAM; appends are "durable" at once.

    Sizes are counted exactly as the file store counts them (framed record size), so the size bound
    and both full policies behave the same.

    :param clock: accepted like the file store's (default: the global reactor); the memory store has no timers.
    :param wall: the wall clock of the append times and ``oldest_age_s`` (default :func:`time.time`), as in
        the file store.
    :param max_bytes: bound on pending bytes, or None for no bound.
    :param full_policy: ``drop_oldest`` or ``reject_new``.
    :param on_problem: ``on_problem(summary, details)`` is called each time a full policy applies.
    """

    _clock: object = attrs.field(factory=_default_clock, alias="clock")
    _wall: Callable[[], float] = attrs.field(default=time.time, alias="wall")
    _max_bytes: int | None = attrs.field(default=DEFAULT_MAX_BYTES, alias="max_bytes")
    _full_policy: str = attrs.field(default="drop_oldest", alias="full_policy")
    _on_problem: ProblemCallback | None = attrs.field(default=None, alias="on_problem")
    set_aside_records: list[tuple[str, bytes, str]] = attrs.field(init=False, factory=list)
    """``(event_id, payload, reason)`` of every event set aside."""
    _events: OrderedDict = attrs.field(init=False, factory=OrderedDict)
    _parked: dict = attrs.field(init=False, factory=dict)  # id -> (payload, info)
    _pending_bytes: int = attrs.field(init=False, default=0)
    _appended: int = attrs.field(init=False, default=0)
    _acked: int = attrs.field(init=False, default=0)
    _bound: SizeBound = attrs.field(init=False)
    _closed: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        check_choice("full_policy", self._full_policy, FULL_POLICIES)
        self._bound = SizeBound(self._max_bytes, self._full_policy, self._on_problem)

    def append(self, event_id: str, payload: bytes) -> Deferred:
        """Store ``payload`` under ``event_id``; the Deferred fires at once (see :class:`IEventStore`)."""
        if self._closed:
            return fail(StoreClosed("append on a closed event store"))
        if event_id in self._events:
            return succeed(event_id)
        if len(event_id.encode("utf-8")) > _format.MAX_ID_BYTES:
            return fail(StoreError(f"event {event_id[:80]!r} cannot be stored: its id is longer than "
                                   f"{_format.MAX_ID_BYTES} UTF-8 bytes"))
        size = _format.record_size(event_id, payload)
        if not self._bound.make_room(event_id, size, self._pending_bytes, self._drop_oldest):
            return fail(StoreFull(f"event store full ({self._pending_bytes} of {self._max_bytes} bytes pending); "
                                  f"event {event_id} rejected"))
        self._events[event_id] = (bytes(payload), size, self._wall())
        self._pending_bytes += size
        self._appended += 1
        return succeed(event_id)

    def pending_ids(self) -> list[str]:
        """Return the pending ids, oldest first."""
        return list(self._events)

    def is_pending(self, event_id: str) -> bool:
        """True if ``event_id`` is pending."""
        return event_id in self._events

    def read(self, event_id: str) -> bytes:
        """Return the payload of a pending event; raise EventNotFound."""
        self._check_open()
        try:
            return self._events[event_id][0]
        except KeyError:
            raise EventNotFound(f"no pending event {event_id!r}") from None

    def ack(self, event_id: str) -> bool:
        """Forget ``event_id``; True if it was pending."""
        self._check_open()
        entry = self._events.pop(event_id, None)
        if entry is None:
            return False
        self._pending_bytes -= entry[1]
        self._acked += 1
        return True

    def ack_many(self, event_ids: list[str]) -> list[bool]:
        """:meth:`ack` for several events; True for each one that was pending."""
        return [self.ack(event_id) for event_id in event_ids]

    def set_aside(self, event_id: str, reason: str) -> None:
        """Move a pending event to :attr:`set_aside_records`; raise EventNotFound."""
        self._check_open()
        entry = self._events.pop(event_id, None)
        if entry is None:
            raise EventNotFound(f"no pending event {event_id!r}")
        self._pending_bytes -= entry[1]
        self.set_aside_records.append((event_id, entry[0], reason))

    def park(self, event_id: str, reason: str, payload: bytes | None = None) -> bool:
        """Move a pending event (or keep ``payload``) in the parked area (see :class:`IEventStore`)."""
        self._check_open()
        appended = None
        if payload is None:
            if event_id not in self._events:
                raise EventNotFound(f"no pending event {event_id!r}")
            data, _, appended = self._events[event_id]
        else:
            data = bytes(payload)
        if event_id not in self._parked:
            self._parked[event_id] = (data, {"id": event_id, "reason": reason, "parked_at": self._wall(),
                                             "appended_at": appended, "bytes": len(data)})
            parked = True
        else:
            parked = False
        if payload is None:
            self._pending_bytes -= self._events.pop(event_id)[1]
        return parked

    def parked(self) -> list[dict]:
        """The parked events, oldest park first."""
        return [dict(info) for _, info in self._parked.values()]

    def requeue(self, event_ids: list[str] | None = None) -> Deferred:
        """Make parked events pending again (see :class:`IEventStore`)."""
        ids = list(self._parked) if event_ids is None else list(event_ids)
        unknown = [i for i in ids if i not in self._parked]
        if unknown:
            return fail(EventNotFound(f"not parked: {', '.join(unknown[:5])}"))
        done = []
        for event_id in ids:
            ok: list = []
            self.append(event_id, self._parked[event_id][0]).addCallbacks(ok.append, lambda f: None)
            if ok:  # appends here fire at once; a refused one (store full) stays parked
                del self._parked[event_id]
                done.append(event_id)
        return succeed(done)

    def stats(self) -> dict:
        """Return the same counters as the file store (disk counters are 0)."""
        oldest = next(iter(self._events.values()), None)
        return {
            "pending": len(self._events),
            "pending_bytes": self._pending_bytes,
            "oldest_age_s": max(0.0, self._wall() - oldest[2]) if oldest else 0.0,
            "appended": self._appended,
            "acked": self._acked,
            "dropped": self._bound.dropped,
            "rejected": self._bound.rejected,
            "set_aside": len(self.set_aside_records),
            "parked": len(self._parked),
            "corrupt_records": 0,
            "corrupt_files": 0,
            "write_errors": 0,
            "segments": 0,
            "disk_bytes": 0,
            "fsyncs": 0,
        }

    def close(self) -> Deferred:
        """Refuse further use; returns a fired Deferred."""
        self._closed = True
        return succeed(None)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the event store is closed")

    def _drop_oldest(self) -> int:
        _, (_, size, _) = self._events.popitem(last=False)
        self._pending_bytes -= size
        return size


@implementer(IReceivedIds)
@attrs.define(eq=False)
class MemoryReceivedIds:
    """:class:`~gwproactor.interfaces.IReceivedIds` in RAM: the last ``window`` accepted ids."""

    window: int = DEFAULT_WINDOW
    _ids: OrderedDict = attrs.field(init=False, factory=OrderedDict)

    def seen(self, event_id: str) -> bool:
        """True if ``event_id`` is in the window."""
        return event_id in self._ids

    def remember(self, event_id: str) -> None:
        """Add ``event_id``; the oldest id leaves when the window is full."""
        if event_id in self._ids:
            return
        self._ids[event_id] = None
        if len(self._ids) > self.window:
            self._ids.popitem(last=False)

    def __len__(self) -> int:
        return len(self._ids)
