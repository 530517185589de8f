"""An instrumented proactor for tests: fault switches per link, per-link per-type counters and a log capture.

The fault switches are those of a :class:`~gwproactor_test.faulty_mqtt.FaultyMQTTClient` put between each link
and its broker connection; the links themselves carry no test machinery.

Combine :class:`InstrumentedMixin` with any :class:`~gwproactor.proactor.Proactor` subclass
(``class MyTest(InstrumentedMixin, MyProactor)``, or :func:`instrumented` ``(MyProactor)``).
"""

from __future__ import annotations

import json
import zlib
import sys
import time
from collections import Counter, defaultdict, deque
from typing import TYPE_CHECKING, Any, Callable, TextIO

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from gwproactor.message import COMPRESSED_BATCH_TYPE, Event, EventBatch
from gwproactor_test.faulty_mqtt import FaultyMQTTClient, link_faults

__all__ = ["InstrumentCounts", "InstrumentedMixin", "LogCapture", "instrumented"]

_KINDS = ("sent", "received", "stored", "acked", "deduplicated", "handled")


def _counter_table() -> defaultdict[str, Counter]:
    return defaultdict(Counter)


@attrs.define
class InstrumentCounts:
    """Counters by link name, then by ``TypeName``.

    * ``sent``: frames handed to a link for publishing (acks and pings included);
    * ``received``: messages from a peer handed to the proactor (events and application messages);
    * ``stored``: events appended to the store for upstream delivery (``""`` for events generated here,
      else the downstream link they came from);
    * ``acked``: acks received for what we sent;
    * ``deduplicated``: events from a peer dropped as already accepted (still acked);
    * ``handled``: events the application accepted in ``handle_event`` (``""`` for local events).

    A batch frame (``gwproactor.batch``) counts once under its own type and once per event it carries under the
    event's type (sent, received, acked), so per-type counts of events do not depend on batching.
    """

    sent: defaultdict[str, Counter] = attrs.field(factory=_counter_table)
    received: defaultdict[str, Counter] = attrs.field(factory=_counter_table)
    stored: defaultdict[str, Counter] = attrs.field(factory=_counter_table)
    acked: defaultdict[str, Counter] = attrs.field(factory=_counter_table)
    deduplicated: defaultdict[str, Counter] = attrs.field(factory=_counter_table)
    handled: defaultdict[str, Counter] = attrs.field(factory=_counter_table)

    def total(self, kind: str, type_name: str | None = None) -> int:
        """Sum of ``kind`` over all links (for one ``type_name``, or every type)."""
        table = getattr(self, kind)
        if type_name is None:
            return sum(sum(c.values()) for c in table.values())
        return sum(c[type_name] for c in table.values())

    def as_dict(self) -> dict[str, dict[str, dict[str, int]]]:
        """A JSON-ready copy."""
        return {kind: {link: dict(c) for link, c in getattr(self, kind).items()} for kind in _KINDS}


