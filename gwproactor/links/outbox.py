"""The outbox of an upstream link: sends stored events oldest first, at most ``window`` unacked.

There is one code path for live events and for the backlog ("reupload"): the
outbox only ever sends what the event store holds.  When the link becomes
active it loads the store's pending ids; new durable events are added as they
arrive; each ack removes the event from the store and lets the next one go.
When the link leaves active the window is forgotten: everything unacked is
still in the store and goes again on the next activation.

An event is published again only with a cause between the two sends: its ack
timed out, its publish failed, or the link went down while it was in flight
(``resent``).  Anything else would be a bug, counted as ``resent_without_cause``.

An ack timeout that leaves the link active (the peer acks later events, see
:class:`~gwproactor.links.machine.AckEvidence`) means the peer did not accept this
one event.  It is sent again, alone, up to ``park_after`` times in all; then it is
*parked*: moved out of the pending events into the store's parked area (listed by
``gwproactor store parked``, re-queued by ``gwproactor store requeue``), reported
as a problem event, and the events behind it keep flowing.

Between gwproactor peers events go in batch frames, with "Nagle for batches": idle, an event goes
at once; while a frame is unacked, a partial batch waits for its ack (or to fill up).  When that ack
comes and the events waiting arrived *behind* an unacked frame (a stream, not a sporadic event), the
partial batch is *coalesced* first: it goes at the first reactor turn in which no event joined it, once
it is full, or ``coalesce_s`` after the ack, whichever comes first.  So how many events share a frame
depends less on how fast acks come back (each frame costs the child a publish and an ack).

A stored event whose type declares a time to live (``TTL_S``) and that has outlived it when its
turn comes is dropped instead of sent: counted as ``expired`` and reported in one problem event per
pump with counts by type (see :mod:`gwproactor.links.expiry`).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from typing import Any, Callable

import attrs
from twisted.logger import Logger
from twisted.python.failure import Failure

from gwproactor.errors import (
    AckTimeout,
    CorruptRecord,
    DecodeError,
    EventNotFound,
    LinkDown,
    NotConnectedError,
    PublishFailed,
    StoreReadError,
)

__all__ = ["FRESH_BYTES", "PRIORITIES", "Outbox", "OutboxStats"]

FRESH_BYTES = 1 << 20
"""At most this many bytes of just-appended payloads are kept for their first send (the rest is read back)."""

PRIORITIES = ("alarm", "normal", "bulk")
"""Priority classes of events (``Event.PRIORITY``), sent in this order; oldest first within a class."""


class _ClassQueue:
    """The events waiting for the window: one FIFO per priority class, served alarm → normal → bulk."""

    __slots__ = ("_queues",)

    def __init__(self) -> None:
        self._queues: dict[str, deque[str]] = {name: deque() for name in PRIORITIES}

    def append(self, event_id: str, priority: str = "normal") -> None:
        self._queues[priority].append(event_id)

    def extendleft(self, event_ids: list[str], priority_of: Callable[[str], str]) -> None:
        """Put ``event_ids`` (oldest first) back at the front of their classes."""
        for event_id in reversed(event_ids):
            self._queues[priority_of(event_id)].appendleft(event_id)

    def _first(self) -> deque:
        for q in self._queues.values():
            if q:
                return q
        raise IndexError("the queue is empty")

    def peek(self) -> str:
        return self._first()[0]

    def popleft(self) -> str:
        return self._first().popleft()

    def clear(self) -> None:
        for q in self._queues.values():
            q.clear()

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def __bool__(self) -> bool:
        return any(self._queues.values())


@attrs.define
class OutboxStats:
    """Counters of one outbox."""

    sent: int = 0
    """Events published (first sends and re-sends)."""
    acked: int = 0
    """Events acked by the peer and removed from the store."""
    late_acked: int = 0
    """Acks that arrived after the window was forgotten (the event still left the store)."""
    reuploaded: int = 0
    """Events sent that were already stored when the link (re)became active: the backlog."""
    resent: int = 0
    """Events sent again after a cause: their ack timed out, their publish failed, or the link went down."""
    resent_without_cause: int = 0
    """Events sent again with no such cause in between (a bug if ever non-zero)."""
    retried: int = 0
    """Events sent again while the link stayed active (their ack timed out; later events were acked)."""
    parked: int = 0
    """Events parked after ``park_after`` unacked attempts while later events were acked."""
    read_errors: int = 0
    """Stored events that an OS error kept from being read (kept pending, sent after the next activation)."""
    expired: int = 0
    """Stored events dropped unsent because they outlived their type's ``TTL_S``."""
    set_aside: int = 0
    """Stored events that could not be read or decoded, moved aside instead of sent."""
    send_failures: int = 0
    activations: int = 0
    max_backlog: int = 0
    batches_sent: int = 0
    """Batched frames sent (each carries up to the link's ``batch_max`` events)."""
    coalesced: int = 0
    """Partial batches of a stream held for a few reactor turns after the ack that let them go."""

    def as_dict(self) -> dict[str, int]:
        """A JSON-ready copy."""
        return attrs.asdict(self)


