"""The :class:`Proactor` service: hosts actors, links to peers over MQTT, and delivers events durably."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, TypeVar

from twisted.application.service import MultiService, Service
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure
from zope.interface import implementer

from gwproactor.actors.router import Router
from gwproactor.actors.supervision import RestartPolicy, Supervisor
from gwproactor.config import ProactorSettings
from gwproactor.errors import ConfigError, DecodeError, EncodeError, UnknownLinkError
from gwproactor.interfaces import IActor, ILinkListener, IProactor
from gwproactor.links.expiry import Expiry
from gwproactor.links.inbox import Inbox
from gwproactor.links.link import Link
from gwproactor.links.outbox import Outbox
from gwproactor.mqtt.settings import make_broker
from gwproactor.logs import LogLevels, level_from_name
from gwproactor.ops.clock import use_monotonic_time
from gwproactor.ops.counters import BoundedCounter
from gwproactor.ops.problems import RateLimiter
from gwproactor.ops.systemd import SystemdService, Watch, link_status, notify_socket_from_env
from gwproactor.message import (
    will_payload,
    will_topic,
    COMM_EVENT_TYPES,
    Codec,
    DBGPayload,
    Event,
    EventBatch,
    ProblemEvent,
    ShutdownEvent,
    StartupEvent,
)

T = TypeVar("T")

__all__ = ["Proactor"]


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@implementer(IProactor, ILinkListener)
class Proactor(MultiService):
    """A SCADA process: live actors on one reactor, linked to peers over MQTT.

    The proactor is a :class:`~twisted.application.service.MultiService`; add it
    to an application (or call ``startService``) and it starts, in order, its
    broker connections, its links and its actors, and stops them in reverse
    order.  Messages sent with :meth:`send` before it starts are queued.

    Events (:meth:`generate_event`) are written to the event store first and
    sent from there over the *upstream* link (at most one), oldest first, with
    at most ``window`` unacked.  A proactor without an upstream link is the top
    of its tree: its events go to :meth:`handle_event`, like the events it
    receives from downstream peers.

    Subclasses override the hooks :meth:`link_activated`,
    :meth:`link_deactivated`, :meth:`handle_event` and :meth:`handle_message`.

    :param settings: the :class:`~gwproactor.config.ProactorSettings`.
    :param reactor: the reactor; defaults to the global reactor (imported when
        the proactor is built, never at module import).
    :param store: an :class:`~gwproactor.interfaces.IEventStore`; by default a
        :class:`~gwproactor.store.FileEventStore` in ``settings.store.directory``
        (resolved under the XDG state directory when unset).
    :param codec: the :class:`~gwproactor.message.Codec` (register application
        payload types in its registry).
    :param brokers: broker connections by name (an
        :class:`~gwproactor.interfaces.IMQTTClient` each) instead of building them
        from ``settings.brokers``.
    """

    log = Logger(namespace="gwproactor.proactor")

    def __init__(
        self,
        settings: ProactorSettings,
        *,
        reactor: Any = None,
        store: Any = None,
        codec: Any = None,
        brokers: dict[str, Any] | None = None,
        restart_policy: Any = None,
    ) -> None:
        super().__init__()
        if not isinstance(settings, ProactorSettings):
            raise TypeError(f"Proactor needs ProactorSettings, got {type(settings).__name__}")
        self.settings = settings
        self.name = settings.long_name
        self.short_name = settings.short_name
        self.reactor = reactor if reactor is not None else _default_reactor()
        self.codec = codec if codec is not None else Codec()
        self.router = Router(clock=self.reactor, on_failure=self._actor_failed)
        self.supervisor = Supervisor(
            clock=self.reactor,
            policy=restart_policy if restart_policy is not None else RestartPolicy(),
            on_escalate=self._actor_escalated,
            on_restart=self._actor_restarted,
            redeliver=self.router.send,
        )
        self.router.supervisor = self.supervisor
        self.problem_limiter = RateLimiter(clock=self.reactor, max_per_period=5, period_s=60.0)
        self.log_levels = LogLevels()
        self.apply_log_settings()
        # Keyed by TypeName, which peers choose: bounded (see BoundedCounter).
        self.event_counts: Counter = BoundedCounter(max_keys=200)
        self.counters: Counter = Counter()
        self.inbox = Inbox(self)
        self.exit_code = 0
        self.shutdown_reason: str | None = None
        self._shutdown: Deferred | None = None
        self._requested: tuple[str, int] | None = None
        self._shut_down_waiters: list[Deferred] = []
        self.store = store if store is not None else self._open_store()
        received = getattr(self.store, "received", None)
        if received is None:
            from gwproactor.store import MemoryReceivedIds

            received = MemoryReceivedIds(window=settings.store.received_window)
        self.received_ids = received
        self.brokers: dict[str, Any] = {}
        self.links: dict[str, Link] = {}
        self.upstream: Link | None = None
        self.outbox: Outbox | None = None
        self._build_links(brokers or {})
        self.systemd: Any = None
        if notify_socket_from_env():
            # Not a child service: it starts after every child (READY=1 means everything has
            # started) and stops first (STOPPING=1 as the shutdown begins).
            self.systemd = SystemdService(self.reactor, status=link_status(self))
        self.web: Any = None
        if settings.http.enabled:
            from gwproactor.web.server import WebService

            self.web = WebService(
                self, endpoint=f"tcp:{settings.http.port}:interface={settings.http.host}", reactor=self.reactor
            )
            self.web.setName("web")
            self.addService(self.web)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # --- construction ----------------------------------------------------------

    def use_log_levels(self, log_levels: LogLevels) -> None:
        """Use ``log_levels`` (whose predicate filters the real log observers) and apply the settings to it."""
        self.log_levels = log_levels
        self.apply_log_settings()

    def apply_log_settings(self) -> None:
        """Apply ``settings.logging`` (base level, per-category levels) to :attr:`log_levels`."""
        logging = self.settings.logging
        self.log_levels.set_default(level_from_name(logging.base_level))
        for category, name in logging.levels.items():
            self.log_levels.set_category(category, level_from_name(name))

    def _open_store(self) -> Any:
        from gwproactor.store import FileEventStore

        s = self.settings.resolve_paths().store
        return FileEventStore.open(
            str(s.directory),
            clock=self.reactor,
            sync=s.sync_policy,
            group_ms=s.group_commit_ms,
            segment_bytes=s.segment_bytes,
            max_bytes=s.max_bytes,
            full_policy=s.full_policy,
            on_problem=self._store_problem,
            received_window=s.received_window,
            fsync_in_thread=s.fsync_in_thread and IReactorFromThreads.providedBy(self.reactor),
        )

    def _build_links(self, brokers: dict[str, Any]) -> None:
        upstream = [name for name, ls in self.settings.links.items() if ls.upstream]
        if len(upstream) > 1:
            raise ConfigError(f"at most one upstream link is supported; configured: {', '.join(sorted(upstream))}")
        for link_name, ls in self.settings.links.items():
            broker = brokers.get(ls.broker) or self.brokers.get(ls.broker)
            if broker is None:
                broker = make_broker(ls.broker, self.settings.brokers[ls.broker], self.reactor)
            if ls.broker not in self.brokers:
                self.brokers[ls.broker] = broker
                if hasattr(broker, "will") and broker.will is None:
                    # Fast death notice for our peers (4.x peers never subscribe to it).
                    broker.will = (will_topic(self.name), will_payload(self.name, "connection lost"))
                    broker.stop_announcement = will_payload(self.name, "stopped")
                if isinstance(broker, Service):
                    if broker.name is None:
                        broker.setName(f"broker:{ls.broker}")
                    self.addService(broker)
            link = Link(
                link_name,
                own_long_name=self.name,
                own_short_name=self.short_name,
                peer_long_name=ls.peer_long_name,
                peer_short_name=ls.peer_short_name,
                broker=broker,
                codec=self.codec,
                listener=self,
                clock=self.reactor,
                ack_timeout_s=ls.ack_timeout_s,
                heartbeat_s=ls.heartbeat_s,
                receive_deadline_s=ls.receive_deadline_s,
                qos=ls.qos,
                upstream=ls.upstream,
                batch_max=ls.batch_max,
                max_frame_bytes=ls.max_frame_bytes,
                compress=ls.compress,
            )
            self.links[link_name] = link
            self.addService(link)
            if ls.upstream:
                self.upstream = link
                self.outbox = Outbox(
                    store=self.store,
                    link=link,
                    codec=self.codec,
                    window=ls.window,
                    on_problem=self._problem_from,
                    park_after=ls.park_after,
                )

    # --- actors and routing ----------------------------------------------------

    def add_actor(self, actor: Any) -> Any:
        """Host ``actor``; raises :class:`~gwproactor.errors.DuplicateActorError` if its name is taken.

        An actor added while the proactor runs is started at once.  Returns ``actor``.
        """
        if not IActor.providedBy(actor):
            raise TypeError(f"{actor!r} does not provide IActor")
        self.router.add(actor)
        actor.proactor = self
        try:
            self.addService(actor)
        except BaseException:
            self.router.remove(actor.name)
            actor.proactor = None
            raise
        return actor

    def get_actor(self, name: str) -> Any:
        """The actor named ``name``; raises :class:`~gwproactor.errors.UnknownActorError`."""
        return self.router.get(name)

    @property
    def actor_names(self) -> list[str]:
        """Names of the hosted actors."""
        return self.router.names

    def send(self, message: Any) -> None:
        """Route ``message`` to the actor named by its ``Header.Dst``.

        Delivery happens on a later reactor turn, in send order.  Unknown
        destinations are counted as dead letters and logged (rate-limited).
        Must be called from the reactor thread; see :meth:`send_threadsafe`.
        """
        self.router.send(message)

    def send_threadsafe(self, message: Any) -> None:
        """Like :meth:`send`, but callable from any thread (including the reactor thread)."""
        if threadable.isInIOThread():
            self.router.send(message)
        else:
            self.reactor.callFromThread(self.router.send, message)

    def run_blocking(self, f: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred:
        """Run the blocking callable ``f(*args, **kwargs)`` in the reactor's thread pool.

        Returns a Deferred with its result.  Use it for hardware drivers and
        other blocking code; talk back to the reactor with :meth:`send_threadsafe`.
        """
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args, **kwargs)

    def _actor_failed(self, actor: Any, message: Any, failure: Failure) -> None:
        """A delivery to ``actor`` failed: report it and let the supervisor decide."""
        self.report_problem(
            "error",
            f"actor {actor.name} failed on a {message.header.message_type} message",
            failure.getTraceback(detail="brief")[-2000:],
        )
        self.actor_failed(actor, failure)

    def actor_failed(self, actor: Any, failure: Failure) -> Deferred:
        """Tell the supervisor that ``actor`` failed (actors call it for failures in their own timers).

        Within the restart policy the actor is restarted; past it the proactor
        shuts down with exit status 1.
        """
        if self.shutting_down:
            return succeed("ignored")
        return self.supervisor.failed(actor, failure)

    def _actor_restarted(self, actor: Any, count: int, failure: Failure) -> None:
        self.counters["actor_restarts"] += 1
        self.report_problem("warning", f"actor {actor.name} restarted ({count} in the policy period)", failure.getErrorMessage())

    def _actor_escalated(self, actor: Any, reason: str) -> None:
        self.counters["actor_escalations"] += 1
        self.log.critical("actor {actor} keeps failing: {reason}; shutting down", actor=actor.name, reason=reason)
        self.report_problem("error", f"actor {actor.name} keeps failing; shutting down", reason)
        self.request_shutdown(f"actor {actor.name} keeps failing: {reason}", exit_code=1)

    # --- links -------------------------------------------------------------------

    def get_link(self, name: str) -> Link:
        """The link named ``name``; raises :class:`~gwproactor.errors.UnknownLinkError`."""
        try:
            return self.links[name]
        except KeyError:
            raise UnknownLinkError(f"no link is named {name!r}; links: {', '.join(self.links) or 'none'}") from None

    def link_states(self) -> dict[str, str]:
        """Each link's communication state by link name."""
        return {name: link.state.value for name, link in self.links.items()}

    def send_to_link(self, link_name: str, payload: Any, *, ack_required: bool | None = None) -> Deferred:
        """Send ``payload`` to the peer of link ``link_name``.

        For an ack-required payload the Deferred fires with the round-trip time
        on the peer's ack, or fails with AckTimeout / LinkDown.  Events should go
        through :meth:`generate_event` instead, which stores them first.
        """
        try:
            link = self.get_link(link_name)
        except UnknownLinkError:
            return fail()
        return link.send(payload, ack_required=ack_required)

    # ILinkListener

    def link_transition(self, link: Link, transition: Any) -> None:
        """Generate the comm events of a transition and call the activation hooks.

        Order matters: the outbox hears that the link left active before the transition's
        comm events are stored (else it would send them on the dead link, and again after
        reactivation), and it is activated after they are stored (they go with the backlog).
        """
        if transition.left_active and link is self.upstream and self.outbox is not None:
            self.outbox.deactivated()
        for type_name in transition.comm_events:
            event = COMM_EVENT_TYPES[type_name](src=self.name, peer_name=link.link_name)
            self._generate_quietly(event)
        if transition.entered_active:
            link.announce()
            if link is self.upstream and self.outbox is not None:
                self.outbox.activated()
            self._call_hook(self.link_activated, link)
        elif transition.left_active:
            self._call_hook(self.link_deactivated, link, transition.input.value)

    def link_message(self, link: Link, message: Any) -> Any:
        """Accept a message from a peer: events are deduplicated, stored or handled; others go to :meth:`handle_message`."""
        payload = message.payload
        if isinstance(payload, Event):
            return self.inbox.accept_event(link, payload)
        if isinstance(payload, EventBatch):
            return self.inbox.accept_batch(link, payload)
        if isinstance(payload, DBGPayload):
            return self.inbox.handle_dbg(link, message)
        self.counters["messages_received"] += 1
        return self.handle_message(link, message)

    def link_acked(self, link: Link, message_id: str, rtt: Any) -> None:
        """An ack arrived on ``link``: an upstream event leaves the store."""
        if link is self.upstream and self.outbox is not None:
            self.outbox.acked(message_id)

    def link_problem(self, link: Link, problem_type: str, summary: str, details: str) -> None:
        """A link reported a problem: counted and turned into a problem event."""
        self.counters[f"link_problems.{link.link_name}"] += 1
        self.report_problem(problem_type, summary, details)

    # --- hooks for applications ----------------------------------------------------------

    def link_activated(self, link: Link) -> None:
        """Hook: ``link`` became active."""

    def link_deactivated(self, link: Link, reason: str) -> None:
        """Hook: ``link`` left active (``reason`` is the input that caused it)."""

    def handle_event(self, link: Link | None, event: Any) -> Any:
        """Hook: an event arrived from a downstream peer (``link``), or was generated here with no upstream (``None``).

        Return ``None`` or a Deferred; the event is acked (and remembered for
        deduplication) when it fires.  The default only counts it.
        """
        self.event_counts[f"handled.{event.type_name if hasattr(event, 'type_name') else type(event).TYPE_NAME}"] += 1
        return None

    def handle_message(self, link: Link, message: Any) -> Any:
        """Hook: a non-event message from a peer.  The default logs and counts it as unhandled."""
        self.counters["unhandled_messages"] += 1
        self.log.info(
            "unhandled {message_type} message from link {link_name}",
            message_type=message.header.message_type,
            link_name=link.link_name,
        )
        return None

    def _call_hook(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            result = hook(*args)
        except BaseException:
            self.log.failure("hook {hook} failed", hook=hook.__name__)
            return
        if isinstance(result, Deferred):
            result.addErrback(lambda f: self.log.failure("hook {hook} failed", f, hook=hook.__name__))

    # --- events --------------------------------------------------------------------------

    def generate_event(self, event: Any) -> Deferred:
        """Record ``event`` (an :class:`~gwproactor.message.Event`) for delivery upstream.

        With an upstream link, the event is appended to the store first; the
        Deferred fires with its id once it is durable under the store's sync
        policy (it fails with :class:`~gwproactor.errors.StoreFull` /
        :class:`~gwproactor.errors.StoreClosed` if the store refuses it), and
        the outbox sends it when the link is active.  Without an upstream link
        the event goes to :meth:`handle_event` and the Deferred fires with its
        result.
        """
        self.event_counts[_type_name(event)] += 1
        if self.upstream is None:
            return maybeDeferred(self.handle_event, None, event).addCallback(lambda _: event.message_id)
        return self._store_event(event)

    def _store_event(self, event: Any) -> Deferred:
        try:
            data = self.codec.encode_payload(event)
        except (EncodeError, DecodeError, TypeError, ValueError):
            return fail()
        event_id = event.message_id
        priority = getattr(event, "PRIORITY", "normal")
        d = self.store.append(event_id, data)
        early = self.outbox is not None and not d.called
        if early:
            # The record is written (not yet synced): it may go out now, in parallel
            # with the fsync.  The caller's Deferred still waits for durability; an
            # event lost in a crash before the fsync was never promised.
            self.outbox.added(event_id, priority)
        return d.addCallback(self._event_durable, event_id, priority, not early)

    def _event_durable(self, result: Any, event_id: str, priority: str, tell_outbox: bool) -> str:
        if tell_outbox and self.outbox is not None:
            self.outbox.added(event_id, priority)
        return event_id

    def requeue_parked(self, event_ids: list[str] | None = None) -> Deferred:
        """Make parked events (all, or those named) pending again and deliver them.

        With an upstream link they are sent again like any stored event.  At the top of the
        tree (no upstream link) they are handed to :meth:`handle_event` again, with ``link``
        ``None``, and parked again if it still fails.  Fires with the ids re-queued.
        """
        return self.store.requeue(event_ids).addCallback(self._requeued)

    def _requeued(self, event_ids: list[str]) -> list[str]:
        if self.outbox is not None:
            for event_id in event_ids:
                self.outbox.added(event_id)
        elif self.upstream is None:
            self._deliver_stored(event_ids)
        return event_ids

    def _deliver_stored(self, event_ids: list[str]) -> None:
        """Without an upstream link: hand stored (re-queued) events to :meth:`handle_event`, ack or park each."""
        for event_id in event_ids:
            try:
                event = self.codec.decode_payload(self.store.read(event_id))
            except Exception as e:
                self.log.error("stored event {event_id} cannot be read: {error}", event_id=event_id, error=str(e))
                continue
            d = maybeDeferred(self.handle_event, None, event)
            d.addCallbacks(self._stored_handled, self._stored_refused, (event_id,), None, (event_id,))

    def _stored_handled(self, _: Any, event_id: str) -> None:
        self.store.ack(event_id)

    def _stored_refused(self, failure: Failure, event_id: str) -> None:
        self.counters["events_parked"] += 1
        self.log.failure("handle_event refused re-queued event {event_id}; parked again", failure, event_id=event_id)
        try:
            self.store.park(event_id, f"handle_event failed: {failure.getErrorMessage()}"[:1000])
        except Exception:
            self.log.failure("could not park event {event_id} again", event_id=event_id)

    def _generate_quietly(self, event: Any) -> None:
        d = self.generate_event(event)
        d.addErrback(
            lambda f: self.log.failure("could not record a {type_name} event", f, type_name=_type_name(event))
        )

    def report_problem(self, problem_type: str, summary: str, details: str = "") -> Deferred:
        """Log a problem and record it as a ``gridworks.event.problem`` event.

        Rate-limited per summary (5 a minute): the rest are counted, logged at
        debug level, and the next report that goes out says how many were suppressed.
        """
        self.counters[f"problems.{problem_type}"] += 1
        if not self.problem_limiter.allow(summary):
            self.counters["problems_suppressed"] += 1
            return succeed(None)
        suppressed = self.problem_limiter.take_suppressed(summary)
        if suppressed:
            details = f"{details}\n({suppressed} more like this were not reported)"
        event = ProblemEvent(src=self.name, problem_type=problem_type, summary=summary[:500], details=details[:5000])
        d = self.generate_event(event)
        d.addErrback(lambda f: self.log.failure("could not record a problem event", f))
        return d

    def _problem_from(self, problem_type: str, summary: str, details: str) -> None:
        self.report_problem(problem_type, summary, details)

    def _store_problem(self, summary: str, details: str) -> None:
        self.log.warn("event store: {summary}: {details}", summary=summary, details=details)
        self.counters["store_problems"] += 1
        # Reported on the next reactor turn: the store may be inside append().
        self.reactor.callLater(0, self._store_problem_event, summary, details)

    def _store_problem_event(self, summary: str, details: str) -> None:
        if self.store is not None:
            self.report_problem("warning", f"event store: {summary}", details)

    # --- lifecycle --------------------------------------------------------------------------

    def startService(self) -> None:
        """Start broker connections, links and actors (in that order), record a startup event, begin delivery.

        First, unless ``settings.monotonic_time`` is False, the reactor's timers move to the monotonic
        clock (:func:`~gwproactor.ops.clock.use_monotonic_time`; see ``docs/embedding.rst``).
        """
        if self.settings.monotonic_time:
            use_monotonic_time(self.reactor)
        if self.outbox is not None:
            # The TTLs the event classes registered by now declare (applications register at import).
            self.outbox.expiry = Expiry.from_registry(self.codec.registry.classes())
        if not self.links:
            self.log.warn("{name} has no links: it will neither send nor receive anything over MQTT "
                          "(configure one with <PREFIX>_LINKS__<NAME>__PEER_LONG_NAME and __PEER_SHORT_NAME)",
                          name=self.name)
        super().startService()
        self.router.start()
        self._generate_quietly(StartupEvent(src=self.name))
        if self.upstream is None:
            # Events re-queued from the parked area while we were stopped (gwproactor store requeue).
            pending = self.store.pending_ids()
            if pending:
                self._deliver_stored(pending)
        if self.systemd is not None:
            self.systemd.startService()

    def watch(self, name: str, timeout_s: float) -> Any:
        """A pat callable for something the systemd watchdog should wait on (an actor's main loop ...).

        Call the result at least every ``timeout_s`` seconds; when it stops being
        called, the watchdog stops patting and systemd restarts the process.
        Without systemd (no ``NOTIFY_SOCKET``) the pat does nothing.
        """
        if self.systemd is not None:
            return self.systemd.watch(name, timeout_s)
        return Watch(name, timeout_s, self.reactor)

    def stopService(self) -> Deferred:
        """Shut down gracefully (see :meth:`shutdown`); the Deferred fires with the exit code when all has stopped.

        Subclasses that override it call the base version; every shutdown path
        (a signal, :meth:`request_shutdown`, the service parent stopping) runs it.
        """
        reason, exit_code = self._requested or ("service stopped", 0)
        return self._begin_shutdown(reason, exit_code)

    @property
    def shutting_down(self) -> bool:
        """True once a shutdown has begun."""
        return self._shutdown is not None

    def request_shutdown(self, reason: str, exit_code: int = 0) -> None:
        """Ask for an orderly shutdown; callable from any thread and from any actor.

        The runner (``gwproactor run``, ``twist gwproactor``) stops the reactor and
        exits with ``exit_code`` when it is done; an embedding application waits on
        :meth:`when_shut_down`.
        """
        if not threadable.isInIOThread():
            self.reactor.callFromThread(self.request_shutdown, reason, exit_code)
            return
        self.shutdown(reason, exit_code)

    def when_shut_down(self) -> Deferred:
        """A Deferred that fires with the exit code once a shutdown has completed."""
        d: Deferred = Deferred()
        if self._shutdown is not None and self._shutdown.called:
            d.callback(self.exit_code)
        else:
            self._shut_down_waiters.append(d)
        return d

    def shutdown(self, reason: str = "requested", exit_code: int = 0) -> Deferred:
        """Shut down in order, once (later calls wait for the first); fires with the exit code.

        Runs :meth:`stopService` (so subclasses' overrides run): stop taking new
        work (the router stops delivering), let in-flight acks arrive for up to
        ``settings.shutdown_grace_s``, record a shutdown event in the store, stop
        the hosted services in reverse order (actors, links, broker connections,
        which send MQTT DISCONNECT), then sync and close the store.  Each service
        (and the store) gets ``settings.service_stop_timeout_s`` to stop; one that
        does not is logged by name and left behind, and the exit code becomes 1.
        """
        if self._shutdown is None and self._requested is None:
            self._requested = (reason, exit_code)
            return self.stopService()
        return self._begin_shutdown(reason, exit_code)

    def _begin_shutdown(self, reason: str, exit_code: int) -> Deferred:
        if self._shutdown is None:
            self.exit_code = exit_code
            self.shutdown_reason = reason
            self._shutdown = Deferred.fromCoroutine(self._graceful(reason))
            self._shutdown.addBoth(self._shut_down)
        d: Deferred = Deferred()
        self._shutdown.addBoth(lambda r: (d.callback(self.exit_code), r)[1])
        return d

    def _shut_down(self, result: Any) -> None:
        if isinstance(result, Failure):
            self.log.failure("shutdown failed", result)
            self.exit_code = self.exit_code or 1
        waiters, self._shut_down_waiters = self._shut_down_waiters, []
        for d in waiters:
            d.callback(self.exit_code)

    async def _graceful(self, reason: str) -> None:
        from twisted.internet.task import deferLater

        self.log.info("{name} shutting down: {reason}", name=self.name, reason=reason)
        self.router.stop()
        self.supervisor.stop()
        if self.systemd is not None and self.systemd.running:
            self.systemd.stopService()
        if self.running:
            deadline = self.reactor.seconds() + self.settings.shutdown_grace_s
            while self._in_flight() and self.reactor.seconds() < deadline:
                await deferLater(self.reactor, 0.02, lambda: None)
            event = ShutdownEvent(src=self.name, reason=reason)
            try:
                d = self.generate_event(event)
                d.addTimeout(max(self.settings.shutdown_grace_s, 1.0), self.reactor)
                await d
            except BaseException:
                self.log.failure("could not record the shutdown event")
        Service.stopService(self)
        for service in reversed(list(self)):
            name = service.name or repr(service)
            await self._stop_within(service.stopService, f"service {name!r} ({type(service).__name__})", name)
        await self._stop_within(self.store.close, "the event store", "event store")
        self.log.info("{name} stopped", name=self.name)

    async def _stop_within(self, stop: Callable[[], Any], what: str, service: str) -> None:
        """Run ``stop()`` and wait for it at most ``settings.service_stop_timeout_s``; past that, go on (exit status 1)."""
        timeout_s = self.settings.service_stop_timeout_s
        d = maybeDeferred(stop)
        d.addTimeout(timeout_s, self.reactor)
        try:
            await d
        except defer.TimeoutError:
            self.counters["stop_timeouts"] += 1
            self.exit_code = self.exit_code or 1
            self.log.error(
                "{what} did not stop within {timeout_s} s; shutting down without waiting for it",
                what=what,
                service=service,
                timeout_s=timeout_s,
            )
        except BaseException:
            self.log.failure("stopping {what} failed", what=what, service=service)

    def _in_flight(self) -> int:
        return sum(link.awaiting_acks for link in self.links.values() if link.is_active)

    # --- observability -------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``(ok, details)``: ok when every link is active."""
        states = self.link_states()
        ok = all(state == "active" for state in states.values())
        return ok, {"name": self.name, "ok": ok, "links": states}

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the proactor's counters."""
        return {
            "name": self.name,
            "router": self.router.stats.as_dict(),
            "queued": self.router.queued,
            "events_generated": dict(self.event_counts),
            "counters": dict(self.counters),
            "links": {name: link.summary() for name, link in self.links.items()},
            "outbox": self.outbox.summary() if self.outbox is not None else None,
            "store": self.store.stats(),
            "brokers": {name: _broker_stats(b) for name, b in self.brokers.items()},
            "supervision": self.supervisor.stats(),
            "problems": self.problem_limiter.stats(),
        }


def _type_name(event: Any) -> str:
    name = getattr(event, "type_name", None)
    return name if isinstance(name, str) else type(event).TYPE_NAME


def _broker_stats(broker: Any) -> Any:
    stats = getattr(broker, "stats", None)
    return stats() if callable(stats) else None
