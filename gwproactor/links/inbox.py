"""The receiving side of a proactor: accepting events from peers exactly once, event batches, and DBG requests."""

from __future__ import annotations

from collections.abc import KeysView
from typing import Any

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gwproactor.errors import DecodeError
from gwproactor.message import DBGEvent, Event

__all__ = ["Inbox"]


class Inbox:
    """Accepts what a proactor's links receive (see :doc:`/delivery`).

    * An event is accepted once: duplicates (a bounded, persisted window of
      recent ids, and copies arriving while the first is still being accepted)
      are acked without reaching the application.
    * In a middle process (the proactor has an upstream link and the event came
      over another link) an event is accepted once it is durable in the local
      store, then forwarded; otherwise once ``handle_event`` has returned.
    * A batch is accepted when every event in it is; an undecodable event in a
      batch is reported and skipped (re-sending would not make it decodable).
    * An event whose ``handle_event`` fails is *parked* in the local store (kept,
      listed by ``gwproactor store parked``, re-queued by ``gwproactor store
      requeue``), reported as a problem event, and acked: re-sending it would not
      make the application accept it, and the sender must not retry it forever.
      If even parking fails, the event is not acked (the sender tries again).

    :param proactor: the owning :class:`~gwproactor.proactor.Proactor` (its
        codec, store, counters, hooks and ``received_ids``).
    """

    log = Logger(namespace="gwproactor.inbox")

    def __init__(self, proactor: Any) -> None:
        self.proactor = proactor
        self._accepting: dict[str, Deferred] = {}

    @property
    def accepting(self) -> KeysView[str]:
        """Ids of the events being accepted now (``len()`` counts them; ``in`` tests one); a live read-only view."""
        return self._accepting.keys()

    def accept_event(self, link: Any, event: Any) -> Any:
        """Accept ``event`` from ``link``; returns None or a Deferred that fires once it is accepted."""
        p = self.proactor
        event_id = event.message_id
        if p.received_ids.seen(event_id):
            self._duplicate(link)
            return None
        pending = self._accepting.get(event_id)
        if pending is not None:
            # The same event again while its first copy is being accepted: answer like the first.
            self._duplicate(link)
            d: Deferred = Deferred()

            def follow(result: Any) -> Any:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(None)
                return result

            pending.addBoth(follow)
            return d
        if p.upstream is not None and link is not p.upstream:
            accepted = p._store_event(event).addCallback(lambda _: self._handle_forwarded(link, event))
        else:
            try:
                handled = p.handle_event(link, event)
            except Exception:
                # Parked and accepted (or, if even parking fails, raised: not acked).
                self._refused(Failure(), link, event)
                handled = None
            if not isinstance(handled, Deferred):
                # Accepted synchronously, the usual case: no Deferred at all.
                p.received_ids.remember(event_id)
                p.counters["events_received"] += 1
                return None
            accepted = handled.addErrback(self._refused, link, event)
        self._accepting[event_id] = accepted

        def done(result: Any) -> Any:
            self._accepting.pop(event_id, None)
            if not isinstance(result, Failure):
                p.received_ids.remember(event_id)
                p.counters["events_received"] += 1
            return result

        return accepted.addBoth(done)

    def accept_batch(self, link: Any, batch: Any) -> Deferred | None:
        """Accept every event of ``batch``: None if all were accepted at once, else a Deferred that fires once all are."""
        p = self.proactor
        p.counters["batches_received"] += 1
        accepted: list[Deferred] = []
        for n, obj in enumerate(batch.events):
            try:
                event = p.codec.payload_from_dict(obj, path=f"Payload.Events[{n}]")
                if not isinstance(event, Event):
                    raise DecodeError(f"Payload.Events[{n}]: {type(event).__name__} is not an event")
            except DecodeError as e:
                p.counters["undecodable_batch_events"] += 1
                p.report_problem(
                    "error", f"undecodable event in a batch from link {link.link_name}", f"{e}: {str(obj)[:1000]}"
                )
                continue
            try:
                result = self.accept_event(link, event)
            except Exception:
                result = fail()
            if isinstance(result, Deferred):
                accepted.append(result)
        if not accepted:
            return None  # every event accepted synchronously
        return gatherResults(accepted, consumeErrors=True)

    def handle_dbg(self, link: Any, message: Any) -> Deferred:
        """A remote debug request (4.x ``gridworks.proactor.dbg``): change log levels, record a DBG event."""
        p = self.proactor
        dbg = message.payload
        changed = p.log_levels.apply_python_levels(dbg.levels)
        p.counters["dbg_requests"] += 1
        self.log.info(
            "DBG from {link_name}: levels {changed}, command {command}",
            link_name=link.link_name,
            changed=changed,
            command=dbg.command,
        )
        summary = ", ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "no level changed"
        if dbg.command:
            summary += f"; command {dbg.command!r} is not supported"
        event = DBGEvent(
            src=p.name,
            command=p.codec.payload_to_dict(dbg),
            path=link.link_name,
            count=p.counters["dbg_requests"],
            msg=summary,
        )
        return p.generate_event(event)

    def _refused(self, failure: Failure, link: Any, event: Any) -> None:
        """``handle_event`` failed for ``event``: park it locally so it can be acked (or re-raise)."""
        p = self.proactor
        event_id = event.message_id
        why = f"handle_event failed: {type(failure.value).__name__}: {failure.getErrorMessage()}"[:1000]
        p.store.park(event_id, f"{why} (from link {link.link_name})", p.codec.encode_payload(event))
        p.counters["events_parked"] += 1
        self.log.failure(
            "handle_event failed for event {event_id} from link {link_name}; parked and acked",
            failure,
            event_id=event_id,
            link_name=link.link_name,
        )
        p.report_problem(
            "error",
            f"event from link {link.link_name} parked: the application refused it",
            f"{event.type_name} {event_id}: {why}. "
            "List parked events with 'gwproactor store parked', re-queue with 'gwproactor store requeue'.",
        )

    def _duplicate(self, link: Any) -> None:
        self.proactor.counters["duplicates_dropped"] += 1
        link.stats.duplicates_dropped += 1

    def _handle_forwarded(self, link: Any, event: Any) -> None:
        # Forwarded events are already durable: a failing application hook must not un-accept them.
        d = maybeDeferred(self.proactor.handle_event, link, event)
        d.addErrback(
            lambda f: self.log.failure("handle_event failed for forwarded event {event_id}", f, event_id=event.message_id)
        )
