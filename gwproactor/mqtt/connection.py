"""The broker connection service: one reconnecting MQTT 3.1.1 connection per broker, on the reactor thread.

:class:`BrokerConnection` is built on Twisted's :class:`~twisted.application.internet.ClientService`, which
makes the connection attempts and waits between them: its ``retryPolicy`` is our
:meth:`~gwproactor.ops.backoff.Backoff.retry_policy`, and its ``prepareConnection`` holds each connection until
the broker's CONNACK, so a connection counts as made (and the count of failed attempts is reset) only once
the broker accepted it.  :meth:`BrokerConnection.stopService` sends DISCONNECT before ClientService closes
the connection.

One part stays ours (:mod:`gwproactor.mqtt._gate`), for a measured reason (Twisted 26.10;
``tests/test_mqtt_backoff.py`` pins it): ClientService's state machine has no transition for a connection
that is *lost* while ``prepareConnection`` is pending or after it failed -- the ``connectionLost`` of its
protocol proxy raises ``automat.NoTransition`` in its ``Connecting`` and ``Waiting`` states -- and it does
not close a connection whose preparation failed.  An MQTT connection is often lost before its CONNACK (a
refused CONNACK, no CONNACK within ``connect_timeout``, a broker that closes at once).  So ClientService
connects through a :class:`~gwproactor.mqtt._gate.GatedEndpoint`, whose :class:`~gwproactor.mqtt._gate.Gate`
protocol passes the loss of a connection on to ClientService only after the CONNACK; before it, the loss
fails the attempt (the Deferred ``prepareConnection`` returned) instead.  The gated endpoint also bounds
each attempt by ``connect_timeout`` (ClientService has no attempt timeout) and builds the real endpoint
lazily (in a thread when TLS files would be read on a running reactor).
"""

from __future__ import annotations

import random
import uuid
from typing import Any, Callable

import attrs
from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorThreads, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gwproactor.errors import (
    ConfigError,
    ConnectionRefusedByBroker,
    InvalidTopic,
    NotConnectedError,
    PublishFailed,
    SessionUnavailable,
)
from gwproactor.interfaces import IMQTTClient
from gwproactor.mqtt._observers import Observers
from gwproactor.mqtt._gate import AttemptFailed, Gate, GatedEndpoint, Reconnector, SessionFactory
from gwproactor.mqtt._paho import PahoProtocol, TopicFilters, topic_filter_error, topic_name_error
from gwproactor.mqtt.endpoints import TLSOptions, make_client_endpoint
from gwproactor.ops.backoff import Backoff

__all__ = ["BrokerConnection", "InvalidTopic", "TLSOptions"]

log = Logger()

_STOP_GRACE_S = 5.0


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@attrs.define
class _Subscription:
    qos: int
    on_message: Callable[[str, bytes], Any]
    acked: bool = False
    pending_mid: int | None = None


