"""A proactor's durable event path: the store is written first, the outbox sends from it; re-queued events.

:class:`StoredEvents` holds no state of its own beyond its collaborators: the store (opened by the
proactor, see :func:`open_file_store`), the outbox of the upstream link (or none at the top of the tree),
the codec, and the proactor's ``handle_event`` hook for events with nowhere upstream to go.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

from gwproactor.errors import DecodeError, EncodeError

def open_file_store(settings: Any, reactor: Any, on_problem: Callable[[str, str], None]) -> Any:
    """Open (create, lock and recover) the :class:`~gwproactor.store.FileEventStore` that ``settings.store`` names.

    The directory is resolved under the XDG state directory when unset
    (:meth:`~gwproactor.config.ProactorSettings.resolve_paths`).
    """
    from gwproactor.store import FileEventStore

    s = settings.resolve_paths().store
    return FileEventStore.open(
        str(s.directory),
        clock=reactor,
        sync=s.sync_policy,
        group_ms=s.group_commit_ms,
        segment_bytes=s.segment_bytes,
        max_bytes=s.max_bytes,
        full_policy=s.full_policy,
        on_problem=on_problem,
        received_window=s.received_window,
        fsync_in_thread=s.fsync_in_thread and IReactorFromThreads.providedBy(reactor),
    )


def type_name(event: Any) -> str:
    """The ``TypeName`` of ``event``."""
    name = getattr(event, "type_name", None)
    return name if isinstance(name, str) else type(event).TYPE_NAME


class StoredEvents:
    """Appends events to the store and tells the outbox; re-queues parked events.

    :param store: returns the (opened) :class:`~gwproactor.interfaces.IEventStore`.
    :param outbox: the upstream link's :class:`~gwproactor.links.outbox.Outbox`, or None.
    :param codec: encodes events for the store, decodes them back.
    :param handle_event: the proactor's ``handle_event`` hook (the top of the tree gets re-queued events).
    :param counters: the proactor's counters (``events_parked``).
    :param log: the proactor's logger.
    """

    def __init__(self, store: Callable[[], Any], outbox: Any, codec: Callable[[], Any],
                 handle_event: Callable[[Any, Any], Any], counters: Counter, log: Any) -> None:
        self._store = store
        self._outbox = outbox
        self._codec = codec
        self._handle_event = handle_event
        self._counters = counters
        self._log = log

    def append(self, event: Any) -> Deferred:
        """Encode and append ``event``; fires with its id once durable (the outbox may send it sooner)."""
        try:
            data = self._codec().encode_payload(event)
        except (EncodeError, DecodeError, TypeError, ValueError):
            return fail()
        event_id = event.message_id
        priority = getattr(event, "PRIORITY", "normal")
        d = self._store().append(event_id, data)
        early = self._outbox is not None and not d.called
        if early:
            # The record is written (not yet synced): it may go out now, in parallel
            # with the fsync.  The caller's Deferred still waits for durability; an
            # event lost in a crash before the fsync was never promised.
            self._outbox.added(event_id, priority, data)
        return d.addCallback(self._durable, event_id, priority, data if not early else None)

    def _durable(self, result: Any, event_id: str, priority: str, data: bytes | None) -> str:
        if data is not None and self._outbox is not None:
            self._outbox.added(event_id, priority, data)
        return event_id

    def requeue(self, event_ids: list[str] | None, top_of_tree: bool) -> Deferred:
        """Make parked events pending again; the outbox sends them, or (``top_of_tree``) ``handle_event`` gets them."""
        return self._store().requeue(event_ids).addCallback(self._requeued, top_of_tree)

    def _requeued(self, event_ids: list[str], top_of_tree: bool) -> list[str]:
        if self._outbox is not None:
            for event_id in event_ids:
                self._outbox.added(event_id)
        elif top_of_tree:
            self.deliver_stored(event_ids)
        return event_ids

    def deliver_stored(self, event_ids: list[str]) -> None:
        """Without an upstream link: hand stored (re-queued) events to ``handle_event``, ack or park each."""
        store = self._store()
        for event_id in event_ids:
            try:
                event = self._codec().decode_payload(store.read(event_id))
            except Exception as e:
                self._log.error("stored event {event_id} cannot be read: {error}", event_id=event_id, error=str(e))
                continue
            d = maybeDeferred(self._handle_event, None, event)
            d.addCallbacks(self._stored_handled, self._stored_refused, callbackArgs=(event_id,), errbackArgs=(event_id,))

    def _stored_handled(self, _: Any, event_id: str) -> None:
        self._store().ack(event_id)

    def _stored_refused(self, failure: Failure, event_id: str) -> None:
        self._counters["events_parked"] += 1
        self._log.failure("handle_event refused re-queued event {event_id}; parked again", failure, event_id=event_id)
        try:
            self._store().park(event_id, f"handle_event failed: {failure.getErrorMessage()}"[:1000])
        except Exception:
            self._log.failure("could not park event {event_id} again", event_id=event_id)


class EventStoreSlot:
    """The event store of one proactor: given to it, or opened when first needed (never by its constructor).

    What the store reports is logged, counted (``store_problems``) and reported as a problem event.

    :param proactor: the owner (its ``settings``, ``reactor``, ``counters``, ``log`` and ``report_problem``).
    :param outbox: the upstream link's outbox (it gets the store once there is one), or None.
    """

    def __init__(self, proactor: Any, outbox: Any) -> None:
        self._proactor = proactor
        self._outbox = outbox
        self.store: Any = None
        self.received: Any = None

    def use(self, store: Any) -> Any:
        """Use ``store`` (and its persisted ``received`` ids, or an in-memory window)."""
        received = getattr(store, "received", None)
        if received is None:
            from gwproactor.store import MemoryReceivedIds

            received = MemoryReceivedIds(window=self._proactor.settings.store.received_window)
        self.store, self.received = store, received
        if self._outbox is not None:
            self._outbox.store = store
        return store

    def open(self) -> Any:
        """The store, opened now (:func:`open_file_store`) if there is none yet."""
        if self.store is None:
            self.use(open_file_store(self._proactor.settings, self._proactor.reactor, self._problem))
        return self.store

    def hold_received_writes(self, brokers: list[Any]) -> bool:
        """Write the received-id records once per send instead of once per event, when every broker allows it.

        Each broker connection must offer ``add_send_barrier`` (a :class:`~gwproactor.mqtt.BrokerConnection`
        does; test fakes do not): the held records are written before any ack reaches the kernel, so the
        order (record, then ack) is as without holding.  Returns True when holding is on.
        """
        received = self.received
        hold = getattr(received, "hold_writes", None)
        if hold is None or not brokers or not all(hasattr(b, "add_send_barrier") for b in brokers):
            return False
        reactor = self._proactor.reactor
        hold(lambda flush: reactor.callLater(0, flush))
        for broker in brokers:
            broker.add_send_barrier(received.flush)
        return True

    def _problem(self, summary: str, details: str) -> None:
        p = self._proactor
        p.log.warn("event store: {summary}: {details}", summary=summary, details=details)
        p.counters["store_problems"] += 1
        # Reported on the next reactor turn: the store may be inside append().
        p.reactor.callLater(0, self._report, summary, details)

    def _report(self, summary: str, details: str) -> None:
        if self.store is not None:
            self._proactor.report_problem("warning", f"event store: {summary}", details)

    def close(self) -> Any:
        """Close the store if there is one (returns its Deferred, or None)."""
        return self.store.close() if self.store is not None else None
