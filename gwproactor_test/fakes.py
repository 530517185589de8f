"""In-memory fakes for fast unit tests: an MQTT client with a scripted broker side.

Every fake here provides the interface it stands in for, and the tests check
that with :func:`zope.interface.verify.verifyObject`.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from gwproactor.errors import NotConnectedError, PublishFailed
from gwproactor.interfaces import IMQTTClient, ISubscriptionObserver

__all__ = ["FakeBroker", "FakeMQTTClient", "ProactorStub", "Published", "topic_matches"]


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching (``+`` one level, ``#`` the rest)."""
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts):
            return False
        if part != "+" and part != t_parts[i]:
            return False
    return len(f_parts) == len(t_parts)


@attrs.define
class Published:
    """One frame the code under test published."""

    topic: str
    payload: bytes
    qos: int


@implementer(IMQTTClient)
@attrs.define(eq=False)
class FakeMQTTClient:
    """An :class:`~gwproactor.interfaces.IMQTTClient` whose broker side the test drives.

    The test calls :meth:`connect`, :meth:`suback`, :meth:`deliver` and
    :meth:`disconnect`; what the code under test publishes lands in
    :attr:`published`.  With ``auto_suback`` every subscription is acknowledged
    as soon as it is sent.  ``puback`` controls QoS 1 publishes: ``True`` fires
    them at once, ``False`` keeps them in :attr:`pending_pubacks`.
    """

    name: str = "fake"
    auto_suback: bool = True
    puback: bool = True
    published: list[Published] = attrs.field(factory=list)
    pending_pubacks: list[Deferred] = attrs.field(factory=list)
    _connected: bool = False
    _subscriptions: dict[str, tuple[int, Callable[[str, bytes], Any]]] = attrs.field(factory=dict)
    _acked: set[str] = attrs.field(factory=set)
    _observers: list[Any] = attrs.field(factory=list)
    _connect_waiters: list[Deferred] = attrs.field(factory=list)
    _subscribe_waiters: list[Deferred] = attrs.field(factory=list)
    drops: int = 0
    hub: Any = None
    """A :class:`FakeBroker` that routes what this client publishes, or None."""

    # --- IMQTTClient -----------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def is_fully_subscribed(self) -> bool:
        return self._connected and all(f in self._acked for f in self._subscriptions)

    def add_subscription(self, topic_filter: str, qos: int, on_message: Callable[[str, bytes], Any]) -> None:
        self._subscriptions[topic_filter] = (qos, on_message)
        if self._connected and self.auto_suback:
            self.suback(topic_filter)

    def remove_subscription(self, topic_filter: str) -> None:
        self._subscriptions.pop(topic_filter, None)
        self._acked.discard(topic_filter)

    def is_subscribed(self, topic_filter: str) -> bool:
        return self._connected and topic_filter in self._acked

    def publish(self, topic: str, payload: bytes, qos: int) -> Deferred:
        if not self._connected:
            return fail(NotConnectedError(f"{self.name}: not connected"))
        self.published.append(Published(topic, payload, qos))
        if self.hub is not None:
            self.hub.route(topic, payload)
        if qos == 0 or self.puback:
            return succeed(None)
        d: Deferred = Deferred()
        self.pending_pubacks.append(d)
        return d

    def add_observer(self, observer: Any) -> None:
        if observer not in self._observers:
            self._observers.append(observer)

    def remove_observer(self, observer: Any) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def _hearing(self, topic_filter: str) -> list[Any]:
        """The observers told ``topic_filter``'s SUBACK result (an ISubscriptionObserver only hears its own)."""
        return [
            o for o in self._observers
            if not ISubscriptionObserver.providedBy(o) or o.subscription == topic_filter
        ]

    def when_connected(self) -> Deferred:
        if self._connected:
            return succeed(self)
        d: Deferred = Deferred()
        self._connect_waiters.append(d)
        return d

    def when_subscribed(self) -> Deferred:
        if self.is_fully_subscribed:
            return succeed(self)
        d: Deferred = Deferred()
        self._subscribe_waiters.append(d)
        return d

    def drop_connection(self) -> None:
        self.drops += 1
        self.disconnect("dropped")

    # --- the broker side, driven by the test ----------------------------------------

    def connect(self) -> None:
        """Act as if a CONNACK accepted the connection (subscriptions are sent again)."""
        self._connected = True
        self._acked.clear()
        for observer in list(self._observers):
            observer.broker_connected(self)
        waiters, self._connect_waiters = self._connect_waiters, []
        for d in waiters:
            d.callback(self)
        if self.auto_suback:
            for topic_filter in list(self._subscriptions):
                self.suback(topic_filter)

    def disconnect(self, reason: str = "connection lost") -> None:
        """Act as if the connection was lost: pending QoS 1 publishes fail."""
        if not self._connected:
            return
        self._connected = False
        self._acked.clear()
        pending, self.pending_pubacks = self.pending_pubacks, []
        for d in pending:
            d.errback(PublishFailed(reason))
        for observer in list(self._observers):
            observer.broker_disconnected(self, reason)

    def suback(self, topic_filter: str, ok: bool = True) -> None:
        """Act as if a SUBACK for ``topic_filter`` arrived (``ok=False``: failure code 0x80)."""
        if topic_filter not in self._subscriptions:
            raise KeyError(f"{topic_filter!r} is not subscribed")
        qos = self._subscriptions[topic_filter][0]
        if ok:
            self._acked.add(topic_filter)
            for observer in self._hearing(topic_filter):
                observer.broker_subscribed(self, topic_filter, qos)
            if self.is_fully_subscribed:
                waiters, self._subscribe_waiters = self._subscribe_waiters, []
                for d in waiters:
                    d.callback(self)
        else:
            self._acked.discard(topic_filter)
            for observer in self._hearing(topic_filter):
                observer.broker_subscribe_failed(self, topic_filter, "SUBACK failure 0x80")

    def deliver(self, topic: str, payload: bytes) -> int:
        """Hand an incoming frame to every matching subscription; returns how many got it."""
        count = 0
        for topic_filter, (_qos, on_message) in list(self._subscriptions.items()):
            if topic_matches(topic_filter, topic):
                on_message(topic, payload)
                count += 1
        return count

    def take_published(self) -> list[Published]:
        """Return and forget what was published so far."""
        out, self.published = self.published, []
        return out

    def published_matching(self, pattern: str) -> list[Published]:
        """Published frames whose topic matches the shell-style ``pattern``."""
        return [p for p in self.published if fnmatch.fnmatchcase(p.topic, pattern)]


