"""The :class:`Link` service: one peer over one broker connection, with its communication state.

A link is a thin service around the pure :class:`~gwproactor.links.machine.LinkMachine`:
it turns broker-connection callbacks, frames from the peer, ack timeouts and the
receive deadline into machine inputs, and turns the machine's transitions into
comm events, callbacks and log lines (through its :class:`~gwproactor.interfaces.ILinkListener`).

It is composed of parts with one job each: a :class:`~gwproactor.links.intake.FrameIntake` checks and
decodes what arrives, an :class:`~gwproactor.links.acks.AckTracker` and a
:class:`~gwproactor.links.liveness.Liveness` own the timers, :class:`~gwproactor.links.stats.LinkStats`
counts, and batch frames are encoded by the codec (:class:`~gwproactor.messages.BatchFrameEncoder`).
It carries no test machinery: tests hold or drop frames with a wrapper around its broker connection
(``gwproactor_test.faulty_mqtt``).
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gwproactor.errors import AckTimeout, LinkDown, NotConnectedError, PublishFailed
from gwproactor.interfaces import ISubscriptionObserver
from gwproactor.links.acks import AckTracker
from gwproactor.links.intake import FrameIntake
from gwproactor.links.liveness import Liveness
from gwproactor.links.machine import PEER_HEARD_STATES, AckEvidence, LinkInput, LinkMachine, LinkState, Transition
from gwproactor.links.stats import LinkStats
from gwproactor.message import (
    BATCH_CAPABILITY,
    COMPRESSED_BATCH_TYPE,
    ZLIB_CAPABILITY,
    Ack,
    AckFrameEncoder,
    BatchFrameEncoder,
    EventBatch,
    Hello,
    Message,
    Ping,
    compress_batch_frame,
    make_message,
    subscription_filter,
    topic_for,
    will_topic,
)

# BATCH_CAPABILITY, ZLIB_CAPABILITY and COMPRESSED_BATCH_TYPE live with the batch frames in the codec
# (gwproactor.messages), LinkStats in gwproactor.links.stats; they stay importable from here.
__all__ = ["BATCH_CAPABILITY", "COMPRESSED_BATCH_TYPE", "ZLIB_CAPABILITY", "Link", "LinkStats", "RawFrame"]

#: The extra field of a ``gridworks.ping`` in which a gwproactor peer lists its capabilities.
CAPABILITIES_FIELD = "Capabilities"


@attrs.frozen
class RawFrame:
    """An envelope assembled from already-encoded JSON (the outbox's batches), publishable like a Message."""

    header: Any
    data: bytes
    wire_type: str | None = None
    """The message type in the topic when it differs from the header's (a compressed batch)."""


@implementer(ISubscriptionObserver)
class Link(Service):
    """One peer (long and short name) reached over one broker connection.

    Subscribes ``gw/<peer long>/to/<own short>/#`` and publishes to
    ``gw/<own long>/to/<peer short>/<type>`` (every dot written as a dash).

    :param name: the link's name (``PeerName`` of its comm events).
    :param own_long_name: this process's long name (``Src`` of what it sends).
    :param own_short_name: this process's short name (``Dst`` of what the peer sends).
    :param peer_long_name: the peer's long name.
    :param peer_short_name: the peer's short name.
    :param broker: an :class:`~gwproactor.interfaces.IMQTTClient`.
    :param codec: an :class:`~gwproactor.interfaces.ICodec`.
    :param listener: an :class:`~gwproactor.interfaces.ILinkListener` (the proactor).
    :param clock: provides ``seconds`` / ``callLater``.
    :param ack_timeout_s: seconds to wait for each ack.
    :param heartbeat_s: idle seconds before a ping.
    :param receive_deadline_s: seconds of silence from the peer before the link leaves ``active``.
    :param qos: MQTT QoS of what the link publishes (0 or 1).
    :param upstream: events generated here travel over this link.
    """

    log = Logger(namespace="gwproactor.link")

    def __init__(
        self,
        name: str,
        *,
        own_long_name: str,
        own_short_name: str,
        peer_long_name: str,
        peer_short_name: str,
        broker: Any,
        codec: Any,
        listener: Any,
        clock: Any,
        ack_timeout_s: float = 5.0,
        heartbeat_s: float = 10.0,
        receive_deadline_s: float = 30.0,
        qos: int = 1,
        upstream: bool = False,
        batch_max: int = 0,
        max_frame_bytes: int = 4 * 1024 * 1024,
        compress: bool = True,
    ) -> None:
        self.name = f"link:{name}"
        self.link_name = name
        self.own_long_name = own_long_name
        self.own_short_name = own_short_name
        self.peer_long_name = peer_long_name
        self.peer_short_name = peer_short_name
        self.broker = broker
        self._codec = codec
        self.listener = listener
        self.clock = clock
        self.qos = qos
        self.upstream = upstream
        self.batch_max = batch_max
        self.compress = compress
        self.peer_capabilities: frozenset[str] = frozenset()

        self._batch_frames = BatchFrameEncoder(own_long_name, peer_short_name)
        self._ack_frames = AckFrameEncoder(codec, own_long_name, peer_short_name)
        self._topics: dict[str, str] = {}
        self.machine = LinkMachine()
        self.evidence = AckEvidence()
        self._confirming: int | None = None  # the probe sent to confirm a suspicious ack timeout
        self._outage: list | None = None  # [since, frames in flight when it went down, unanswered probes]
        self.stats = LinkStats()
        self.intake = FrameIntake(
            name,
            own_short_name=own_short_name,
            peer_long_name=peer_long_name,
            codec=codec,
            stats=self.stats,
            clock=clock,
            max_frame_bytes=max_frame_bytes,
            on_frame=self._frame_checked,
            on_peer_gone=self._peer_gone,
            report=self._problem,
        )
        # The broker connection hands frames straight to the intake (no extra call on the hot path).
        self._on_mqtt_message = self.intake.frame_received
        self._on_peer_will = self.intake.gone_received
        self.acks = AckTracker(clock=clock, timeout=ack_timeout_s, on_timeout=self._ack_timed_out)
        self.liveness = Liveness(
            clock=clock,
            heartbeat_s=heartbeat_s,
            receive_deadline_s=receive_deadline_s,
            send_ping=self._send_ping,
            on_deadline=self._deadline_expired,
        )
        self.subscription = subscription_filter(peer_long_name, own_short_name)
        self.will_subscription = will_topic(peer_long_name)
        self._recent: list[tuple[float, str, str]] = []
        self.last_down_reason: str | None = None

    def __repr__(self) -> str:
        return f"<Link {self.link_name!r} {self.state.value}>"

    # --- state ---------------------------------------------------------------

    @property
    def codec(self) -> Any:
        """The :class:`~gwproactor.interfaces.ICodec` of the link's frames (both ways)."""
        return self._codec

    @codec.setter
    def codec(self, codec: Any) -> None:
        self._codec = self.intake.codec = codec
        self._ack_frames = AckFrameEncoder(codec, self.own_long_name, self.peer_short_name)

    @property
    def max_frame_bytes(self) -> int:
        """Frames from the peer larger than this, on the wire or inflated, are dropped undecoded."""
        return self.intake.max_frame_bytes

    @max_frame_bytes.setter
    def max_frame_bytes(self, value: int) -> None:
        self.intake.max_frame_bytes = value

    @property
    def state(self) -> LinkState:
        """The communication state."""
        return self.machine.state

    @property
    def is_active(self) -> bool:
        """Broker connected, subscribed, peer heard within the deadline, no ack timeout since."""
        return self.machine.is_active

    @property
    def awaiting_acks(self) -> int:
        """Frames in flight whose ack can still come: sent since the peer was last heard again.

        A probe sent while the peer was away (before the broker or the peer came back) is never
        answered; shutdown does not wait for it.
        """
        return self.acks.in_flight_after(self.evidence.heard_from)

    @property
    def peer_accepts_batches(self) -> bool:
        """Batching is configured here and the peer announced it accepts batches since the link became active."""
        return self.batch_max > 1 and BATCH_CAPABILITY in self.peer_capabilities

    @property
    def recent_transitions(self) -> list[tuple[float, str, str]]:
        """The last transitions as ``(time, input, new state)``, oldest first (at most 20)."""
        return list(self._recent)

    def _feed(self, link_input: LinkInput) -> Transition:
        transition = self.machine.handle(link_input)
        if transition.changed:
            self.stats.transitions += 1
            self._recent.append((self.clock.seconds(), link_input.value, transition.new.value))
            del self._recent[:-20]
            for type_name in transition.comm_events:
                self.stats.comm_events[type_name] += 1
            if transition.new in PEER_HEARD_STATES and transition.old not in PEER_HEARD_STATES:
                self.evidence.peer_heard_again()
            if transition.new not in PEER_HEARD_STATES:
                self._confirming = None
            if transition.left_active:
                self.last_down_reason = link_input.value
                # A normal stop is no warning; anything else is an outage, summarised when it ends.
                (self.log.info if link_input is LinkInput.stop else self.log.warn)(
                    "link {link_name} left active: {old} -> {new} on {input}",
                    link_name=self.link_name,
                    old=transition.old.value,
                    new=transition.new.value,
                    input=link_input.value,
                )
                in_flight = self.acks.fail_all(LinkDown(f"link {self.link_name} left active ({link_input.value})"))
                self.peer_capabilities = frozenset()
                self._outage = [self.clock.seconds(), in_flight, 0]
            elif transition.entered_active and self._outage is not None:
                since, in_flight, probes = self._outage
                self._outage = None
                self.log.info(
                    "link {link_name} active again after {seconds:.1f} s: {in_flight} frames were in flight when it "
                    "went down, {probes} probes went unanswered meanwhile ({old} -> active on {input})",
                    link_name=self.link_name,
                    seconds=self.clock.seconds() - since,
                    in_flight=in_flight,
                    probes=probes,
                    old=transition.old.value,
                    input=link_input.value,
                )
            else:
                self.log.info(
                    "link {link_name}: {old} -> {new} on {input}",
                    link_name=self.link_name,
                    old=transition.old.value,
                    new=transition.new.value,
                    input=link_input.value,
                )
            try:
                self.listener.link_transition(self, transition)
            except Exception:
                self.log.failure("link listener failed on a transition of {link_name}", link_name=self.link_name)
        return transition

    # --- lifecycle -------------------------------------------------------------

    def startService(self) -> None:
        """Subscribe, observe the broker connection and start the liveness timers."""
        super().startService()
        self.broker.add_observer(self)
        self.broker.add_subscription(self.subscription, self.qos, self._on_mqtt_message)
        # The peer's Last Will: if it dies, the broker tells us at once (a 4.x peer has none: nothing comes).
        self.broker.add_subscription(self.will_subscription, 1, self._on_peer_will)
        self._feed(LinkInput.start)
        self.liveness.start()
        if self.broker.is_connected:
            self.broker_connected(self.broker)
            if self.broker.is_subscribed(self.subscription):
                self.broker_subscribed(self.broker, self.subscription, self.qos)

    def stopService(self) -> None:
        """Stop the timers, fail what waits for acks, and stop observing the broker."""
        super().stopService()
        self.liveness.stop()
        self.acks.fail_all(LinkDown(f"link {self.link_name} stopped"))
        self.broker.remove_observer(self)
        self.broker.remove_subscription(self.subscription)
        self.broker.remove_subscription(self.will_subscription)
        self._feed(LinkInput.stop)

    # --- IBrokerObserver ---------------------------------------------------------

    def broker_connected(self, client: Any) -> None:
        """The broker connection is up."""
        self._feed(LinkInput.broker_connected)

    def broker_disconnected(self, client: Any, reason: str) -> None:
        """The broker connection is down: everything in flight is lost."""
        self.acks.fail_all(LinkDown(f"broker connection of link {self.link_name} lost: {reason}"))
        self._feed(LinkInput.broker_disconnected)

    def broker_subscribed(self, client: Any, topic_filter: str, granted_qos: int) -> None:
        """A SUBACK arrived; the link is subscribed once its own filter is acknowledged."""
        if topic_filter != self.subscription:
            return
        transition = self._feed(LinkInput.fully_subscribed)
        if transition.changed and transition.new is LinkState.awaiting_peer:
            # Find out quickly whether the peer is there.
            self.liveness.ping_now()

    def broker_subscribe_failed(self, client: Any, topic_filter: str, reason: str) -> None:
        """The broker refused the link's subscription."""
        if topic_filter != self.subscription:
            return
        self._problem("error", f"subscription {topic_filter} refused on link {self.link_name}", reason)
        self._feed(LinkInput.subscription_lost)

    # --- receiving --------------------------------------------------------------

    def _frame_checked(self, message: Message) -> None:
        # Looked up per frame: tests and interop helpers wrap receive_frame on the instance.
        self.receive_frame(message)

    def _peer_gone(self, reason: str) -> None:
        """The intake accepted a gone announcement of the peer (its Last Will, or its stop announcement)."""
        transition = self._feed(LinkInput.peer_gone)
        if transition.changed:
            self.log.warn("link {link_name}: the peer is gone ({reason})", link_name=self.link_name, reason=reason)
            if self.machine.is_connected:
                self.liveness.ping_now()  # a probe: the link is back as soon as the peer answers

    def receive_frame(self, message: Message) -> None:
        """Handle a decoded frame from the peer (after topic and header checks)."""
        header = message.header
        self.stats.messages_in[header.message_type] += 1
        self.liveness.received()
        payload = message.payload
        if isinstance(payload, Ack):
            # The ack is applied before the frame counts as "heard": if it re-activates the
            # link, the outbox then loads a store that no longer holds the acked event.
            message_id = payload.ack_message_id
            self.evidence.ack_received()
            self._confirming = None  # whatever was suspected, the peer is answering
            in_time = self.acks.is_expected(message_id)
            self.acks.acked(message_id)
            try:
                self.listener.link_acked(self, message_id, self.acks.last_rtt if in_time else None)
            except Exception:
                self.log.failure("link listener failed on an ack on {link_name}", link_name=self.link_name)
            self._feed(LinkInput.message_from_peer)
            return
        self._feed(LinkInput.message_from_peer)
        if isinstance(payload, Ping):
            self._send_ack(header.message_id)
            announced = payload.extra.get(CAPABILITIES_FIELD)
            if isinstance(announced, list):
                # Only a gwproactor peer puts capabilities in its pings: answering it with a Hello
                # is safe (a 4.x peer would log a decode error for every gwproactor.hello).
                self.peer_capabilities = frozenset(str(c) for c in announced)
                self.send_hello()
            return
        if isinstance(payload, Hello):
            self.peer_capabilities = frozenset(str(c) for c in payload.capabilities)
            self.log.info(
                "link {link_name}: peer announced {capabilities} (version {version})",
                link_name=self.link_name,
                capabilities=sorted(self.peer_capabilities),
                version=payload.version,
            )
            return
        # Accepted synchronously (the usual case: handle_event returned a plain value), the
        # ack goes at once, without a Deferred; a Deferred result is acked when it fires.
        try:
            accepted = self.listener.link_message(self, message)
        except Exception:
            self._accept_failed(Failure(), message)
            return
        if isinstance(accepted, Deferred):
            if header.ack_required:
                accepted.addCallback(lambda _: self._send_ack(header.message_id))
            accepted.addErrback(self._accept_failed, message)
        elif header.ack_required:
            self._send_ack(header.message_id)

    def _accept_failed(self, failure: Failure, message: Message) -> None:
        self.log.failure(
            "link {link_name}: a {message_type} message {message_id} was not accepted (not acked)",
            failure,
            link_name=self.link_name,
            message_type=message.header.message_type,
            message_id=message.header.message_id,
        )
        self._problem(
            "error",
            f"a {message.header.message_type} message on link {self.link_name} was not accepted",
            failure.getErrorMessage(),
        )

    def _problem(self, problem_type: str, summary: str, details: str) -> None:
        self.log.warn("{summary}: {details}", summary=summary, details=details, link_name=self.link_name)
        try:
            self.listener.link_problem(self, problem_type, summary, details)
        except Exception:
            self.log.failure("link listener failed on a problem of {link_name}", link_name=self.link_name)

    # --- sending ------------------------------------------------------------------

    def send(self, payload: Any, *, ack_required: bool | None = None) -> Deferred:
        """Send ``payload`` to the peer.

        Returns a Deferred: for an ack-required message it fires with the round
        trip time when the peer acks, or fails with
        :class:`~gwproactor.errors.AckTimeout` / :class:`~gwproactor.errors.LinkDown`
        / :class:`~gwproactor.errors.NotConnectedError`; otherwise it fires when
        the broker connection has taken the frame.
        """
        message = make_message(self.own_long_name, self.peer_short_name, payload, ack_required=ack_required)
        return self.send_message(message)

    def send_message(self, message: Message) -> Deferred:
        """Publish a complete envelope (its header must be from us to the peer)."""
        return self._publish(message)

    @property
    def capabilities(self) -> list[str]:
        """What this side offers the peer (``["batch1"]`` when batching is configured)."""
        if self.batch_max <= 1:
            return []
        return [BATCH_CAPABILITY, ZLIB_CAPABILITY] if self.compress else [BATCH_CAPABILITY]

    def announce(self) -> None:
        """Offer our capabilities in a ping (the link just became active; only when batching is configured).

        The ping is a plain ``gridworks.ping`` with one extra field, which a gridworks-proactor 4.x
        peer ignores (and acks).  A gwproactor peer answers with a
        :class:`~gwproactor.message.Hello` carrying its own capabilities.  Heartbeat pings carry
        nothing extra.
        """
        caps = self.capabilities
        if caps and self.machine.is_connected:
            d = self.send(Ping(extra={CAPABILITIES_FIELD: caps}))
            d.addErrback(lambda f: f.trap(AckTimeout, LinkDown, NotConnectedError, PublishFailed))

    def send_hello(self) -> None:
        """Tell a gwproactor peer our capabilities (in answer to its capability ping; not acked)."""
        if not self.capabilities:
            return
        from gwproactor._version import __version__

        d = self.send(Hello(capabilities=self.capabilities, version=__version__), ack_required=False)
        d.addErrback(lambda f: f.trap(NotConnectedError, PublishFailed))

    def send_batch(self, batch_id: str, stored_events: list[bytes]) -> Deferred:
        """Send stored event payloads (their JSON as stored) as one :class:`~gwproactor.message.EventBatch`.

        The frame is assembled from the stored bytes without decoding them.  The
        Deferred fires on the peer's ack of ``batch_id``, like :meth:`send`.
        """
        data = self._batch_frames.encode(batch_id, stored_events)
        header = make_message(self.own_long_name, self.peer_short_name, EventBatch(batch_id=batch_id),
                              ack_required=True, message_id=batch_id).header
        if self.compress and ZLIB_CAPABILITY in self.peer_capabilities:
            self.stats.compressed_batches_sent += 1
            return self.send_message(RawFrame(header, compress_batch_frame(data), COMPRESSED_BATCH_TYPE))  # type: ignore[arg-type]
        return self.send_message(RawFrame(header, data))  # type: ignore[arg-type]

    def _publish(self, message: Message) -> Deferred:
        header = message.header
        try:
            if isinstance(message, RawFrame):
                data, wire_type = message.data, message.wire_type or header.message_type
            else:
                data, wire_type = self._codec.encode(message), header.message_type
        except Exception:
            return fail()
        ack = self.acks.expect(header.message_id, self.evidence.frame_sent()) if header.ack_required else None
        try:
            topic = self._topics.get(wire_type)
            if topic is None:
                topic = self._topics[wire_type] = topic_for(self.own_long_name, self.peer_short_name, wire_type)
            published = self.broker.publish(topic, data, self.qos)
        except Exception:
            published = fail()
        self.liveness.sent()
        self.stats.messages_out[header.message_type] += 1
        self.stats.bytes_out += len(data)
        if ack is None:
            published.addErrback(self._publish_failed_plain)
            return published
        published.addErrback(self._publish_failed_acked, header.message_id)
        return ack

    def _publish_failed_plain(self, failure: Failure) -> Failure:
        self.stats.publish_failures += 1
        return failure

    def _publish_failed_acked(self, failure: Failure, message_id: str) -> None:
        # A lost publish fails the caller's ack Deferred at once rather than after the ack timeout.
        self.stats.publish_failures += 1
        failure.trap(NotConnectedError, PublishFailed)
        self.acks.fail(message_id, LinkDown(f"publish on link {self.link_name} failed: {failure.getErrorMessage()}"))

    def _send_ack(self, message_id: str) -> None:
        self.stats.acks_sent += 1
        acks = self._ack_frames
        try:
            frame = RawFrame(acks.header, acks.encode(message_id))
        except Exception:
            d = fail()
        else:
            d = self.send_message(frame)  # type: ignore[arg-type]
        d.addErrback(lambda f: f.trap(NotConnectedError, PublishFailed))

    def _send_ping(self) -> None:
        if not self.machine.is_connected:
            return
        d = self.send(Ping())
        d.addErrback(lambda f: f.trap(AckTimeout, LinkDown, NotConnectedError, PublishFailed))

    def probe(self) -> None:
        """Ping the peer now (while connected), e.g. after re-sending a frame whose ack timed out.

        The ping's ack arrives after the frame was sent, so if the peer is there, the frame's
        own timeout is not mistaken for the peer going silent.
        """
        if self.machine.is_connected:
            self.liveness.ping_now()

    # --- timers -----------------------------------------------------------------

    def _ack_timed_out(self, message_id: str, number: object) -> None:
        state = self.machine.state
        if state in PEER_HEARD_STATES and not self.evidence.is_evidence(number):
            # Sent before the peer was heard again, or a later frame was acked since:
            # the peer is there; this one frame got no ack.  The caller's Deferred still fails.
            self.stats.ack_timeouts_discounted += 1
            self.log.info(
                "link {link_name}: no ack for {message_id}, but the peer answered since it was sent; link stays {state}",
                link_name=self.link_name,
                message_id=message_id,
                state=state.value,
            )
            return
        if state in PEER_HEARD_STATES:
            if self._confirming is not None and number != self._confirming:
                return  # a probe is out: its own timeout decides
            if self._confirming is None:
                # Nothing was acked since this frame went out: ask the peer once more before
                # counting it, so one frame the peer refuses is not taken for a silent peer.
                before = self.evidence.sent
                self.liveness.ping_now()
                if self.evidence.sent > before:
                    self._confirming = self.evidence.sent
                    self.stats.probes += 1
                    self.log.info(
                        "link {link_name}: no ack for {message_id}; probing the peer",
                        link_name=self.link_name,
                        message_id=message_id,
                    )
                    return
            self._confirming = None
            self.stats.ack_timeouts_counted += 1
            self.log.warn(
                "link {link_name}: no ack for {message_id} within the ack timeout, nor for a probe after it",
                link_name=self.link_name,
                message_id=message_id,
            )
            self._feed(LinkInput.ack_timeout)
        elif self._outage is not None:
            self._outage[2] += 1  # counted in the summary logged when the link is back
        if self.machine.is_connected:
            # Keep one probe outstanding so the link comes back as soon as the peer answers.
            self.liveness.ping_now()

    def _deadline_expired(self) -> None:
        heard = self.machine.state in PEER_HEARD_STATES
        # Only news while the peer counted as heard; during an outage it is part of the summary.
        (self.log.warn if heard else self.log.debug)(
            "link {link_name}: nothing heard from the peer within the receive deadline", link_name=self.link_name
        )
        self._feed(LinkInput.receive_deadline_expired)

    # --- views ----------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view of the link for stats, health checks and test failure messages."""
        return {
            "name": self.link_name,
            "state": self.state.value,
            "peer": self.peer_long_name,
            "upstream": self.upstream,
            "in_flight": self.acks.in_flight,
            "acks": self.acks.stats(),
            "rtt": attrs.asdict(self.acks.rtt),
            "pings_sent": self.liveness.pings_sent,
            "deadlines_expired": self.liveness.deadlines_expired,
            "last_down_reason": self.last_down_reason,
            "recent_transitions": self.recent_transitions,
            "stats": self.stats.as_dict(),
        }

