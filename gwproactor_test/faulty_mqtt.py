"""Fault injection around an :class:`~gwproactor.interfaces.IMQTTClient`: hold, drop and release frames.

:class:`FaultyMQTTClient` sits between a link and its broker connection and provides the same interface.
Switched on, it keeps what the link publishes (every frame, or only its acks), keeps the broker's SUBACK
notifications, or drops the frames the broker delivers; held frames go out (or are processed) when the test
releases them.  Nothing of this lives in the link itself: to the link, a held publish is one the network
has not delivered yet.

:func:`link_faults` puts one between a :class:`~gwproactor.links.link.Link` and its broker connection, before or
after the link started.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred
from zope.interface import alsoProvides, implementer

from gwproactor.interfaces import IBrokerObserver, IMQTTClient, ISubscriptionObserver
from gwproactor.message import Ack, dashed

__all__ = ["FaultyMQTTClient", "HeldPublish", "link_faults"]

_ACK_TOPIC_TYPE = dashed(Ack.TYPE_NAME)


@attrs.define(eq=False)
class HeldPublish:
    """A publish kept by :class:`FaultyMQTTClient`; ``deferred`` is what the caller got (it fires once published)."""

    topic: str
    payload: bytes
    qos: int
    deferred: Deferred


@implementer(IBrokerObserver)
@attrs.define(eq=False, slots=False)
class _ObserverProxy:
    """Passes broker notifications on to one observer, keeping SUBACKs while the wrapper holds them.

    The proxy of an :class:`~gwproactor.interfaces.ISubscriptionObserver` is one too, for the same
    filter, so the wrapped client tells it only that filter's SUBACKs (as it would the observer).
    """

    faulty: FaultyMQTTClient
    observer: Any
    subscription: str | None = None

    def __attrs_post_init__(self) -> None:
        if ISubscriptionObserver.providedBy(self.observer):
            self.subscription = self.observer.subscription
            alsoProvides(self, ISubscriptionObserver)

    def hears(self, topic_filter: str) -> bool:
        """Whether the observer wants ``topic_filter``'s SUBACK results."""
        return self.subscription is None or self.subscription == topic_filter

    def broker_connected(self, client: Any) -> None:
        self.observer.broker_connected(self.faulty)

    def broker_disconnected(self, client: Any, reason: str) -> None:
        self.observer.broker_disconnected(self.faulty, reason)

    def broker_subscribed(self, client: Any, topic_filter: str, granted_qos: int) -> None:
        if self.faulty._holds_suback(topic_filter):
            self.faulty._hold_suback(topic_filter, granted_qos)
            return
        self.observer.broker_subscribed(self.faulty, topic_filter, granted_qos)

    def broker_subscribe_failed(self, client: Any, topic_filter: str, reason: str) -> None:
        self.observer.broker_subscribe_failed(self.faulty, topic_filter, reason)


