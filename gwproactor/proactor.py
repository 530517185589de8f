"""The :class:`Proactor` service: hosts actors, links to peers over MQTT, and delivers events durably."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any, Callable, Literal, TypeVar, cast

from twisted.application.service import MultiService
from twisted.internet import threads
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure
from zope.interface import implementer

from gwproactor._proactor_actors import ActorFailures
from gwproactor._proactor_events import EventStoreSlot, StoredEvents, type_name as _type_name
from gwproactor._proactor_links import LEGACY_LISTENER_METHODS, LinkListener, build_links
from gwproactor._proactor_surface import API, DEPRECATED
from gwproactor._proactor_shutdown import Shutdown
from gwproactor.actors.router import Router
from gwproactor.config import ProactorSettings
from gwproactor.errors import UnknownLinkError
from gwproactor.interfaces import IActor, IProactor, IProactorHooks
from gwproactor.links.expiry import Expiry
from gwproactor.links.inbox import Inbox
from gwproactor.links.link import Link
from gwproactor.logs import LogLevels, level_from_name
from gwproactor.message import Codec, ProblemEvent, StartupEvent
from gwproactor.ops.clock import use_monotonic_time
from gwproactor.ops.counters import BoundedCounter
from gwproactor.ops.problems import RateLimiter
from gwproactor.ops.systemd import Watch

T = TypeVar("T")
_ProblemType = Literal["error", "warning"]

__all__ = ["API", "DEPRECATED", "Proactor"]


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _read_only(attribute: str, doc: str) -> Any:
    return property(lambda self: getattr(self, attribute), doc=doc)


@implementer(IProactor, IProactorHooks)
class Proactor(MultiService):
    """A SCADA process: live actors on one reactor, linked to peers over MQTT.

    The proactor is a :class:`~twisted.application.service.MultiService`; add it
    to an application (or call ``startService``) and it starts, in order, its
    broker connections, its links and its actors, and stops them in reverse
    order.  Messages sent with :meth:`send` before it starts are queued.

    Events (:meth:`generate_event`) are written to the event store first and sent from there over the
    *upstream* link (at most one), oldest first, with at most ``window`` unacked.  A proactor without an
    upstream link is the top of its tree: its events go to :meth:`handle_event`, like the events it
    receives from downstream peers.

    Construction does no I/O: it stores the settings and builds objects.  The event store is opened
    (created, locked, recovered) by :meth:`open_store`, which :meth:`startService` calls (and the first
    use of :attr:`store`); the web server starts with the proactor when ``settings.http.enabled`` (or
    :meth:`attach_web`); systemd hears about the process only when the runner (or the embedding
    application) calls :meth:`attach_systemd`.

    **Hooks** (what a subclass overrides; :class:`~gwproactor.interfaces.IProactorHooks`):
    :meth:`link_activated`, :meth:`link_deactivated`, :meth:`handle_event`,
    :meth:`handle_message`, and the class attribute :attr:`settings_class`.
    ``startService`` / ``stopService`` may be extended (call the base version).

    **API** (what a subclass or an embedding application calls; :data:`API`):

    * wiring, before start: :attr:`settings`, :attr:`name`, :attr:`short_name`, :attr:`reactor`,
      :attr:`codec`, :meth:`open_store`, :meth:`attach_web`, :meth:`attach_systemd`,
      :meth:`use_log_levels`, :meth:`apply_log_settings`;
    * actors: :meth:`add_actor`, :meth:`get_actor`, :attr:`actor_names`, :meth:`send`,
      :meth:`send_threadsafe`, :meth:`run_blocking`, :meth:`actor_failed`, :meth:`watch`;
    * links: :meth:`get_link`, :meth:`link_states`, :meth:`send_to_link`, :attr:`links`,
      :attr:`upstream`, :attr:`brokers`;
    * events: :meth:`generate_event`, :meth:`requeue_parked`, :meth:`report_problem`;
    * lifecycle: :meth:`privilegedStartService`, :meth:`startService`, :meth:`stopService`, :meth:`shutdown`,
      :meth:`request_shutdown`, :meth:`when_shut_down`, :attr:`shutting_down`, :attr:`exit_code`,
      :attr:`shutdown_reason`;
    * read-only views: :attr:`store`, :attr:`received_ids`, :attr:`outbox`, :attr:`inbox`,
      :attr:`router`, :attr:`counters`, :attr:`event_counts`, :attr:`log_levels`, :attr:`systemd`,
      :attr:`web`, :meth:`health`, :meth:`stats`.

    Everything else is private.  What the links report (transitions, messages, acks, problems) goes to
    a private listener, never to methods a subclass could override by accident; ``link_transition``,
    ``link_message``, ``link_acked`` and ``link_problem`` remain as deprecated aliases (:data:`DEPRECATED`).

    :param settings: the :class:`~gwproactor.config.ProactorSettings`.
    :param reactor: the reactor; defaults to the global reactor (imported when
        the proactor is built, never at module import).
    :param store: an :class:`~gwproactor.interfaces.IEventStore`; by default a
        :class:`~gwproactor.store.FileEventStore` in ``settings.store.directory``
        (resolved under the XDG state directory when unset), opened by :meth:`open_store`.
    :param codec: the :class:`~gwproactor.message.Codec` (register application
        payload types in its registry).
    :param brokers: broker connections by name (an
        :class:`~gwproactor.interfaces.IMQTTClient` each) instead of building them
        from ``settings.brokers``.
    :param restart_policy: the :class:`~gwproactor.actors.supervision.RestartPolicy` of failing actors.
    """

    log = Logger(namespace="gwproactor.proactor")
    name: str  # settings.long_name (a Service's name may be None; a proactor's never is)

    #: The settings class the runner loads from the environment for this application (a hook: override it).
    settings_class: type[ProactorSettings] = ProactorSettings

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method in LEGACY_LISTENER_METHODS:
            if method in cls.__dict__:
                warnings.warn(f"{cls.__qualname__}.{method} overrides a deprecated Proactor method (links report "
                              "to a private listener now); use the hooks of IProactorHooks",
                              DeprecationWarning, stacklevel=2)

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
        self._router = Router(clock=self.reactor)
        self._actor_failures = ActorFailures(self, self._router, restart_policy)
        self._supervisor = self._actor_failures.supervisor
        self._problem_limiter = RateLimiter(clock=self.reactor, max_per_period=5, period_s=60.0)
        self._log_levels = LogLevels()
        self.apply_log_settings()
        # Keyed by TypeName, which peers choose: bounded (see BoundedCounter).
        self._event_counts: Counter = BoundedCounter(max_keys=200)
        self._counters: Counter = Counter()
        self._inbox = Inbox(self)
        self._systemd: Any = None
        self._web: Any = None
        self._watches: list[Watch] = []
        legacy = frozenset(m for m in LEGACY_LISTENER_METHODS if getattr(type(self), m) is not getattr(Proactor, m))
        self._link_listener = LinkListener(self, self._generate_quietly, legacy)
        self._brokers, self._links, self._upstream, self._outbox = build_links(
            self, brokers or {}, self._link_listener, lambda *problem: self.report_problem(*problem)
        )
        self._stores = EventStoreSlot(self, self._outbox)
        if store is not None:
            self._stores.use(store)
        self._events = StoredEvents(self._stores.open, self._outbox, lambda: self.codec,
                                    self.handle_event, self._counters, self.log)
        self._shutdown = Shutdown(self, self._supervisor, self._stores.close)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    router = _read_only("_router", "The :class:`~gwproactor.actors.router.Router` delivering to the actors.")
    links = _read_only("_links", "The links by name (:class:`~gwproactor.links.link.Link`).")
    upstream = _read_only("_upstream", "The upstream link, or None at the top of the tree.")
    brokers = _read_only("_brokers", "The broker connections by name (an IMQTTClient each).")
    outbox = _read_only("_outbox", "The upstream link's :class:`~gwproactor.links.outbox.Outbox`, or None.")
    inbox = _read_only("_inbox", "The :class:`~gwproactor.links.inbox.Inbox` of events from downstream peers.")
    counters = _read_only("_counters", "The proactor's counters (a :class:`collections.Counter`; see :meth:`stats`).")
    event_counts = _read_only("_event_counts", "Events generated and handled, by TypeName.")
    log_levels = _read_only("_log_levels", "The :class:`~gwproactor.logs.LogLevels` applied (:meth:`use_log_levels`).")
    systemd = _read_only("_systemd", "The :class:`~gwproactor.ops.systemd.SystemdService` attached, or None.")
    web = _read_only("_web", "The :class:`~gwproactor.web.server.WebService` attached, or None (until started).")

    # --- construction ----------------------------------------------------------

    def use_log_levels(self, log_levels: LogLevels) -> None:
        """Use ``log_levels`` (whose predicate filters the real log observers) and apply the settings to it."""
        self._log_levels = log_levels
        self.apply_log_settings()

    def apply_log_settings(self) -> None:
        """Apply ``settings.logging`` (base level, per-category levels) to :attr:`log_levels`."""
        logging = self.settings.logging
        self._log_levels.set_default(level_from_name(logging.base_level))
        for category, name in logging.levels.items():
            self._log_levels.set_category(category, level_from_name(name))

    @property
    def store(self) -> Any:
        """The :class:`~gwproactor.interfaces.IEventStore`; the default one opens on first use (:meth:`open_store`)."""
        return self._stores.open()

    @property
    def received_ids(self) -> Any:
        """The :class:`~gwproactor.interfaces.IReceivedIds` of events accepted from downstream (the store's)."""
        self._stores.open()
        return self._stores.received

    def open_store(self) -> Any:
        """Open the event store now, unless it was given or is open already; returns it.

        The default :class:`~gwproactor.store.FileEventStore` is created, locked and recovered here
        (raising :class:`~gwproactor.errors.StoreLocked` if another process holds it).  :meth:`startService`
        calls it; the runner calls it before the reactor runs, so that a store in use is a configuration error.
        """
        return self._stores.open()

    def attach_web(self, web: Any = None) -> Any:
        """Serve the HTTP endpoints with this proactor (it starts and stops with it); returns the service.

        ``web`` defaults to a :class:`~gwproactor.web.server.WebService` on ``settings.http``'s host
        and port.  :meth:`startService` calls it when ``settings.http.enabled``; it builds objects only
        (the port is bound when the service starts), and a second call returns the service attached.
        """
        if self._web is not None:
            return self._web
        if web is None:
            from gwproactor.web.server import WebService

            http = self.settings.http
            web = WebService(self, endpoint=f"tcp:{http.port}:interface={http.host}", reactor=self.reactor)
            web.setName("web")
        self._web = web
        web.setServiceParent(self)
        if not self.running:  # starts after the links and broker connections, before the actors; stops after them
            wired = {*self._links.values(), *self._brokers.values()}
            self.services.remove(web)
            self.services.insert(max((i + 1 for i, s in enumerate(self.services) if s in wired), default=0), web)
        return web

    def attach_systemd(self, systemd: Any = None) -> Any:
        """Tell systemd about this process: ``READY=1`` once started, watchdog pats, ``STATUS=``, ``STOPPING=1``.

        The runner (``gwproactor run``, ``twist gwproactor``) calls it when systemd runs the process
        (``$NOTIFY_SOCKET``); the proactor never does on its own, so an embedded proactor does not speak
        for its host.  ``systemd`` defaults to a :class:`~gwproactor.ops.systemd.SystemdService` on
        ``$NOTIFY_SOCKET`` reporting :meth:`link_states`.  It starts after every child service and stops
        first.  Returns it.
        """
        if systemd is None:
            from gwproactor.ops.systemd import SystemdService, link_status

            systemd = SystemdService(self.reactor, status=link_status(self))
        systemd.watched.extend(self._watches)
        self._systemd = systemd
        if self.running and not systemd.running:
            systemd.startService()
        return systemd

    # --- actors and routing ----------------------------------------------------

    def add_actor(self, actor: Any) -> Any:
        """Host ``actor``; raises :class:`~gwproactor.errors.DuplicateActorError` if its name is taken.

        An actor added while the proactor runs is started at once.  Returns ``actor``.
        """
        if not IActor.providedBy(actor):
            raise TypeError(f"{actor!r} does not provide IActor")
        self._router.add(actor)
        actor.proactor = self
        try:
            self.addService(actor)
        except BaseException:  # undo and re-raise whatever it is (KeyboardInterrupt included)
            self._router.remove(actor.name)
            actor.proactor = None
            raise
        return actor

    def get_actor(self, name: str) -> Any:
        """The actor named ``name``; raises :class:`~gwproactor.errors.UnknownActorError`."""
        return self._router.get(name)

    @property
    def actor_names(self) -> list[str]:
        """Names of the hosted actors."""
        return self._router.names

    def send(self, message: Any) -> None:
        """Route ``message`` to the actor named by its ``Header.Dst``.

        Delivery happens on a later reactor turn, in send order.  Unknown
        destinations are counted as dead letters and logged (rate-limited).
        Must be called from the reactor thread; see :meth:`send_threadsafe`.
        """
        self._router.send(message)

    def send_threadsafe(self, message: Any) -> None:
        """Like :meth:`send`, but callable from any thread (including the reactor thread)."""
        if threadable.isInIOThread():
            self._router.send(message)
        else:
            self.reactor.callFromThread(self._router.send, message)

    def run_blocking(self, f: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred:
        """Run the blocking callable ``f(*args, **kwargs)`` in the reactor's thread pool.

        Returns a Deferred with its result.  Use it for hardware drivers and
        other blocking code; talk back to the reactor with :meth:`send_threadsafe`.
        """
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args, **kwargs)

    def actor_failed(self, actor: Any, failure: Failure) -> Deferred:
        """Tell the supervisor that ``actor`` failed (actors call it for failures in their own timers).

        Within the restart policy the actor is restarted; past it the proactor
        shuts down with exit status 1.
        """
        if self.shutting_down:
            return succeed("ignored")
        return self._supervisor.failed(actor, failure)

    # --- links -------------------------------------------------------------------

    def get_link(self, name: str) -> Link:
        """The link named ``name``; raises :class:`~gwproactor.errors.UnknownLinkError`."""
        try:
            return self._links[name]
        except KeyError:
            raise UnknownLinkError(f"no link is named {name!r}; links: {', '.join(self._links) or 'none'}") from None

    def link_states(self) -> dict[str, str]:
        """Each link's communication state by link name."""
        return {name: link.state.value for name, link in self._links.items()}

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

    # --- what the links report (deprecated aliases; the links tell a private listener) ----------------------

    def link_transition(self, link: Link, transition: Any) -> None:
        """Deprecated: a link changed state (comm events, outbox, activation hooks); override the hooks instead."""
        self._link_listener.transition(link, transition)

    def link_message(self, link: Link, message: Any) -> Any:
        """Deprecated: a message from a peer (events deduplicated, stored or handled); override the hooks instead."""
        return self._link_listener.message(link, message)

    def link_acked(self, link: Link, message_id: str, rtt: Any) -> None:
        """Deprecated: an ack from a peer (an upstream event leaves the store)."""
        self._link_listener.acked(link, message_id, rtt)

    def link_problem(self, link: Link, problem_type: str, summary: str, details: str) -> None:
        """Deprecated: a link reported a problem (counted, turned into a problem event)."""
        self._link_listener.problem(link, problem_type, summary, details)

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
        self._event_counts[f"handled.{event.type_name if hasattr(event, 'type_name') else type(event).TYPE_NAME}"] += 1
        return None

    def handle_message(self, link: Link, message: Any) -> Any:
        """Hook: a non-event message from a peer.  The default logs and counts it as unhandled."""
        self._counters["unhandled_messages"] += 1
        self.log.info(
            "unhandled {message_type} message from link {link_name}",
            message_type=message.header.message_type,
            link_name=link.link_name,
        )
        return None


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
        self._event_counts[_type_name(event)] += 1
        if self._upstream is None:
            return maybeDeferred(self.handle_event, None, event).addCallback(lambda _: event.message_id)
        return self._events.append(event)

    def _store_event(self, event: Any) -> Deferred:
        """Append ``event`` to the store (the inbox forwards events from downstream with it)."""
        return self._events.append(event)

    def requeue_parked(self, event_ids: list[str] | None = None) -> Deferred:
        """Make parked events (all, or those named) pending again and deliver them.

        With an upstream link they are sent again like any stored event.  At the top of the
        tree (no upstream link) they are handed to :meth:`handle_event` again, with ``link``
        ``None``, and parked again if it still fails.  Fires with the ids re-queued.
        """
        return self._events.requeue(event_ids, top_of_tree=self._upstream is None)

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
        self._counters[f"problems.{problem_type}"] += 1
        if not self._problem_limiter.allow(summary):
            self._counters["problems_suppressed"] += 1
            return succeed(None)
        suppressed = self._problem_limiter.take_suppressed(summary)
        if suppressed:
            details = f"{details}\n({suppressed} more like this were not reported)"
        kind = cast(_ProblemType, problem_type)  # ProblemEvent's validator refuses anything else (ValueError)
        event = ProblemEvent(src=self.name, problem_type=kind, summary=summary[:500], details=details[:5000])
        d = self.generate_event(event)
        d.addErrback(lambda f: self.log.failure("could not record a problem event", f))
        return d

    # --- lifecycle --------------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """Under ``twistd``, before privileges are dropped: attach the web server (``settings.http.enabled``) so
        that it binds its port now, then let every child service do the same."""
        if self.settings.http.enabled:
            self.attach_web()
        super().privilegedStartService()

    def startService(self) -> None:
        """Open the store, start broker connections, links, the web server and actors (in that order), record a
        startup event, begin delivery.

        First, unless ``settings.monotonic_time`` is False, the reactor's timers move to the monotonic
        clock (:func:`~gwproactor.ops.clock.use_monotonic_time`; see ``docs/embedding.rst``).
        """
        if self.settings.monotonic_time:
            use_monotonic_time(self.reactor)
        self.open_store()
        self._stores.hold_received_writes(list(self._brokers.values()))
        if self.settings.http.enabled:
            self.attach_web()
        if self._outbox is not None:
            # The TTLs the event classes registered by now declare (applications register at import).
            self._outbox.expiry = Expiry.from_registry(self.codec.registry.classes())
        if not self._links:
            self.log.warn("{name} has no links: it will neither send nor receive anything over MQTT "
                          "(configure one with <PREFIX>_LINKS__<NAME>__PEER_LONG_NAME and __PEER_SHORT_NAME)",
                          name=self.name)
        super().startService()
        self._router.start()
        self._generate_quietly(StartupEvent(src=self.name))
        if self._upstream is None:
            # Events re-queued from the parked area while we were stopped (gwproactor store requeue).
            pending = self.store.pending_ids()
            if pending:
                self._events.deliver_stored(pending)
        if self._systemd is not None:
            self._systemd.startService()

    def watch(self, name: str, timeout_s: float) -> Any:
        """A pat callable for something the systemd watchdog should wait on (an actor's main loop ...).

        Call the result at least every ``timeout_s`` seconds; when it stops being
        called, the watchdog stops patting and systemd restarts the process.
        Without systemd (:meth:`attach_systemd` not called) the pat does nothing, unless
        systemd is attached later: then it is watched from the watchdog's start.
        """
        if self._systemd is not None:
            return self._systemd.watch(name, timeout_s)
        w = Watch(name, timeout_s, self.reactor)
        self._watches.append(w)
        return w

    def stopService(self) -> Deferred:
        """Shut down gracefully (see :meth:`shutdown`); the Deferred fires with the exit code when all has stopped.

        Subclasses that override it call the base version; every shutdown path
        (a signal, :meth:`request_shutdown`, the service parent stopping) runs it.
        """
        reason, exit_code = self._shutdown.requested or ("service stopped", 0)
        return self._shutdown.begin(reason, exit_code)

    @property
    def shutting_down(self) -> bool:
        """True once a shutdown has begun."""
        return self._shutdown.started

    @property
    def exit_code(self) -> int:
        """The exit status of the shutdown (0 until one ends otherwise)."""
        return self._shutdown.exit_code

    @property
    def shutdown_reason(self) -> str | None:
        """Why the proactor shut down (None until it begins to)."""
        return self._shutdown.reason

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
        return self._shutdown.when_done()

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
        if not self._shutdown.started and self._shutdown.requested is None:
            self._shutdown.requested = (reason, exit_code)
            return self.stopService()
        return self._shutdown.begin(reason, exit_code)

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
            "router": self._router.stats.as_dict(),
            "queued": self._router.queued,
            "events_generated": dict(self._event_counts),
            "counters": dict(self._counters),
            "links": {name: link.summary() for name, link in self._links.items()},
            "outbox": self._outbox.summary() if self._outbox is not None else None,
            "store": self.store.stats(),
            "brokers": {name: _broker_stats(b) for name, b in self._brokers.items()},
            "supervision": self._supervisor.stats(),
            "problems": self._problem_limiter.stats(),
        }


def _broker_stats(broker: Any) -> Any:
    stats = getattr(broker, "stats", None)
    return stats() if callable(stats) else None