@attrs.define(eq=False)
class Outbox:
    """Paces events from ``store`` onto ``link``.

    :param store: the :class:`~gwproactor.interfaces.IEventStore`.
    :param link: the upstream :class:`~gwproactor.links.link.Link` (``send``, ``is_active``).
    :param codec: decodes stored payloads.
    :param window: most events sent and not yet acked.
    :param on_problem: ``on_problem(problem_type, summary, details)`` for events set aside or parked.
    :param park_after: sends of one event without an ack, while later events are acked, before it is parked.
    :param clock: ``callLater`` and ``seconds`` for coalescing batches (the reactor); None: no coalescing.
    :param coalesce_s: longest a partial batch of a stream is held after the ack that let it go.
    """

    store: Any
    link: Any
    codec: Any
    window: int = 50
    on_problem: Callable[[str, str, str], Any] = lambda problem_type, summary, details: None
    park_after: int = 3
    expiry: Any = None
    """An :class:`~gwproactor.links.expiry.Expiry` (TTLs by type), or None: nothing expires."""
    clock: Any = None
    coalesce_s: float = 0.002
    stats: OutboxStats = attrs.field(factory=OutboxStats)
    _queue: _ClassQueue = attrs.field(factory=_ClassQueue, init=False)
    # Pending events of a class other than "normal" (alarm, bulk) -> their class; normal ones are not listed.
    _priority: dict = attrs.field(factory=dict, init=False)
    _backlog_other: set = attrs.field(factory=set, init=False)
    _in_flight: dict = attrs.field(factory=dict, init=False)
    _backlog_last: str | None = attrs.field(default=None, init=False)
    # Events sent and not yet acked -> whether a cause to send them again happened since their last send.
    _sends: dict = attrs.field(factory=dict, init=False)
    # Events whose ack timed out while the link stayed active -> how many sends had no ack.
    _attempts: dict = attrs.field(factory=dict, init=False)
    # Events to send alone, not in a batch (a batch of theirs timed out while the link stayed active).
    _solo: set = attrs.field(factory=set, init=False)
    _expired_types: dict = attrs.field(factory=dict, init=False)  # expired in this pump, by type, to report
    _active: bool = attrs.field(default=False, init=False)
    _pumping: bool = attrs.field(default=False, init=False)
    _batches: dict = attrs.field(factory=dict, init=False)
    _old_batches: OrderedDict = attrs.field(factory=OrderedDict, init=False)
    # Payloads of events just appended and queued, for their first send (not read back from disk).
    _fresh: dict = attrs.field(factory=dict, init=False)
    _fresh_bytes: int = attrs.field(default=0, init=False)
    # Events waited behind an unacked frame since the last batch went: a stream, its next partial batch coalesces.
    _streaming: bool = attrs.field(default=False, init=False)
    _coalesce_until: float | None = attrs.field(default=None, init=False)  # coalescing until then
    _coalesce_len: int = attrs.field(default=0, init=False)  # queue length at the last turn's check
    _coalesce_call: Any = attrs.field(default=None, init=False)
    log: Logger = attrs.field(factory=lambda: Logger(namespace="gwproactor.outbox"), init=False)

    def __attrs_post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"outbox window must be >= 1, got {self.window!r}")
        if self.park_after < 1:
            raise ValueError(f"outbox park_after must be >= 1, got {self.park_after!r}")

    @property
    def in_flight(self) -> int:
        """Events sent and not yet acked."""
        return len(self._in_flight)

    @property
    def batch_frames_limit(self) -> int:
        """With batching, at most this many batch frames are unacked at once (a tenth of the window, at least 2)."""
        return max(2, self.window // 10)

    @property
    def queued(self) -> int:
        """Events waiting for a place in the window (while active)."""
        return len(self._queue)

    # --- link state ------------------------------------------------------------

    def activated(self) -> None:
        """The link became active: load the store's pending events and start sending."""
        self._active = True
        self.stats.activations += 1
        self._forget_batches()
        self._in_flight.clear()
        pending = self.store.pending_ids()
        queue, priority = _ClassQueue(), self._priority
        self._backlog_last = None
        self._backlog_other = set()
        for event_id in pending:
            cls = priority.get(event_id)
            if cls is None:
                queue.append(event_id)
                self._backlog_last = event_id
            else:
                queue.append(event_id, cls)
                self._backlog_other.add(event_id)
        self._queue = queue
        # Every id pending now is backlog (counted as reuploaded when sent); in the normal class,
        # everything up to the last one pending now.
        self.stats.max_backlog = max(self.stats.max_backlog, len(pending))
        self.pump()

    def deactivated(self) -> None:
        """The link left active: forget the window; the store keeps everything unacked."""
        self._active = False
        for event_id in self._in_flight:
            self._sends[event_id] = True  # the link went down with it in flight
        self._attempts.clear()  # an event is parked only for timeouts within one active period
        self._stop_coalescing()
        self._streaming = False
        self._forget_batches()
        self._in_flight.clear()
        self._queue.clear()
        self._forget_fresh()
        self._backlog_last = None
        self._backlog_other = set()

    # --- events --------------------------------------------------------------------

    def added(self, event_id: str, priority: str = "normal", data: bytes | None = None) -> None:
        """A new event is in the store (call once per event): queue it if the link is active.

        ``priority`` (one of :data:`PRIORITIES`) places it: an ``alarm`` overtakes every queued
        ``normal`` and ``bulk`` event (a backlog included).  Remembered while the event is pending in
        this process; after a restart the backlog loaded from the store goes oldest first.

        ``data``, the payload just appended, is kept for the event's first send (at most
        :data:`FRESH_BYTES` of such payloads at once), so it is not read back from the store; the
        store is still asked whether the event is pending (a full store may have dropped it).  Any
        later send (after an ack timeout or a deactivation) reads the store.
        """
        if priority != "normal":
            if priority not in PRIORITIES:
                raise ValueError(f"unknown event priority {priority!r}; use one of {', '.join(PRIORITIES)}")
            self._priority[event_id] = priority
        if not self._active or event_id in self._in_flight:
            return
        if data is not None and self._fresh_bytes + len(data) <= FRESH_BYTES:
            self._fresh[event_id] = data
            self._fresh_bytes += len(data)
        self._queue.append(event_id, priority)
        self.pump()

    def _read(self, event_id: str) -> bytes:
        """The payload to send: the fresh copy of a just-appended event if still pending, else the store's."""
        data = self._fresh.pop(event_id, None)
        if data is None:
            return self.store.read(event_id)
        self._fresh_bytes -= len(data)
        if not self.store.is_pending(event_id):
            raise EventNotFound(f"no pending event {event_id!r}")
        return data

    def _forget_fresh(self) -> None:
        self._fresh.clear()
        self._fresh_bytes = 0

    def _forget_batches(self) -> None:
        # Keep recent batches so that a late ack still removes their events from the store.
        for batch_id, ids in self._batches.items():
            self._old_batches[batch_id] = ids
        self._batches.clear()
        while len(self._old_batches) > 1000:
            self._old_batches.popitem(last=False)

    def acked(self, message_id: str) -> None:
        """The peer acked ``message_id`` (an event or a batch; in time or late): the events leave the store."""
        ids = self._batches.pop(message_id, None)
        if ids is None:
            ids = self._old_batches.pop(message_id, None)
        if ids is None:
            self._acked_one(message_id)
        else:
            pumping, self._pumping = self._pumping, True
            try:
                for event_id, was_pending in zip(ids, self.store.ack_many(ids), strict=True):
                    self._acked_one(event_id, was_pending)
            finally:
                self._pumping = pumping
        self.pump()

    def _acked_one(self, event_id: str, was_pending: bool | None = None) -> None:
        in_window = self._in_flight.pop(event_id, None) is not None
        if self.store.ack(event_id) if was_pending is None else was_pending:
            if in_window:
                self.stats.acked += 1
            else:
                self.stats.late_acked += 1
        self._forget_sends(event_id)

    def _forget_sends(self, event_id: str) -> None:
        data = self._fresh.pop(event_id, None)
        if data is not None:
            self._fresh_bytes -= len(data)
        self._priority.pop(event_id, None)
        self._backlog_other.discard(event_id)
        self._sends.pop(event_id, None)
        self._attempts.pop(event_id, None)
        self._solo.discard(event_id)

    def pump(self) -> None:
        """Send queued events while the window has room."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._active and self._queue:
                if self.link.peer_accepts_batches and self._queue.peek() not in self._solo:
                    if len(self._batches) >= self.batch_frames_limit:
                        break
                    if len(self._queue) < self.link.batch_max:
                        if self._batches:
                            # Nagle, for events: while a frame is unacked a partial batch waits for its ack
                            # (or to fill up).  Idle, an event goes at once; streaming, frames fill up
                            # instead of carrying one event each.
                            self._streaming = True
                            break
                        if self._coalesce_until is not None or (self._streaming and self._start_coalescing()):
                            break
                    self._stop_coalescing()
                    self._streaming = False
                    self._send_batch()
                    continue
                if len(self._in_flight) >= self.window:
                    break
                self._send(self._queue.popleft())
        finally:
            self._pumping = False
            if self._expired_types:
                self._report_expired()

    def _start_coalescing(self) -> bool:
        """Hold the partial batch of a stream for a few reactor turns (see the module docstring); False: send now."""
        clock = self.clock
        if clock is None or self.coalesce_s <= 0:
            return False
        self.stats.coalesced += 1
        self._coalesce_until = clock.seconds() + self.coalesce_s
        self._coalesce_len = len(self._queue)
        self._coalesce_call = clock.callLater(0, self._coalesce_turn)
        return True

    def _coalesce_turn(self) -> None:
        """A reactor turn while coalescing: hold on while events keep joining, within ``coalesce_s``."""
        self._coalesce_call = None
        until = self._coalesce_until
        if until is None:
            return
        n = len(self._queue)
        if self._active and n > self._coalesce_len and self.clock.seconds() < until:
            self._coalesce_len = n
            self._coalesce_call = self.clock.callLater(0, self._coalesce_turn)
            return
        self._coalesce_until = None
        self._streaming = False
        self.pump()

    def _stop_coalescing(self) -> None:
        self._coalesce_until = None
        call, self._coalesce_call = self._coalesce_call, None
        if call is not None and call.active():
            call.cancel()

    def _next_ids(self, limit: int) -> list[str]:
        queue, solo = self._queue, self._solo
        ids: list[str] = []
        while queue and len(ids) < limit and queue.peek() not in solo:
            ids.append(queue.popleft())
        return ids

    def _count_sent(self, event_id: str) -> None:
        self.stats.sent += 1
        if event_id in self._backlog_other:
            self._backlog_other.discard(event_id)
            self.stats.reuploaded += 1
        elif self._backlog_last is not None and event_id not in self._priority:
            self.stats.reuploaded += 1
            if event_id == self._backlog_last:
                self._backlog_last = None
        cause = self._sends.get(event_id)
        if cause is not None:
            if cause:
                self.stats.resent += 1
            else:
                self.stats.resent_without_cause += 1
                self.log.error("event {event_id} sent again without an ack timeout or link loss since", event_id=event_id)
        self._sends[event_id] = False

    def _send_batch(self) -> None:
        ids, stored = [], []
        expiry = self.expiry
        for event_id in self._next_ids(self.link.batch_max):
            try:
                data = self._read(event_id)
            except EventNotFound:
                self._skipped(event_id)
                continue
            except StoreReadError as e:
                self._unreadable_now(event_id, e)
                continue
            except CorruptRecord as e:
                self._set_aside(event_id, f"unreadable: {e}")
                continue
            if expiry:
                expired = expiry.expired_raw(data)
                if expired is not None:
                    self._expire(event_id, expired)
                    continue
            stored.append(data)
            ids.append(event_id)
        if not ids:
            return
        batch_id = str(uuid.uuid4())
        self._batches[batch_id] = ids
        for event_id in ids:
            self._in_flight[event_id] = True
            self._count_sent(event_id)
        self.stats.batches_sent += 1
        d = self.link.send_batch(batch_id, stored)
        d.addErrback(self._batch_failed, batch_id)

    def _batch_failed(self, failure: Failure, batch_id: str) -> None:
        failure.trap(AckTimeout, LinkDown, NotConnectedError, PublishFailed)
        self.stats.send_failures += 1
        ids = self._batches.pop(batch_id, None) or []
        retry = []
        for event_id in ids:
            if self._in_flight.pop(event_id, None) is not None:
                self._sends[event_id] = True
                retry.append(event_id)
        if self._active and not self.link.is_active:
            self.deactivated()
        elif self._active and failure.check(AckTimeout):
            # The peer acks other frames: send these again one by one, so that one event the
            # peer refuses is found and parked without holding back the others.
            self._solo.update(retry)
            self._retry(retry)

    def _send(self, event_id: str) -> None:
        try:
            data = self._read(event_id)
        except EventNotFound:
            self._skipped(event_id)
            return  # acked or dropped meanwhile
        except StoreReadError as e:
            self._unreadable_now(event_id, e)
            return
        except CorruptRecord as e:
            self._set_aside(event_id, f"unreadable: {e}")
            return
        try:
            payload = self.codec.decode_payload(data)
        except DecodeError as e:
            self._set_aside(event_id, f"undecodable: {e}")
            return
        expiry = self.expiry
        if expiry and expiry.expired(payload.type_name, getattr(payload, "time_created_ms", None)):
            self._expire(event_id, payload.type_name)
            return
        self._in_flight[event_id] = True
        self._count_sent(event_id)
        d = self.link.send(payload)
        d.addErrback(self._send_failed, event_id)

    def _send_failed(self, failure: Failure, event_id: str) -> None:
        failure.trap(AckTimeout, LinkDown, NotConnectedError, PublishFailed)
        self.stats.send_failures += 1
        if self._in_flight.pop(event_id, None) is None:
            return
        self._sends[event_id] = True
        # Still in the store: it goes again when the link is active again.
        if self._active and not self.link.is_active:
            self.deactivated()
        elif self._active and failure.check(AckTimeout):
            # The link stayed active: the peer acks later events but not this one.
            attempts = self._attempts.get(event_id, 0) + 1
            self._attempts[event_id] = attempts
            if attempts >= self.park_after:
                self._park(event_id, attempts)
            else:
                self._retry([event_id])

    def _retry(self, event_ids: list[str]) -> None:
        """Send ``event_ids`` again ahead of the queue (oldest first), while the link stays active."""
        self.stats.retried += len(event_ids)
        self._queue.extendleft(event_ids, lambda event_id: self._priority.get(event_id, "normal"))
        self.pump()
        # With nothing else to send, the ack of this probe is what shows the peer is there.
        self.link.probe()

    def _park(self, event_id: str, attempts: int) -> None:
        self._forget_sends(event_id)
        reason = f"sent {attempts} times without an ack while the peer acked later events"
        try:
            self.store.park(event_id, reason)
        except EventNotFound:
            self._skipped(event_id)
            self.pump()
            return
        self.stats.parked += 1
        self.log.error("event {event_id} parked: {reason}", event_id=event_id, reason=reason)
        self.on_problem(
            "error",
            f"event parked on link {self.link.link_name}",
            f"event {event_id} {reason}; {self.stats.parked} parked so far. "
            "List them with 'gwproactor store parked', re-queue with 'gwproactor store requeue'.",
        )
        self.pump()

    def _unreadable_now(self, event_id: str, error: Exception) -> None:
        """An OS error kept a stored event from being read: it may be intact, so it stays pending.

        It is not sent in this active period (so the pump cannot spin on it); the next activation
        loads it from the store again.
        """
        self._skipped(event_id)
        self.stats.read_errors += 1
        self.log.error("stored event {event_id} could not be read now: {error}", event_id=event_id, error=str(error))
        self.on_problem("error", "stored event could not be read", f"event {event_id}: {error}; kept, sent later")

    def _expire(self, event_id: str, type_name: str) -> None:
        """Drop a stored event that outlived its TTL (reported once per pump, with counts by type)."""
        self._skipped(event_id)
        if self.store.ack(event_id):
            self.stats.expired += 1
            self._expired_types[type_name] = self._expired_types.get(type_name, 0) + 1

    def _report_expired(self) -> None:
        counts, self._expired_types = self._expired_types, {}
        total = sum(counts.values())
        by_type = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
        self.log.warn("{total} stored events expired unsent ({by_type})", total=total, by_type=by_type)
        self.on_problem(
            "warning",
            f"events expired on link {self.link.link_name}",
            f"{total} stored events outlived their TTL and were dropped unsent ({by_type}); "
            f"{self.stats.expired} expired so far.",
        )

    def _skipped(self, event_id: str) -> None:
        # The event left the store without our ack (dropped by the full policy, or acked late):
        # forget its resend bookkeeping too, or it would grow with every such event.
        self._forget_sends(event_id)
        if event_id == self._backlog_last:
            self._backlog_last = None

    def _set_aside(self, event_id: str, reason: str) -> None:
        self._skipped(event_id)
        self.stats.set_aside += 1
        self.store.set_aside(event_id, reason)
        self.log.error("stored event {event_id} set aside: {reason}", event_id=event_id, reason=reason)
        # A constant summary, so the problem rate limit holds even if every stored event is unreadable.
        self.on_problem("error", "stored event set aside", f"event {event_id}: {reason}")

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for stats."""
        return {"active": self._active, "in_flight": self.in_flight, "queued": self.queued, **self.stats.as_dict()}
