"""The zope.interface contracts between gwproactor's parts.

Every implementation (and every fake in :mod:`gwproactor_test`) is checked
against these with :func:`zope.interface.verify.verifyObject` in the tests.
"""

from __future__ import annotations

from twisted.application.service import IService
from zope.interface import Attribute, Interface


class IActor(IService):
    """A live actor hosted by a proactor.

    Lifecycle comes from :class:`twisted.application.service.IService`
    (``startService`` / ``stopService``); ``name`` is the routing name.
    """

    proactor = Attribute(
        "The hosting :class:`IProactor`: set by ``Proactor.add_actor``, ``None`` until then (and again if adding"
        " it failed)."
    )

    def receive(message):
        """Handle one :class:`~gwproactor.message.Message` routed to this actor.

        May return ``None`` or a Deferred.  An exception (or a failed Deferred)
        is logged, counted and reported; it never stops the proactor.
        """


class IProactor(Interface):
    """What actors and applications may ask of their proactor."""

    name = Attribute("The proactor's long name (``Src`` of what it sends).")
    reactor = Attribute("The injected reactor.")

    def add_actor(actor):
        """Host ``actor`` (an :class:`IActor`); raise DuplicateActorError if the name is taken."""

    def get_actor(name):
        """Return the actor named ``name``; raise UnknownActorError if there is none."""

    def send(message):
        """Route ``message`` to the actor named by ``message.header.dst`` (FIFO per sender)."""

    def send_threadsafe(message):
        """Like :meth:`send`, callable from any thread."""

    codec = Attribute("The :class:`ICodec` of the proactor's messages.")

    def generate_event(event):
        """Record ``event`` for delivery upstream; the Deferred fires once it is durable."""

    def report_problem(problem_type, summary, details):
        """Log a problem and record it as a problem event (rate-limited); returns a Deferred."""

    def request_shutdown(reason, exit_code=0):
        """Ask for an orderly shutdown (any thread)."""

    def link_states():
        """Each link's communication state by link name."""

    def health():
        """``(ok, details)``: ok when every required link is active."""

    def stats():
        """A JSON-ready snapshot of the counters."""


class IProactorHooks(Interface):
    """What a :class:`~gwproactor.proactor.Proactor` subclass overrides: the whole extension surface.

    The base class provides every hook (they do nothing, or count); override the ones you need.
    A hook may return ``None`` or a Deferred.  What a subclass (or an embedding application) *calls*
    is listed in the ``Proactor`` class docstring ("API"); everything else is private.
    ``startService`` / ``stopService`` may be extended too, calling the base version.
    """

    settings_class = Attribute(
        "The :class:`~gwproactor.config.ProactorSettings` subclass the runner loads from the environment "
        "(``gwproactor run``, ``twist gwproactor``) for this application."
    )

    def link_activated(link):
        """``link`` became active (the peer answers); called after the link's comm event is stored."""

    def link_deactivated(link, reason):
        """``link`` left active; ``reason`` is the input that caused it (``"receive_deadline"`` ...)."""

    def handle_event(link, event):
        """An event arrived from a downstream peer over ``link``, or was generated here with no upstream (``None``).

        The event is acked (and remembered for deduplication) once the result fires; if it fails,
        the event is parked and reported.  Deduplication happens before: a hook never sees a duplicate.
        """

    def handle_message(link, message):
        """A message from a peer over ``link`` that is neither an event, a batch of events, nor a ping or ack."""


class ICodec(Interface):
    """Turns messages into bytes and back."""

    def encode(message):
        """Return the JSON bytes of ``message``; raise EncodeError."""

    def decode(data):
        """Return the :class:`~gwproactor.message.Message` in ``data``; raise DecodeError."""


class IBrokerObserver(Interface):
    """Told about a broker connection's state; a link observes its broker connection."""

    def broker_connected(client):
        """A CONNACK accepting the connection arrived."""

    def broker_disconnected(client, reason):
        """The connection was lost or closed; ``reason`` is a short human-readable string."""

    def broker_subscribed(client, topic_filter, granted_qos):
        """The broker acknowledged the subscription of ``topic_filter``."""

    def broker_subscribe_failed(client, topic_filter, reason):
        """The broker refused the subscription of ``topic_filter`` (SUBACK 0x80)."""


class ISubscriptionObserver(IBrokerObserver):
    """A broker observer interested in the SUBACK results of one topic filter only (a link).

    A connection tells it :meth:`~IBrokerObserver.broker_subscribed` and
    :meth:`~IBrokerObserver.broker_subscribe_failed` only for ``subscription``, so a SUBACK costs
    O(1) however many links share the connection (a plain :class:`IBrokerObserver` hears every one).
    """

    subscription = Attribute("The topic filter whose SUBACK results this observer wants (fixed for its lifetime).")