@implementer(ILogObserver)
@attrs.define(eq=False)
class LogCapture:
    """A :mod:`twisted.logger` observer keeping the lines logged by some objects (``log_source``) or namespaces.

    :param sources: returns the objects whose events are kept (evaluated per event, so links built later count).
    :param namespaces: log namespaces always kept (for modules logging without a source).
    :param max_lines: lines kept (oldest dropped).
    :param echo: a stream to which lines at ``echo_level`` or above are also written (verbose mode), or ``None``.
    """

    sources: Callable[[], Any]
    label: str = ""
    max_lines: int = 2000
    echo: TextIO | None = None
    echo_level: LogLevel = LogLevel.info
    lines: deque = attrs.field(init=False)
    _on: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self.lines = deque(maxlen=self.max_lines)

    def __call__(self, event: dict[str, Any]) -> None:
        source = event.get("log_source")
        if source is None:
            return
        try:
            if not any(source is s for s in self.sources()):
                return
        except Exception:
            return
        level = event.get("log_level")
        text = formatEvent(event)
        failure = event.get("log_failure")
        if isinstance(failure, Failure):
            text += "\n" + failure.getTraceback(detail="brief")
        stamp = event.get("log_time") or 0.0
        clock = time.strftime("%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp * 1000) % 1000:03d}"
        line = f"{clock} {getattr(level, 'name', level)} [{self.label}] {text}"
        self.lines.append(line)
        if self.echo is not None and level is not None and level >= self.echo_level:
            print(line, file=self.echo, flush=True)

    def start(self) -> None:
        """Begin observing the global log publisher."""
        if not self._on:
            globalLogPublisher.addObserver(self)
            self._on = True

    def stop(self) -> None:
        """Stop observing (the lines are kept)."""
        if self._on:
            globalLogPublisher.removeObserver(self)
            self._on = False

    def text(self) -> str:
        """The captured lines, one per line."""
        return "\n".join(self.lines)


if TYPE_CHECKING:
    from gwproactor.proactor import Proactor as _Base
else:
    _Base = object


class InstrumentedMixin(_Base):
    """Test instrumentation for a :class:`~gwproactor.proactor.Proactor` subclass (put it first in the bases).

    Fault switches delegate to the :class:`~gwproactor_test.faulty_mqtt.FaultyMQTTClient` around each link's
    broker connection (:meth:`faults`);
    counters are in :attr:`counts` (:class:`InstrumentCounts`); :attr:`handled_ids` lists the ids of the
    events the application accepted, in order (with repeats, so tests can check "exactly once");
    :attr:`log_capture` keeps this proactor's log lines (its own, its links', its outbox's).
    """

    counts: InstrumentCounts
    handled_ids: list[str]
    log_capture: LogCapture

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.counts = InstrumentCounts()
        self.handled_ids = []
        self._sent_types: dict[str, list[str]] = {}
        super().__init__(*args, **kwargs)
        self.log_capture = LogCapture(self._log_sources, label=getattr(self, "short_name", ""))
        self.log_capture.start()
        for link in self.links.values():
            self._wrap_link(link)
            link_faults(link)

    # --- wiring -------------------------------------------------------------------

    def _log_sources(self) -> list[Any]:
        sources: list[Any] = [self, *self.links.values()]
        if getattr(self, "outbox", None) is not None:
            sources.append(self.outbox)
        return sources

    def _wrap_link(self, link: Any) -> None:
        original = link.send_message
        sent = self.counts.sent[link.link_name]
        sent_types = self._sent_types

        def send_message(message: Any) -> Deferred:
            header = message.header
            types = [header.message_type]
            if header.message_type == EventBatch.TYPE_NAME:
                types += [t for _id, t in _batch_events(message)]
            for type_name in types:
                sent[type_name] += 1
            if header.ack_required:
                sent_types[header.message_id] = types
                if len(sent_types) > 100_000:
                    sent_types.pop(next(iter(sent_types)))
            return original(message)

        link.send_message = send_message

    # --- observed hooks -----------------------------------------------------------------

    def link_message(self, link: Any, message: Any) -> Any:
        """Count what the peer sent (each event of a batch too), and events stored (forwarded) or deduplicated."""
        name = link.link_name
        payload = message.payload
        self.counts.received[name][message.header.message_type] += 1
        if isinstance(payload, EventBatch):
            events = [(obj.get("MessageId", ""), obj.get("TypeName", "?")) for obj in payload.events
                      if isinstance(obj, dict)]
            for _id, type_name in events:
                self.counts.received[name][type_name] += 1
        elif isinstance(payload, Event):
            events = [(payload.message_id, payload.type_name)]
        else:
            events = []
        accepting = self.inbox.accepting
        fresh = []
        for event_id, type_name in events:
            if self.received_ids.seen(event_id) or event_id in accepting:
                self.counts.deduplicated[name][type_name] += 1
            else:
                fresh.append(type_name)
        result = super().link_message(link, message)
        if fresh and self.upstream is not None and link is not self.upstream and isinstance(result, Deferred):
            stored = self.counts.stored[name]

            def count_stored(r: Any) -> Any:
                if not isinstance(r, Failure):
                    for type_name in fresh:
                        stored[type_name] += 1
                return r

            result.addBoth(count_stored)
        return result

    def link_acked(self, link: Any, message_id: str, rtt: Any) -> None:
        """Count acks by the type of what they acknowledge (a batch's ack counts each of its events)."""
        for type_name in self._sent_types.pop(message_id, ["unknown"]):
            self.counts.acked[link.link_name][type_name] += 1
        super().link_acked(link, message_id, rtt)

    def generate_event(self, event: Any) -> Deferred:
        """Count events stored for upstream delivery once durable."""
        d = super().generate_event(event)
        if self.upstream is not None:
            stored = self.counts.stored[""]
            type_name = event.type_name

            def count(r: Any) -> Any:
                if not isinstance(r, Failure):
                    stored[type_name] += 1
                return r

            d.addBoth(count)
        return d

    def handle_event(self, link: Any, event: Any) -> Any:
        """Record the events the application accepted (after its own ``handle_event`` succeeded)."""
        d = maybeDeferred(super().handle_event, link, event)
        link_name = "" if link is None else link.link_name

        def accepted(r: Any) -> Any:
            if not isinstance(r, Failure):
                self.handled_ids.append(event.message_id)
                self.counts.handled[link_name][event.type_name] += 1
            return r

        return d.addBoth(accepted)

    def stopService(self) -> Deferred:
        """Stop as the proactor does, then stop capturing log lines."""
        d = super().stopService()

        def done(r: Any) -> Any:
            self.log_capture.stop()
            return r

        return d.addBoth(done)

    # --- fault switches ----------------------------------------------------------------------

    def _link(self, link_name: str) -> Any:
        return self.get_link(link_name)

    def faults(self, link_name: str) -> FaultyMQTTClient:
        """The :class:`~gwproactor_test.faulty_mqtt.FaultyMQTTClient` between ``link_name`` and its broker."""
        return link_faults(self._link(link_name))

    def hold_outgoing(self, link_name: str, hold: bool = True) -> None:
        """Keep (``hold=True``) every frame ``link_name`` would publish, acks included, until released."""
        self.faults(link_name).hold_outgoing = hold

    def release_outgoing(self, link_name: str, n: int | None = None) -> int:
        """Publish ``n`` (default all) held outgoing frames of ``link_name``; returns how many."""
        return self.faults(link_name).release_outgoing(n)

    def hold_acks(self, link_name: str, hold: bool = True) -> None:
        """Keep the acks we owe the peer of ``link_name`` instead of publishing them."""
        self.faults(link_name).hold_acks = hold

    def release_acks(self, link_name: str, n: int | None = None) -> int:
        """Publish ``n`` (default all) held acks of ``link_name``; holding goes on until ``hold_acks(name, False)``."""
        return self.faults(link_name).release_acks(n)

    def hold_subacks(self, link_name: str, hold: bool = True) -> None:
        """Keep the SUBACK notifications of ``link_name`` (set it before the link subscribes)."""
        self.faults(link_name).hold_subacks = hold

    def release_subacks(self, link_name: str) -> int:
        """Process the held SUBACKs of ``link_name`` and stop holding; returns how many."""
        return self.faults(link_name).release_subacks()

    def drop_incoming(self, link_name: str, drop: bool = True) -> None:
        """Drop (``drop=True``) every frame arriving for ``link_name`` before the link sees it."""
        self.faults(link_name).drop_incoming = drop

    def force_disconnect(self, link_name: str) -> None:
        """Abruptly drop the broker connection of ``link_name`` (it reconnects by itself)."""
        self._link(link_name).broker.drop_connection()


def _batch_events(message: Any) -> list[tuple[str, str]]:
    """``(MessageId, TypeName)`` of each event in an outgoing batch frame (a ``RawFrame`` or a ``Message``)."""
    try:
        if hasattr(message, "data"):
            data = message.data
            if getattr(message, "wire_type", None) == COMPRESSED_BATCH_TYPE:
                data = zlib.decompress(data)
            events = json.loads(data)["Payload"]["Events"]
        else:
            events = message.payload.events
        return [(e.get("MessageId", ""), e.get("TypeName", "?")) for e in events if isinstance(e, dict)]
    except (ValueError, KeyError, TypeError, AttributeError, zlib.error):
        return []


_instrumented: dict[type, type] = {}


def instrumented(cls: type) -> type:
    """``cls`` combined with :class:`InstrumentedMixin` (``cls`` itself if it already is); cached per class."""
    if issubclass(cls, InstrumentedMixin):
        return cls
    made = _instrumented.get(cls)
    if made is None:
        made = type(f"Instrumented{cls.__name__}", (InstrumentedMixin, cls), {"__module__": cls.__module__})
        _instrumented[cls] = made
    return made


def echo_stream() -> TextIO:
    """The stream verbose log lines go to (stderr; pytest shows it for failing tests)."""
    return sys.stderr
