"""A proactor's links: building them from the settings, and the private listener that hears what they report.

The listener is an object of its own (not the :class:`~gwproactor.proactor.Proactor`), so a subclass cannot
override what the links call by accident: comm events, outbox pacing and event deduplication live here, and
the subclass's hooks (:class:`~gwproactor.interfaces.IProactorHooks`) are called from here.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gwproactor.errors import ConfigError
from gwproactor.interfaces import ILinkListener
from gwproactor.links.link import Link
from gwproactor.links.outbox import Outbox
from gwproactor.message import COMM_EVENT_TYPES, DBGPayload, Event, EventBatch, will_payload, will_topic
from gwproactor.mqtt.settings import make_broker

#: The listener methods that :class:`~gwproactor.proactor.Proactor` once had itself (deprecated aliases).
LEGACY_LISTENER_METHODS = ("link_transition", "link_message", "link_acked", "link_problem")

def call_hook(log: Logger, hook: Callable[..., Any], *args: Any) -> None:
    """Call an application hook; an exception (or a failed Deferred) is logged, never raised.

    Only :class:`Exception`: a ``KeyboardInterrupt`` or ``SystemExit`` goes on up (or stays the Deferred's failure).
    """
    try:
        result = hook(*args)
    except Exception:
        log.failure("hook {hook} failed", hook=hook.__name__)
        return
    if isinstance(result, Deferred):
        result.addErrback(_hook_failed, log, hook.__name__)


def _hook_failed(failure: Failure, log: Logger, name: str) -> None:
    failure.trap(Exception)
    log.failure("hook {hook} failed", failure, hook=name)


@implementer(ILinkListener)
class LinkListener:
    """The :class:`~gwproactor.interfaces.ILinkListener` of every link of one proactor.

    :param proactor: the owner; only its public API, its hooks and its read-only views are used.
    :param generate_quietly: records an event and logs (does not raise) if it cannot.
    :param legacy: names of :data:`LEGACY_LISTENER_METHODS` a subclass of the proactor overrides; those
        calls go to the override (which calls the deprecated base alias, which comes back here).
    """

    def __init__(self, proactor: Any, generate_quietly: Callable[[Any], None], legacy: frozenset[str] = frozenset()):
        self._proactor = proactor
        self._generate_quietly = generate_quietly
        self._legacy = legacy

    # ILinkListener: what Link calls

    def link_transition(self, link: Link, transition: Any) -> None:
        """A link changed state (see :meth:`transition`)."""
        if "link_transition" in self._legacy:
            return self._proactor.link_transition(link, transition)
        return self.transition(link, transition)

    def link_message(self, link: Link, message: Any) -> Any:
        """A message from a peer (see :meth:`message`)."""
        if "link_message" in self._legacy:
            return self._proactor.link_message(link, message)
        return self.message(link, message)

    def link_acked(self, link: Link, message_id: str, rtt: Any) -> None:
        """An ack from a peer (see :meth:`acked`)."""
        if "link_acked" in self._legacy:
            return self._proactor.link_acked(link, message_id, rtt)
        return self.acked(link, message_id, rtt)

    def link_problem(self, link: Link, problem_type: str, summary: str, details: str) -> None:
        """A problem on a link (see :meth:`problem`)."""
        if "link_problem" in self._legacy:
            return self._proactor.link_problem(link, problem_type, summary, details)
        return self.problem(link, problem_type, summary, details)

    # The work

    def transition(self, link: Link, transition: Any) -> None:
        """Generate the comm events of a transition and call the activation hooks.

        Order matters: the outbox hears that the link left active before the transition's
        comm events are stored (else it would send them on the dead link, and again after
        reactivation), and it is activated after they are stored (they go with the backlog).
        """
        p = self._proactor
        outbox = p.outbox if link is p.upstream else None
        if transition.left_active and outbox is not None:
            outbox.deactivated()
        for type_name in transition.comm_events:
            self._generate_quietly(COMM_EVENT_TYPES[type_name](src=p.name, peer_name=link.link_name))
        if transition.entered_active:
            link.announce()
            if outbox is not None:
                outbox.activated()
            call_hook(p.log, p.link_activated, link)
        elif transition.left_active:
            call_hook(p.log, p.link_deactivated, link, transition.input.value)

    def message(self, link: Link, message: Any) -> Any:
        """Accept a message from a peer: events are deduplicated, stored or handled; others go to ``handle_message``."""
        p = self._proactor
        payload = message.payload
        if isinstance(payload, Event):
            return p.inbox.accept_event(link, payload)
        if isinstance(payload, EventBatch):
            return p.inbox.accept_batch(link, payload)
        if isinstance(payload, DBGPayload):
            return p.inbox.handle_dbg(link, message)
        p.counters["messages_received"] += 1
        return p.handle_message(link, message)

    def acked(self, link: Link, message_id: str, rtt: Any) -> None:
        """An ack arrived on ``link``: an upstream event leaves the store."""
        p = self._proactor
        if link is p.upstream and p.outbox is not None:
            p.outbox.acked(message_id)

    def problem(self, link: Link, problem_type: str, summary: str, details: str) -> None:
        """A link reported a problem: counted and turned into a problem event."""
        p = self._proactor
        p.counters[f"link_problems.{link.link_name}"] += 1
        p.report_problem(problem_type, summary, details)


def build_links(
    proactor: Any, brokers: dict[str, Any], listener: LinkListener, on_problem: Callable[[str, str, str], Any]
) -> tuple[dict[str, Any], dict[str, Link], Link | None, Outbox | None]:
    """Build the broker connections and links of ``proactor.settings`` and add them to ``proactor`` as services.

    ``brokers`` are connections given by name instead of built from ``settings.brokers``.  Returns the
    broker connections and links by name, the upstream link (at most one) and its outbox (no store yet:
    the proactor gives it one when it opens its store).  Builds objects only: nothing connects.
    """
    settings = proactor.settings
    upstream_names = [name for name, ls in settings.links.items() if ls.upstream]
    if len(upstream_names) > 1:
        raise ConfigError(f"at most one upstream link is supported; configured: {', '.join(sorted(upstream_names))}")
    used: dict[str, Any] = {}
    links: dict[str, Link] = {}
    upstream: Link | None = None
    outbox: Outbox | None = None
    for link_name, ls in settings.links.items():
        broker = brokers.get(ls.broker) or used.get(ls.broker)
        if broker is None:
            broker = make_broker(ls.broker, settings.brokers[ls.broker], proactor.reactor)
        if ls.broker not in used:
            used[ls.broker] = broker
            if hasattr(broker, "will") and broker.will is None:
                # Fast death notice for our peers (4.x peers never subscribe to it).
                broker.will = (will_topic(proactor.name), will_payload(proactor.name, "connection lost"))
                broker.stop_announcement = will_payload(proactor.name, "stopped")
            if isinstance(broker, Service):
                if broker.name is None:
                    broker.setName(f"broker:{ls.broker}")
                proactor.addService(broker)
        link = Link(
            link_name,
            own_long_name=proactor.name,
            own_short_name=proactor.short_name,
            peer_long_name=ls.peer_long_name,
            peer_short_name=ls.peer_short_name,
            broker=broker,
            codec=proactor.codec,
            listener=listener,
            clock=proactor.reactor,
            ack_timeout_s=ls.ack_timeout_s,
            heartbeat_s=ls.heartbeat_s,
            receive_deadline_s=ls.receive_deadline_s,
            qos=ls.qos,
            upstream=ls.upstream,
            batch_max=ls.batch_max,
            max_frame_bytes=ls.max_frame_bytes,
            compress=ls.compress,
        )
        links[link_name] = link
        proactor.addService(link)
        if ls.upstream:
            upstream = link
            outbox = Outbox(
                store=None,
                link=link,
                codec=proactor.codec,
                window=ls.window,
                on_problem=on_problem,
                park_after=ls.park_after,
                clock=proactor.reactor,
            )
    return used, links, upstream, outbox