class IMQTTClient(Interface):
    """One connection to one MQTT broker, shared by the links that use it.

    It reconnects by itself and re-subscribes every registered topic filter
    after every CONNACK.  It never queues publishes while disconnected.
    """

    name = Attribute("Name of this broker connection (for logs and stats).")
    is_connected = Attribute("True between an accepting CONNACK and the loss of the connection.")
    is_fully_subscribed = Attribute("True while connected and every registered filter has a successful SUBACK.")

    def add_subscription(topic_filter, qos, on_message):
        """Register ``topic_filter``; ``on_message(topic: str, payload: bytes)`` gets its messages.

        Subscribes at once when connected, and again after every CONNACK.  Registering a
        filter again replaces its QoS and callback.
        """

    def remove_subscription(topic_filter):
        """Forget ``topic_filter`` (and unsubscribe when connected)."""

    def is_subscribed(topic_filter):
        """True if ``topic_filter`` has a successful SUBACK on the current connection."""

    def publish(topic, payload, qos):
        """Publish ``payload`` (bytes) to ``topic``.

        Returns a Deferred: QoS 0 fires once handed to the transport, QoS 1 on PUBACK.
        Fails at once with NotConnectedError when disconnected.
        """

    def add_observer(observer):
        """Tell ``observer`` (an :class:`IBrokerObserver`) about state changes from now on."""

    def remove_observer(observer):
        """Stop telling ``observer``."""

    def when_connected():
        """A Deferred that fires (with this client) once connected; at once if connected now."""

    def when_subscribed():
        """A Deferred that fires once fully subscribed; at once if so now."""

    def drop_connection():
        """Close the current connection abruptly (tests, fault handling); it reconnects by itself."""


class ILinkListener(Interface):
    """What a link tells its owner about.

    A proactor's links report to a private listener object the proactor owns (never to the proactor
    itself, so that a subclass cannot override these by accident); its hooks are :class:`IProactorHooks`.
    """

    def link_transition(link, transition):
        """The link's state machine changed state (``transition`` is a ``links.machine.Transition``)."""

    def link_message(link, message):
        """An ack-required or application message from the peer (not an ack or ping).

        Return ``None`` or a Deferred; the link acks an ack-required message once
        the result has fired (so "accepted" is the listener's to define: an event is
        accepted once it is durable or delivered to the application).  If it fails,
        the message is not acked and the peer sends it again.
        """

    def link_acked(link, message_id, rtt):
        """The peer acked ``message_id``; ``rtt`` is None for a late ack (after a timeout or link loss)."""

    def link_problem(link, problem_type, summary, details):
        """Something went wrong on the link (bad frame, wrong topic ...); ``problem_type`` is error|warning."""


class IEventStore(Interface):
    """Durable storage of outgoing events until the upstream peer acknowledges them.

    Ids are the events' ``MessageId`` strings; payloads are opaque bytes (the
    encoded event).  The order of :meth:`pending_ids` is append order.
    """

    def append(event_id, payload):
        """Store ``payload`` under ``event_id``.

        Returns a Deferred that fires (with ``event_id``) when the event is durable
        under the store's sync policy; errbacks with StoreFull / StoreClosed.
        Appending an id that is already pending is a no-op whose Deferred fires.
        """

    def pending_ids():
        """Return a list of the ids not yet acknowledged, oldest first."""

    def is_pending(event_id):
        """True if ``event_id`` is pending (one of :meth:`pending_ids`); cheap, called before each first send."""

    def read(event_id):
        """Return the stored bytes of a pending event; raise EventNotFound / CorruptRecord."""

    def ack(event_id):
        """Mark ``event_id`` delivered; returns True if it was pending, False otherwise."""

    def ack_many(event_ids):
        """:meth:`ack` each of ``event_ids`` (the events of one acked batch); returns a list of those booleans."""

    def set_aside(event_id, reason):
        """Remove a pending event that cannot be sent (undecodable), keeping its bytes aside for inspection."""

    def park(event_id, reason, payload=None):
        """Keep an event the peer cannot accept out of the pending events, in the parked area.

        Without ``payload``: the pending event ``event_id`` leaves the pending events (raise
        EventNotFound if it is not pending, CorruptRecord if it cannot be read).  With ``payload``:
        an event received from a peer whose application refused it.  Parked events are never
        dropped: :meth:`parked` lists them and :meth:`requeue` makes them pending again.
        Returns True if the event was parked now, False if it was parked already.
        """

    def parked():
        """Return the parked events as dicts (``id``, ``reason``, ``parked_at``, ``appended_at``, ``bytes``)."""

    def requeue(event_ids=None):
        """Make parked events (all, or the ids given) pending again.

        Returns a Deferred that fires with the list of ids re-queued once they are durable
        (an id that cannot be re-queued stays parked and is reported); errbacks with
        EventNotFound, before changing anything, if an id given is not parked.
        """

    def stats():
        """Return a dict of counters (pending, pending_bytes, oldest_age_s, set_aside, dropped, ...)."""

    def close():
        """Flush and close; returns a Deferred."""


class IReceivedIds(Interface):
    """A bounded, persisted window of recently accepted incoming event ids (receiver-side dedup)."""

    def seen(event_id):
        """True if ``event_id`` was accepted before (within the window)."""

    def remember(event_id):
        """Record ``event_id`` as accepted; the oldest ids leave the window when it is full."""