@implementer(IMQTTClient)
class FaultyMQTTClient:
    """An :class:`~gwproactor.interfaces.IMQTTClient` around ``inner`` that holds, drops and releases frames.

    Switches (plain attributes, off by default):

    * ``hold_outgoing``: every publish (acks included) is kept in :attr:`held_outgoing` until
      :meth:`release_outgoing`;
    * ``hold_acks``: publishes of ``gridworks.ack`` frames are kept in :attr:`held_acks` until
      :meth:`release_acks` (checked before ``hold_outgoing``);
    * ``hold_subacks``: SUBACK notifications are kept in :attr:`held_subacks` (and :meth:`is_subscribed` says
      no) until :meth:`release_subacks`;
    * ``drop_incoming``: frames the broker delivers are dropped (counted in :attr:`dropped`).

    A kept publish returns a Deferred that fires with the real publish's result once released; a kept
    frame never released is simply lost (its Deferred never fires), as on a network that lost it.  To the
    link a kept frame is sent: it counts it, and the ack timeout of an ack-required frame runs.
    Everything else is passed to ``inner``, and attributes this class does not have are ``inner``'s.

    :param inner: the wrapped client.
    :param filters: the topic filters ``hold_subacks`` and ``drop_incoming`` apply to (``None``: all).
    """

    def __init__(self, inner: Any, *, filters: frozenset[str] | None = None) -> None:
        self.inner = inner
        self.filters = filters
        self.hold_outgoing = False
        self.hold_acks = False
        self.hold_subacks = False
        self.drop_incoming = False
        self.held_outgoing: list[HeldPublish] = []
        self.held_acks: list[HeldPublish] = []
        self.held_subacks: list[tuple[str, int]] = []
        self.dropped = 0
        self._proxies: dict[int, _ObserverProxy] = {}

    def __getattr__(self, name: str) -> Any:
        # Only called for names this object lacks: the wrapped client's own API (``drops``, ``connect`` ...).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"<FaultyMQTTClient around {self.inner!r}>"

    # --- IMQTTClient ------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The wrapped client's name."""
        return self.inner.name

    @property
    def is_connected(self) -> bool:
        """The wrapped client's connection state."""
        return self.inner.is_connected

    @property
    def is_fully_subscribed(self) -> bool:
        """The wrapped client is fully subscribed and no SUBACK is held."""
        return self.inner.is_fully_subscribed and not self.held_subacks

    def add_subscription(self, topic_filter: str, qos: int, on_message: Callable[[str, bytes], Any]) -> None:
        """Register ``topic_filter`` with the wrapped client; its frames pass :attr:`drop_incoming` first."""
        applies = self._applies(topic_filter)

        def incoming(topic: str, payload: bytes) -> Any:
            if applies and self.drop_incoming:
                self.dropped += 1
                return None
            return on_message(topic, payload)

        self.inner.add_subscription(topic_filter, qos, incoming)

    def remove_subscription(self, topic_filter: str) -> None:
        """Forget ``topic_filter`` (and any SUBACK held for it)."""
        self.held_subacks = [(f, q) for f, q in self.held_subacks if f != topic_filter]
        self.inner.remove_subscription(topic_filter)

    def is_subscribed(self, topic_filter: str) -> bool:
        """The wrapped client's answer, except no while the SUBACK of ``topic_filter`` is held."""
        if not self.inner.is_subscribed(topic_filter):
            return False
        if self._holds_suback(topic_filter):
            # The broker has acknowledged it, but the notification is held: hold this one too.
            self._hold_suback(topic_filter, None)
            return False
        return not any(f == topic_filter for f, _q in self.held_subacks)

    def publish(self, topic: str, payload: bytes, qos: int) -> Deferred:
        """Publish through the wrapped client, or keep the frame while ``hold_acks`` / ``hold_outgoing`` say so."""
        if self.hold_acks and topic.rsplit("/", 1)[-1] == _ACK_TOPIC_TYPE:
            return self._hold(self.held_acks, topic, payload, qos)
        if self.hold_outgoing:
            return self._hold(self.held_outgoing, topic, payload, qos)
        return self.inner.publish(topic, payload, qos)

    def add_observer(self, observer: Any) -> None:
        """Tell ``observer`` about the wrapped client's state changes (as coming from this wrapper)."""
        if id(observer) not in self._proxies:
            proxy = _ObserverProxy(self, observer)
            self._proxies[id(observer)] = proxy
            self.inner.add_observer(proxy)

    def remove_observer(self, observer: Any) -> None:
        """Stop telling ``observer``."""
        proxy = self._proxies.pop(id(observer), None)
        if proxy is not None:
            self.inner.remove_observer(proxy)

    def when_connected(self) -> Deferred:
        """Fires with this wrapper once the wrapped client is connected."""
        return self.inner.when_connected().addCallback(lambda _: self)

    def when_subscribed(self) -> Deferred:
        """Fires with this wrapper once the wrapped client is fully subscribed (held SUBACKs aside)."""
        return self.inner.when_subscribed().addCallback(lambda _: self)

    def drop_connection(self) -> None:
        """Drop the wrapped client's connection (it reconnects by itself)."""
        self.inner.drop_connection()

    # --- releasing -------------------------------------------------------------------------

    def release_outgoing(self, n: int | None = None) -> int:
        """Publish ``n`` (default: all) held frames, oldest first; returns how many (holding goes on if switched on)."""
        return self._release(self.held_outgoing, n)

    def release_acks(self, n: int | None = None) -> int:
        """Publish ``n`` (default: all) held acks, oldest first; returns how many (holding goes on if switched on)."""
        return self._release(self.held_acks, n)

    def release_subacks(self) -> int:
        """Stop holding SUBACKs and pass the held ones on; returns how many."""
        held, self.held_subacks = self.held_subacks, []
        self.hold_subacks = False
        for topic_filter, qos in held:
            for proxy in list(self._proxies.values()):
                if proxy.hears(topic_filter):
                    proxy.observer.broker_subscribed(self, topic_filter, qos)
        return len(held)

    def discard_held(self) -> int:
        """Forget every held publish (lost: their Deferreds never fire); returns how many."""
        count = len(self.held_outgoing) + len(self.held_acks)
        self.held_outgoing.clear()
        self.held_acks.clear()
        return count

    def held_counts(self) -> dict[str, int]:
        """How many frames are held, by kind (``acks``, ``subacks``, ``outgoing``)."""
        return {"acks": len(self.held_acks), "subacks": len(self.held_subacks), "outgoing": len(self.held_outgoing)}

    # --- internals ----------------------------------------------------------------------------

    def _applies(self, topic_filter: str) -> bool:
        return self.filters is None or topic_filter in self.filters

    def _holds_suback(self, topic_filter: str) -> bool:
        return self.hold_subacks and self._applies(topic_filter)

    def _hold_suback(self, topic_filter: str, qos: int | None) -> None:
        for f, _q in self.held_subacks:
            if f == topic_filter:
                return
        self.held_subacks.append((topic_filter, 1 if qos is None else qos))

    def _hold(self, held: list[HeldPublish], topic: str, payload: bytes, qos: int) -> Deferred:
        d: Deferred = Deferred()
        held.append(HeldPublish(topic, payload, qos, d))
        return d

    def _release(self, held: list[HeldPublish], n: int | None) -> int:
        count = len(held) if n is None else min(n, len(held))
        release = held[:count]
        del held[:count]
        for frame in release:
            try:
                published = self.inner.publish(frame.topic, frame.payload, frame.qos)
            except Exception as e:  # noqa: BLE001 - handed to the caller's Deferred
                frame.deferred.errback(e)
                continue
            published.chainDeferred(frame.deferred)
        return count


def link_faults(link: Any) -> FaultyMQTTClient:
    """The :class:`FaultyMQTTClient` between ``link`` and its broker connection, put there if it is not yet.

    Before the link starts, the wrapper simply replaces ``link.broker``.  On a running link it also takes
    over the link's registrations: the link observes the wrapper instead, and the link's two topic filters are
    registered again through it (registering a filter again replaces its callback; the broker's new SUBACK is
    a duplicate to the link).  ``hold_subacks`` and ``drop_incoming`` apply to the link's own subscription
    (not to its peer's Last Will).
    """
    broker = link.broker
    if isinstance(broker, FaultyMQTTClient):
        return broker
    faulty = FaultyMQTTClient(broker, filters=frozenset({link.subscription}))
    if link.running:
        broker.remove_observer(link)
        faulty.add_observer(link)
        faulty.add_subscription(link.subscription, link.qos, link._on_mqtt_message)
        faulty.add_subscription(link.will_subscription, 1, link._on_peer_will)
    link.broker = faulty
    return faulty