@implementer(IMQTTClient)
@attrs.define(eq=False, slots=False)
class BrokerConnection(Service):
    """One connection to one MQTT broker, shared by the links that use it (an :class:`IMQTTClient`).

    Configure it with a Twisted client endpoint string (``endpoint="tcp:host=h:port=1883"``,
    ``"tls:..."``) or with ``host`` / ``port`` / ``tls``.  ``startService``
    starts connecting; it reconnects forever (a
    :class:`~twisted.application.internet.ClientService` inside) with
    :class:`~gwproactor.ops.backoff.Backoff` delays drawn from ``rng`` (attempt
    count reset by an accepting CONNACK), re-subscribes every topic filter after
    every CONNACK and reports its state to
    :class:`~gwproactor.interfaces.IBrokerObserver` observers.

    Every connection uses a clean session: QoS 1 publishes in flight when a
    connection drops errback with :class:`~gwproactor.errors.PublishFailed` and
    are never retransmitted on the next connection.

    :param keepalive: MQTT keepalive, seconds (sent rounded up to whole seconds);
        a connection from which nothing was received for ``keepalive`` seconds is
        dropped and re-made.
    :param connect_timeout: seconds from the start of an attempt to the CONNACK;
        an attempt that takes longer is aborted and retried with backoff.
    """

    name: str
    reactor: Any = attrs.field(factory=_default_reactor)
    endpoint: str | None = None
    host: str | None = None
    port: int | None = None
    tls: TLSOptions | None = None
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    keepalive: float = 60.0
    backoff: Backoff = attrs.field(factory=Backoff)
    connect_timeout: float = 10.0
    rng: random.Random = attrs.field(factory=random.Random)
    will: tuple[str, bytes] | None = None
    """``(topic, payload)`` of the MQTT Last Will, published by the broker if a connection ends without a
    DISCONNECT; :meth:`stopService` publishes ``stop_announcement`` there itself before disconnecting."""
    stop_announcement: bytes | None = None

    _observers: Observers = attrs.field(init=False, default=None)
    _unacked: set[str] = attrs.field(init=False, factory=set)
    """Registered filters without a successful SUBACK on the current connection (fully subscribed when empty)."""
    _subscriptions: dict[str, _Subscription] = attrs.field(init=False, factory=dict)
    _filters: TopicFilters = attrs.field(init=False, factory=TopicFilters)
    _sub_mids: dict[int, str] = attrs.field(init=False, factory=dict)
    _in_flight: dict[int, Deferred] = attrs.field(init=False, factory=dict)
    _when_connected: list[Deferred] = attrs.field(init=False, factory=list)
    _when_subscribed: list[Deferred] = attrs.field(init=False, factory=list)
    _counters: dict[str, int] = attrs.field(init=False, factory=dict)
    _client_endpoint: Any = attrs.field(init=False, default=None)
    _gate: Gate | None = attrs.field(init=False, default=None)
    """The current connection (from TCP connect to its loss); ``None`` between connections."""
    _service: ClientService = attrs.field(init=False, default=None)
    _connected: bool = attrs.field(init=False, default=False)
    _fully_subscribed: bool = attrs.field(init=False, default=False)
    last_error: str | None = attrs.field(init=False, default=None)
    """Why the last connect attempt failed or the last connection was lost (``None`` before any)."""

    def __attrs_post_init__(self) -> None:
        if not self.name:
            raise ConfigError("BrokerConnection needs a name")
        self._observers = Observers(self.name, self._observer_failed)
        self._send_barriers: list[Callable[[], object]] = []
        if self.endpoint is None and self.host is None:
            raise ConfigError(f"broker {self.name!r}: give an endpoint string or a host")
        if self.endpoint is not None and (self.host is not None or self.tls is not None):
            raise ConfigError(f"broker {self.name!r}: give an endpoint string or host/port/tls, not both")
        if self.keepalive <= 0 or self.keepalive > 65535:
            raise ConfigError(f"broker {self.name!r}: keepalive must be in (0, 65535] s, got {self.keepalive!r}")
        if self.connect_timeout <= 0:
            raise ConfigError(f"broker {self.name!r}: connect_timeout must be > 0, got {self.connect_timeout!r}")
        if self.client_id is None:
            self.client_id = f"gwp-{uuid.uuid4().hex[:16]}"
        self._counters.update(
            connects=0,
            disconnects=0,
            connect_failures=0,
            refused_connacks=0,
            suback_failures=0,
            messages_in=0,
            messages_out=0,
            callback_errors=0,
            bytes_in=0,
            bytes_out=0,
        )
        sessions = SessionFactory(self._new_session)
        endpoint = GatedEndpoint(endpoint=self._endpoint, sessions=sessions, timeout=self.connect_timeout,
                                 clock=self.reactor, made=self._connection_made, failed=self._attempt_failed_early,
                                 label=f"broker {self.name!r} at {self.endpoint or f'{self.host}:{self.port}'}")
        self._service = Reconnector(endpoint, sessions, clock=self.reactor, retryPolicy=self._retry_policy(),
                                    prepareConnection=self._until_connack)

    @property
    def _session(self) -> PahoProtocol | None:
        """The MQTT session of the current connection, if any."""
        return self._gate.session if self._gate is not None else None

    # -- IMQTTClient: state ----------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        """True between an accepting CONNACK and the loss of the connection."""
        return self._connected

    @property
    def is_fully_subscribed(self) -> bool:
        """True while connected and every registered filter has a successful SUBACK."""
        return self._connected and self._fully_subscribed

    def is_subscribed(self, topic_filter: str) -> bool:
        """True if ``topic_filter`` has a successful SUBACK on the current connection."""
        sub = self._subscriptions.get(topic_filter)
        return bool(self._connected and sub is not None and sub.acked)

    def stats(self) -> dict[str, int]:
        """Return a copy of the counters (connects, disconnects, connect_failures, refused_connacks,
        suback_failures, messages_in, messages_out, callback_errors, bytes_in, bytes_out)."""
        return dict(self._counters)

    # -- IMQTTClient: observers and waiting ------------------------------------------
    def add_observer(self, observer: Any) -> None:
        """Tell ``observer`` (an :class:`IBrokerObserver`) about state changes from now on.

        An :class:`~gwproactor.interfaces.ISubscriptionObserver` hears only its own filter's SUBACK results.
        """
        self._observers.add(observer)

    def remove_observer(self, observer: Any) -> None:
        """Stop telling ``observer``; no error if it was not observing."""
        self._observers.remove(observer)

    def add_send_barrier(self, barrier: Callable[[], object]) -> None:
        """Call ``barrier()`` before bytes this connection wrote go to the kernel, every time.

        What a barrier writes elsewhere reaches the OS before any frame published so far: the proactor
        writes the received-id records of the events an ack confirms this way, once per chunk of received
        data instead of once per event (see :meth:`~gwproactor.store.FileReceivedIds.hold_writes`).  A
        barrier must be quick and must not publish; an exception from it is logged, and the send goes on.
        """
        if barrier not in self._send_barriers:
            self._send_barriers.append(barrier)

    def remove_send_barrier(self, barrier: Callable[[], object]) -> None:
        """Stop calling ``barrier``; no error if it was not added."""
        if barrier in self._send_barriers:
            self._send_barriers.remove(barrier)

    def when_connected(self) -> Deferred:
        """A Deferred that fires (with this connection) once connected; at once if connected now."""
        if self._connected:
            return defer.succeed(self)
        return self._waiter(self._when_connected)

    def when_subscribed(self) -> Deferred:
        """A Deferred that fires (with this connection) once fully subscribed; at once if so now."""
        if self.is_fully_subscribed:
            return defer.succeed(self)
        return self._waiter(self._when_subscribed)

    def _waiter(self, waiters: list[Deferred]) -> Deferred:
        def cancel(d: Deferred) -> None:
            if d in waiters:
                waiters.remove(d)

        d: Deferred = Deferred(cancel)
        waiters.append(d)
        return d

    # -- IMQTTClient: subscriptions ------------------------------------------------------
    def add_subscription(self, topic_filter: str, qos: int, on_message: Callable[[str, bytes], Any]) -> None:
        """Register ``topic_filter``; ``on_message(topic: str, payload: bytes)`` gets its messages.

        Subscribes at once when connected, and again after every CONNACK.
        Registering a filter again replaces its QoS and callback.

        :raises InvalidTopic: ``topic_filter`` is not a valid MQTT topic filter.
        :raises ValueError: ``qos`` is not 0, 1 or 2.
        """
        problem = topic_filter_error(topic_filter)
        if problem is not None:
            raise InvalidTopic(f"invalid topic filter {topic_filter!r}: {problem}")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        if not callable(on_message):
            raise TypeError("on_message must be callable as on_message(topic: str, payload: bytes)")
        sub = _Subscription(qos=qos, on_message=on_message)
        self._subscriptions[topic_filter] = sub
        self._unacked.add(topic_filter)
        self._filters.set(topic_filter, (topic_filter, on_message))
        self._fully_subscribed = False
        if self._connected:
            self._send_subscribe(topic_filter, sub)

    def remove_subscription(self, topic_filter: str) -> None:
        """Forget ``topic_filter`` (and unsubscribe when connected); no error if it is unknown."""
        sub = self._subscriptions.pop(topic_filter, None)
        if sub is None:
            return
        self._unacked.discard(topic_filter)
        self._filters.remove(topic_filter)
        if sub.pending_mid is not None:
            self._sub_mids.pop(sub.pending_mid, None)
        if self._connected and self._session is not None:
            try:
                self._session.unsubscribe([topic_filter])
            except SessionUnavailable:
                pass
            self._check_fully_subscribed()

    def _send_subscribe(self, topic_filter: str, sub: _Subscription) -> None:
        assert self._session is not None
        sub.acked = False
        self._unacked.add(topic_filter)
        try:
            mid = self._session.subscribe([(topic_filter, sub.qos)])
        except SessionUnavailable:
            return  # the connection is going; the next CONNACK re-subscribes
        sub.pending_mid = mid
        self._sub_mids[mid] = topic_filter

    def _check_fully_subscribed(self) -> None:
        if not self._connected or self._fully_subscribed:
            return
        if not self._unacked:  # O(1) per SUBACK: one connection may carry a thousand links' filters
            self._fully_subscribed = True
            log.info("broker {broker}: fully subscribed ({count} filters)", broker=self.name,
                     count=len(self._subscriptions))
            self._fire(self._when_subscribed, self)

    # -- IMQTTClient: publish ------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, qos: int) -> Deferred:
        """Publish ``payload`` (bytes) to ``topic`` at QoS 0 or 1.

        Returns a Deferred: QoS 0 fires once the PUBLISH is handed to the
        transport, QoS 1 on PUBACK; it errbacks at once with
        :class:`~gwproactor.errors.NotConnectedError` when disconnected and with
        :class:`~gwproactor.errors.PublishFailed` when the connection is lost
        before the PUBACK.  Bad arguments errback with :class:`InvalidTopic` /
        :class:`ValueError` / :class:`TypeError`.
        """
        problem = topic_name_error(topic)
        if problem is not None:
            return defer.fail(InvalidTopic(f"invalid topic {topic!r}: {problem}"))
        if qos not in (0, 1):
            return defer.fail(ValueError(f"qos must be 0 or 1, got {qos!r}"))
        if not isinstance(payload, (bytes, bytearray)):
            return defer.fail(TypeError(f"payload must be bytes, got {type(payload).__name__}"))
        gate = self._gate  # (not the _session property: this is the hot path)
        session = gate.session if gate is not None else None
        if not self._connected or session is None:
            return defer.fail(NotConnectedError(f"broker {self.name!r} is not connected; cannot publish to {topic!r}"))
        try:
            mid, written = session.publish(topic, payload, qos)
        except SessionUnavailable as e:
            return defer.fail(NotConnectedError(f"broker {self.name!r}: {e}"))
        self._counters["messages_out"] += 1
        if qos == 0 and written:
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._in_flight[mid] = d
        return d

    # -- IMQTTClient: fault handling -------------------------------------------------
    def drop_connection(self) -> None:
        """Close the current connection abruptly; it reconnects by itself (with backoff)."""
        if self._session is not None:
            self._session.abort("dropped by drop_connection()")

    # -- service lifecycle ------------------------------------------------------------
    def prepare_endpoint(self) -> None:
        """Build the client endpoint now (reading its certificate files), so that :meth:`startService` does not.

        ``gwproactor run`` and ``twist gwproactor`` call it before the reactor runs.  Without it,
        :meth:`startService` builds the endpoint: at once when the reactor is not running yet (``twistd``,
        ``twist``, a test clock) or when no TLS material is involved, else in the reactor's thread pool (a
        trust directory may hold hundreds of certificates), connecting once it is built.

        :raises ConfigError: the endpoint string or the certificate files cannot be used.
        """
        if self._client_endpoint is None:
            self._client_endpoint = self._make_endpoint()

    def startService(self) -> None:
        """Start connecting (building the endpoint first unless :meth:`prepare_endpoint` did).

        :raises ConfigError: when the endpoint is built here, at once, and cannot be.
        """
        if self._client_endpoint is None and not self._build_in_thread():
            self._client_endpoint = self._make_endpoint()
        Service.startService(self)
        self._service.startService()

    def stopService(self) -> Deferred:
        """Send DISCONNECT when connected, close, cancel retries; fires once the connection is closed."""
        Service.stopService(self)
        gate = self._gate
        grace: IDelayedCall | None = None
        if gate is not None and self._connected:
            session = gate.session
            if self.will is not None and self.stop_announcement is not None:
                try:  # a DISCONNECT cancels the will: say it ourselves, just before it (same write, in order)
                    session.publish(self.will[0], self.stop_announcement, 1)
                except Exception:
                    log.failure("could not announce the stop on {topic}", topic=self.will[0])
            session.disconnect()
            grace = self.reactor.callLater(_STOP_GRACE_S, session.abort, "stop: DISCONNECT not completed in time")
        # ClientService closes the connection (or cancels the attempt, or the retry) ...
        stopped: Deferred = self._service.stopService()
        if gate is None:
            return stopped
        # ... and fires before a connection lost before its CONNACK is closed: wait for that too.
        d = defer.gatherResults([stopped, gate.when_closed()])

        def closed(result: Any) -> None:
            if grace is not None and grace.active():
                grace.cancel()

        return d.addBoth(closed)

    def _build_in_thread(self) -> bool:
        uses_tls = self.tls is not None or (self.endpoint or "").strip().lower().startswith(("tls:", "ssl:"))
        return uses_tls and bool(getattr(self.reactor, "running", False)) and IReactorThreads.providedBy(self.reactor)

    def _make_endpoint(self) -> IStreamClientEndpoint:
        return make_client_endpoint(self.reactor, self.name, endpoint=self.endpoint, host=self.host, port=self.port,
                                    tls=self.tls, timeout=self.connect_timeout)

    def _endpoint(self) -> Deferred:
        """The client endpoint, built now (or in the reactor's thread pool) unless it was already."""
        if self._client_endpoint is not None:
            return defer.succeed(self._client_endpoint)
        if self._build_in_thread():
            d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._make_endpoint)
        else:
            d = defer.maybeDeferred(self._make_endpoint)

        def built(endpoint: IStreamClientEndpoint) -> IStreamClientEndpoint:
            self._client_endpoint = endpoint
            return endpoint

        def failed(failure: Failure) -> Failure:
            return Failure(AttemptFailed(f"cannot build the endpoint: {failure.getErrorMessage()}"))

        return d.addCallbacks(built, failed)

    # -- connecting (driven by ClientService) ----------------------------------------------------
    def _new_session(self) -> PahoProtocol:
        return PahoProtocol(
            listener=self,
            clock=self.reactor,
            client_id=self.client_id or "",
            keepalive=self.keepalive,
            username=self.username,
            password=self.password,
            stats=self._counters,
            broker_label=self.name,
            will=self.will,
        )

    def _connection_made(self, gate: Gate) -> None:
        self._gate = gate

    def _until_connack(self, proxy: Any) -> Deferred | None:
        """ClientService's ``prepareConnection``: the Deferred fires on an accepting CONNACK and fails with the
        loss of the connection before one (a refused CONNACK, no CONNACK within ``connect_timeout``)."""
        gate = self._gate
        if gate is None or gate.proxy is not proxy:
            return defer.fail(AttemptFailed("connection lost before CONNACK"))  # mqtt_lost counted it
        if gate.opened:
            return None
        session = gate.session
        gate.connack = Deferred(lambda d: session.abort("stopped"))
        remaining = max(0.0, gate.deadline - self.reactor.seconds())
        reason = f"no CONNACK within connect_timeout={self.connect_timeout} s"
        gate.timer = self.reactor.callLater(remaining, session.abort, reason)
        return gate.connack

    def _retry_policy(self) -> Callable[[int], float]:
        delays = self.backoff.retry_policy(self.rng)

        def policy(failed_attempts: int) -> float:
            delay = delays(failed_attempts)
            log.info("broker {broker}: reconnecting in {delay:.3f} s (attempt {attempt})", broker=self.name,
                     delay=delay, attempt=failed_attempts)
            return delay

        return policy

    def _attempt_failed_early(self, failure: Failure) -> Failure:
        """The attempt failed before TCP/TLS was up (refused, unreachable, timed out, no endpoint)."""
        if self.running:
            if failure.check(AttemptFailed):
                reason = failure.getErrorMessage()
            else:
                reason = f"{type(failure.value).__name__}: {failure.getErrorMessage()}"
            self._attempt_failed(reason)
        return failure

    def _attempt_failed(self, reason: str) -> None:
        self.last_error = reason
        self._counters["connect_failures"] += 1
        log.error("broker {broker}: connect attempt failed: {reason}", broker=self.name, reason=reason)

    # -- SessionListener (called by PahoProtocol) -----------------------------------------------
    def mqtt_connack(self, session: PahoProtocol, code: int, reason: str) -> None:
        """The broker answered CONNECT."""
        gate = self._gate
        if gate is None or session is not gate.session:
            return
        gate.stop_timer()
        if code != 0:
            self._counters["refused_connacks"] += 1
            error = ConnectionRefusedByBroker(code, reason)
            log.error("broker {broker}: {error}", broker=self.name, error=str(error), reason_code=code)
            session.abort(str(error))  # mqtt_lost fails the attempt
            return
        if not self.running:
            return  # stopping: ClientService cancelled the attempt, which aborted the session
        gate.opened = True
        if gate.connack is not None:
            gate.connack.callback(None)  # ClientService: connected, failed attempts reset
        self._connected = True
        self._fully_subscribed = False
        self._counters["connects"] += 1
        log.info("broker {broker}: connected (client id {client_id})", broker=self.name, client_id=self.client_id)
        self._observers.tell(self, "broker_connected")
        self._fire(self._when_connected, self)
        if not self._connected:
            return
        self._sub_mids.clear()
        for topic_filter, sub in list(self._subscriptions.items()):
            if not self._connected:
                return
            self._send_subscribe(topic_filter, sub)
        self._check_fully_subscribed()

    def mqtt_suback(self, session: PahoProtocol, mid: int, codes: list[int]) -> None:
        """The broker answered a SUBSCRIBE (one filter per SUBSCRIBE)."""
        if session is not self._session:
            return
        topic_filter = self._sub_mids.pop(mid, None)
        if topic_filter is None:
            return
        sub = self._subscriptions.get(topic_filter)
        if sub is None or sub.pending_mid != mid:
            return
        sub.pending_mid = None
        code = codes[0] if codes else 0x80
        if code >= 0x80:
            sub.acked = False
            self._unacked.add(topic_filter)
            self._counters["suback_failures"] += 1
            reason = f"SUBACK failure code 0x{code:02x} (the broker refused the subscription; check its ACL)"
            log.error("broker {broker}: subscription of {topic_filter} refused: {reason}", broker=self.name,
                      topic_filter=topic_filter, reason=reason)
            self._observers.tell_filter(self, "broker_subscribe_failed", topic_filter, reason)
            return
        sub.acked = True
        self._unacked.discard(topic_filter)
        self._observers.tell_filter(self, "broker_subscribed", topic_filter, code)
        self._check_fully_subscribed()

    def mqtt_before_send(self, session: PahoProtocol) -> None:
        """``session`` is about to hand what it wrote to the kernel: run the send barriers."""
        for barrier in self._send_barriers:
            try:
                barrier()
            except Exception:
                log.failure("broker {broker}: a send barrier failed", broker=self.name)

    def mqtt_published(self, session: PahoProtocol, mid: int) -> None:
        """A QoS 1 PUBLISH was acknowledged (or a delayed QoS 0 one was written)."""
        d = self._in_flight.pop(mid, None)
        if d is not None:
            d.callback(None)

    def mqtt_message(self, session: PahoProtocol, topic: str, payload: bytes) -> None:
        """A PUBLISH arrived: hand it to every matching subscription's callback."""
        self._counters["messages_in"] += 1
        for topic_filter, on_message in self._filters.match(topic):
            try:
                result = on_message(topic, payload)
            except Exception:
                self._callback_failed(Failure(), topic_filter, topic)
            else:
                if isinstance(result, Deferred):
                    result.addErrback(self._callback_failed, topic_filter, topic)

    def _callback_failed(self, failure: Failure, topic_filter: str, topic: str) -> None:
        self._counters["callback_errors"] += 1
        log.failure("broker {broker}: on_message for {topic_filter} failed on a message to {topic}",
                    failure=failure, broker=self.name, topic_filter=topic_filter, topic=topic)

    def mqtt_lost(self, session: PahoProtocol, reason: str) -> None:
        """The connection of ``session`` is gone."""
        gate = self._gate
        if gate is None or session is not gate.session:
            return
        self._gate = None
        gate.stop_timer()
        was_connected = self._connected
        self._connected = False
        self._fully_subscribed = False
        self._sub_mids.clear()
        for sub in self._subscriptions.values():
            sub.acked = False
            sub.pending_mid = None
        self._unacked = set(self._subscriptions)
        in_flight, self._in_flight = self._in_flight, {}
        if was_connected:
            self.last_error = reason
            self._counters["disconnects"] += 1
            log_fn = log.warn if self.running else log.info
            log_fn("broker {broker}: disconnected: {reason}", broker=self.name, reason=reason)
        for d in in_flight.values():
            d.errback(PublishFailed(f"broker {self.name!r}: connection lost before PUBACK ({reason})"))
        if was_connected:
            self._observers.tell(self, "broker_disconnected", reason)  # then the gate tells ClientService, which retries
            return
        if self.running:
            self._attempt_failed(reason)
        if gate.connack is not None and not gate.connack.called:
            gate.connack.errback(AttemptFailed(reason))  # ClientService: the attempt failed, retry

    # -- helpers -------------------------------------------------------------------------------
    def _observer_failed(self) -> None:
        self._counters["callback_errors"] += 1

    def _fire(self, waiters: list[Deferred], result: Any) -> None:
        pending = list(waiters)
        del waiters[:]
        for d in pending:
            d.callback(result)