@attrs.define(eq=False)
class FakeBroker:
    """An in-memory broker joining :class:`FakeMQTTClient` instances, for Clock-driven multi-proactor tests.

    A publish on one connected client is delivered to every connected client
    with a matching subscription, on a later turn of ``clock`` (so no
    re-entrancy), in publish order.  ``client(name)`` makes a client attached to
    this broker; :meth:`connect_all` / :meth:`disconnect_all` drive them.
    """

    clock: Any
    clients: list[FakeMQTTClient] = attrs.field(factory=list)
    _queue: list[tuple[str, bytes]] = attrs.field(factory=list)
    _scheduled: Any = None
    delivered: int = 0

    def client(self, name: str = "fake", **kwargs: Any) -> FakeMQTTClient:
        """A new client attached to this broker."""
        client = FakeMQTTClient(name=name, hub=self, **kwargs)
        self.clients.append(client)
        return client

    def route(self, topic: str, payload: bytes) -> None:
        """Queue a published frame for delivery."""
        self._queue.append((topic, payload))
        if self._scheduled is None:
            self._scheduled = self.clock.callLater(0, self._drain)

    def _drain(self) -> None:
        self._scheduled = None
        queue, self._queue = self._queue, []
        for topic, payload in queue:
            for client in list(self.clients):
                if client.is_connected:
                    self.delivered += client.deliver(topic, payload)

    def connect_all(self) -> None:
        """Connect every client that is not connected."""
        for client in self.clients:
            if not client.is_connected:
                client.connect()

    def disconnect_all(self, reason: str = "broker stopped") -> None:
        """Disconnect every client (frames not yet delivered are lost, as with a broker restart)."""
        self._queue.clear()
        for client in self.clients:
            client.disconnect(reason)


class ProactorStub:
    """Defaults for every :class:`~gwproactor.interfaces.IProactor` member, for small test fakes.

    Subclass it, declare ``@implementer(IProactor)``, and override what the test
    cares about; the rest records calls (``calls``) and returns neutral values.
    """

    name = "d1.stub"
    reactor: Any = None
    codec: Any = None

    def _record(self, what: str, *args: Any) -> None:
        self.__dict__.setdefault("calls", []).append((what, *args))

    def add_actor(self, actor: Any) -> Any:
        self._record("add_actor", actor)
        actor.proactor = self
        return actor

    def get_actor(self, name: str) -> Any:
        from gwproactor.errors import UnknownActorError

        raise UnknownActorError(name)

    def send(self, message: Any) -> None:
        self._record("send", message)

    def send_threadsafe(self, message: Any) -> None:
        self._record("send_threadsafe", message)

    def generate_event(self, event: Any) -> Deferred:
        self._record("generate_event", event)
        return succeed(getattr(event, "message_id", None))

    def report_problem(self, problem_type: str, summary: str, details: str = "") -> Deferred:
        self._record("report_problem", problem_type, summary, details)
        return succeed(None)

    def request_shutdown(self, reason: str, exit_code: int = 0) -> None:
        self._record("request_shutdown", reason, exit_code)

    def link_states(self) -> dict[str, str]:
        return {}

    def health(self) -> tuple[bool, dict[str, Any]]:
        return True, {"name": self.name, "ok": True, "links": self.link_states()}

    def stats(self) -> dict[str, Any]:
        return {"name": self.name}
