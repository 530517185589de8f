"""Unit tests of the Link service on a Clock with the fake MQTT client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gwproactor.errors import AckTimeout, LinkDown
from gwproactor.interfaces import IBrokerObserver, ILinkListener, IMQTTClient
from gwproactor.links.link import Link
from gwproactor.links.machine import LinkState
from gwproactor.message import Codec, Ping, ProblemEvent, StartupEvent, make_ack, make_message, topic_for
from gwproactor_test.fakes import FakeMQTTClient, topic_matches
from gwproactor_test.faulty_mqtt import link_faults

FRAMES = Path(__file__).parent / "data" / "gridworks-4x-frames.jsonl"
CHILD_LONG, CHILD_SHORT = "d1.isone.ct.newhaven.orange1.scada", "s"
PARENT_LONG, PARENT_SHORT = "d1.isone.ct.newhaven.orange1", "a"
ACK_TIMEOUT, HEARTBEAT, DEADLINE = 5.0, 10.0, 30.0


@implementer(ILinkListener)
class Listener:
    """Records what a link tells its owner; accepts messages at once (or via a Deferred)."""

    def __init__(self) -> None:
        self.transitions: list[Any] = []
        self.messages: list[Any] = []
        self.acked: list[tuple[str, Any]] = []
        self.problems: list[tuple[str, str, str]] = []
        self.accept: Deferred | None = None

    def link_transition(self, link: Any, transition: Any) -> None:
        self.transitions.append(transition)

    def link_message(self, link: Any, message: Any) -> Any:
        self.messages.append(message)
        return self.accept

    def link_acked(self, link: Any, message_id: str, rtt: Any) -> None:
        self.acked.append((message_id, rtt))

    def link_problem(self, link: Any, problem_type: str, summary: str, details: str) -> None:
        self.problems.append((problem_type, summary, details))

    def comm_events(self) -> list[str]:
        return [name for t in self.transitions for name in t.comm_events]


class Harness:
    """A child-side link to the parent, on a Clock and a fake broker."""

    def __init__(self, broker: FakeMQTTClient | None = None, clock: Clock | None = None, name: str = "parent") -> None:
        self.clock = clock or Clock()
        self.broker = broker or FakeMQTTClient()
        self.codec = Codec()
        self.listener = Listener()
        self.link = Link(
            name,
            own_long_name=CHILD_LONG,
            own_short_name=CHILD_SHORT,
            peer_long_name=PARENT_LONG,
            peer_short_name=PARENT_SHORT,
            broker=self.broker,
            codec=self.codec,
            listener=self.listener,
            clock=self.clock,
            ack_timeout_s=ACK_TIMEOUT,
            heartbeat_s=HEARTBEAT,
            receive_deadline_s=DEADLINE,
        )

    def from_peer(self, payload: Any, **kwargs: Any) -> None:
        message = make_message(PARENT_LONG, CHILD_SHORT, payload, **kwargs)
        self.broker.deliver(topic_for(PARENT_LONG, CHILD_SHORT, message.header.message_type), self.codec.encode(message))

    def ack_from_peer(self, message_id: str) -> None:
        message = make_ack(PARENT_LONG, CHILD_SHORT, message_id)
        self.broker.deliver(topic_for(PARENT_LONG, CHILD_SHORT, "gridworks.ack"), self.codec.encode(message))

    def sent(self) -> list[Any]:
        return [self.codec.decode(p.payload) for p in self.broker.take_published()]

    def activate(self) -> None:
        """Start, connect, subscribe and hear from the peer: the link is active."""
        self.link.startService()
        self.broker.connect()
        ping = self.sent()[-1]
        self.ack_from_peer(ping.header.message_id)
        assert self.link.state is LinkState.active


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_fakes_and_link_provide_interfaces(h: Harness) -> None:
    """The fake MQTT client, the link and the test listener provide their interfaces."""
    assert verifyObject(IMQTTClient, h.broker)
    assert verifyObject(IBrokerObserver, h.link)
    assert verifyObject(ILinkListener, h.listener)


def test_topic_matches() -> None:
    """The fake's topic matching follows MQTT wildcards."""
    assert topic_matches("gw/a/to/b/#", "gw/a/to/b/x-y")
    assert topic_matches("gw/+/to/b/#", "gw/q/to/b/x")
    assert not topic_matches("gw/a/to/b/#", "gw/a/to/c/x")
    assert topic_matches("a/+", "a/b") and not topic_matches("a/+", "a/b/c")


def test_subscribes_peer_filter(h: Harness) -> None:
    """A link subscribes gw/<peer long dashed>/to/<own short>/#."""
    h.link.startService()
    assert h.link.subscription == "gw/d1-isone-ct-newhaven-orange1/to/s/#"
    assert h.link.state is LinkState.connecting


def test_comes_up_to_active(h: Harness) -> None:
    """Connect → subscribed (ping sent at once) → peer's ack → active, with the 4.x comm events."""
    h.link.startService()
    h.broker.connect()
    assert h.link.state is LinkState.awaiting_peer
    frames = h.sent()
    assert [f.header.message_type for f in frames] == ["gridworks.ping"]
    assert frames[0].header.ack_required
    h.ack_from_peer(frames[0].header.message_id)
    assert h.link.state is LinkState.active
    assert h.listener.comm_events() == [
        "gridworks.event.comm.mqtt.connect",
        "gridworks.event.comm.mqtt.fully.subscribed",
        "gridworks.event.comm.peer.active",
    ]
    assert h.listener.acked[0][0] == frames[0].header.message_id


def test_started_on_connected_broker(h: Harness) -> None:
    """A link started on a broker connection that is already up and subscribed catches up at once."""
    h.broker.connect()
    h.link.startService()
    assert h.link.state is LinkState.awaiting_peer


def test_message_before_suback_is_awaiting_setup() -> None:
    """A message from the peer before the SUBACK puts the link in awaiting_setup; the SUBACK makes it active."""
    h = Harness(FakeMQTTClient(auto_suback=False))
    h.link.startService()
    h.broker.connect()
    assert h.link.state is LinkState.awaiting_setup_and_peer
    h.from_peer(Ping())
    assert h.link.state is LinkState.awaiting_setup
    h.broker.suback(h.link.subscription)
    assert h.link.state is LinkState.active


def test_ping_from_peer_is_acked(h: Harness) -> None:
    """A ping from the peer is acked on the same link."""
    h.activate()
    ping = Ping()
    h.from_peer(ping)
    acks = h.sent()
    assert [(m.header.message_type, m.payload.ack_message_id) for m in acks] == [("gridworks.ack", ping.message_id)]
    assert acks[0].header.src == CHILD_LONG and acks[0].header.dst == PARENT_SHORT


def test_ack_required_message_acked_after_acceptance(h: Harness) -> None:
    """An ack-required message is acked only once the listener's Deferred fires."""
    h.activate()
    h.listener.accept = Deferred()
    event = StartupEvent(src=PARENT_LONG)
    h.from_peer(event)
    assert h.sent() == []
    h.listener.accept.callback(None)
    assert [m.payload.ack_message_id for m in h.sent()] == [event.message_id]


def test_rejected_acceptance_not_acked(h: Harness) -> None:
    """If the listener fails to accept a message it is not acked and a problem is reported."""
    h.activate()
    h.listener.accept = Deferred()
    h.from_peer(StartupEvent(src=PARENT_LONG))
    h.listener.accept.errback(RuntimeError("disk on fire"))
    assert h.sent() == []
    assert h.listener.problems and "not accepted" in h.listener.problems[-1][1]


def test_ack_timeout_then_recovery(h: Harness) -> None:
    """An ack timeout confirmed by an unanswered probe moves active → awaiting_peer; a ping's ack recovers."""
    h.activate()
    d = h.link.send(StartupEvent(src=CHILD_LONG))
    failures: list = []
    d.addErrback(failures.append)
    h.sent()
    h.clock.advance(ACK_TIMEOUT)
    assert failures and failures[0].check(AckTimeout)
    assert h.link.state is LinkState.active  # not yet: a probe went out
    probe = [m for m in h.sent() if m.header.message_type == "gridworks.ping"]
    assert len(probe) == 1 and h.link.stats.probes == 1
    h.clock.advance(ACK_TIMEOUT)  # the probe got no ack either
    assert h.link.state is LinkState.awaiting_peer
    assert h.listener.comm_events()[-1] == "gridworks.event.comm.response.timeout"
    pings = [m for m in h.sent() if m.header.message_type == "gridworks.ping"]
    assert len(pings) == 1
    h.ack_from_peer(pings[0].header.message_id)
    assert h.link.state is LinkState.active


def test_late_ack_counted(h: Harness) -> None:
    """An ack after the timeout is counted as late and reported to the listener with rtt None."""
    h.activate()
    event = StartupEvent(src=CHILD_LONG)
    h.link.send(event).addErrback(lambda f: None)
    h.clock.advance(ACK_TIMEOUT)
    h.ack_from_peer(event.message_id)
    assert h.link.acks.stats()["late_acks"] == 1
    assert h.listener.acked[-1] == (event.message_id, None)


def test_ack_resolves_send_with_rtt(h: Harness) -> None:
    """send() of an ack-required payload fires with the round-trip time when acked."""
    h.activate()
    event = StartupEvent(src=CHILD_LONG)
    d = h.link.send(event)
    h.clock.advance(0.25)
    h.ack_from_peer(event.message_id)
    assert d.result == pytest.approx(0.25)


def test_heartbeat_suppressed_by_traffic(h: Harness) -> None:
    """No ping is sent while we keep sending; one is sent after a heartbeat interval of silence."""
    h.activate()
    for _ in range(5):
        h.clock.advance(HEARTBEAT / 2)
        h.link.send(StartupEvent(src=CHILD_LONG), ack_required=False)
        h.from_peer(Ping())
    assert not [m for m in h.sent() if m.header.message_type == "gridworks.ping"]
    h.clock.advance(HEARTBEAT)
    assert [m.header.message_type for m in h.sent()] == ["gridworks.ping"]


def test_receive_deadline_while_streaming(h: Harness) -> None:
    """A silent peer is detected within the receive deadline even while we keep publishing."""
    h.activate()
    t0 = h.clock.seconds()
    while h.link.state is LinkState.active and h.clock.seconds() - t0 < DEADLINE + 5:
        h.link.send(StartupEvent(src=CHILD_LONG), ack_required=False)
        h.clock.advance(1)
    assert h.link.state is LinkState.awaiting_peer
    assert h.clock.seconds() - t0 <= DEADLINE + 1


def test_disconnect_fails_in_flight(h: Harness) -> None:
    """Losing the broker connection fails every ack-waiting send with LinkDown and emits a disconnect event."""
    h.activate()
    d = h.link.send(StartupEvent(src=CHILD_LONG))
    failures: list = []
    d.addErrback(failures.append)
    h.broker.disconnect()
    assert failures[0].check(LinkDown)
    assert h.link.state is LinkState.connecting
    assert h.listener.comm_events()[-1] == "gridworks.event.comm.mqtt.disconnect"


def test_send_while_disconnected_fails_fast(h: Harness) -> None:
    """Sending while the broker is down fails at once (not after the ack timeout)."""
    h.link.startService()
    failures: list = []
    h.link.send(StartupEvent(src=CHILD_LONG)).addErrback(failures.append)
    assert failures and failures[0].check(LinkDown)
    assert h.link.stats.publish_failures == 1


@pytest.mark.parametrize(
    "topic_src,topic_dst,header_src,header_dst",
    [
        ("d1.other", CHILD_SHORT, PARENT_LONG, CHILD_SHORT),
        (PARENT_LONG, CHILD_SHORT, "d1.other", CHILD_SHORT),
        (PARENT_LONG, CHILD_SHORT, PARENT_LONG, "x"),
    ],
)
def test_wrong_src_or_dst_rejected(h: Harness, topic_src: str, topic_dst: str, header_src: str, header_dst: str) -> None:
    """Frames whose topic or header Src/Dst do not match the link are rejected, counted, reported, no state change."""
    h.link.startService()
    h.broker.connect()
    h.sent()
    message = make_message(header_src, header_dst, Ping())
    # Deliver straight to the link's callback so a wrong topic still reaches it.
    h.link._on_mqtt_message(topic_for(topic_src, topic_dst, "gridworks.ping"), h.codec.encode(message))
    assert h.link.state is LinkState.awaiting_peer
    assert h.link.stats.rejected == 1
    assert h.listener.problems and h.sent() == []


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"Header": {}}', b"\xff\xfe"])
def test_undecodable_frame_counted(h: Harness, payload: bytes) -> None:
    """Undecodable frames are counted and reported and cause no state change."""
    h.link.startService()
    h.broker.connect()
    h.broker.deliver(topic_for(PARENT_LONG, CHILD_SHORT, "gridworks.ping"), payload)
    assert h.link.state is LinkState.awaiting_peer
    assert h.link.stats.decode_errors == 1
    assert h.listener.problems[-1][0] == "warning"


def test_hold_and_release_acks(h: Harness) -> None:
    """Acks held by the fault wrapper are not published until released, and release publishes them in order."""
    h.activate()
    link_faults(h.link).hold_acks = True
    pings = [Ping(), Ping(), Ping()]
    for p in pings:
        h.from_peer(p)
    assert h.sent() == []
    assert link_faults(h.link).release_acks(2) == 2
    assert [m.payload.ack_message_id for m in h.sent()] == [p.message_id for p in pings[:2]]
    assert link_faults(h.link).release_acks() == 1


def test_hold_and_release_subacks(h: Harness) -> None:
    """SUBACKs held by the fault wrapper keep the link in awaiting_setup_and_peer until released."""
    link_faults(h.link).hold_subacks = True
    h.link.startService()
    h.broker.connect()
    assert h.link.state is LinkState.awaiting_setup_and_peer
    assert link_faults(h.link).release_subacks() == 1
    assert h.link.state is LinkState.awaiting_peer


def test_hold_and_release_outgoing(h: Harness) -> None:
    """Outgoing frames held by the fault wrapper are published only when released."""
    h.activate()
    link_faults(h.link).hold_outgoing = True
    d = h.link.send(StartupEvent(src=CHILD_LONG), ack_required=False)
    assert h.sent() == [] and not d.called
    link_faults(h.link).hold_outgoing = False
    assert link_faults(h.link).release_outgoing() == 1
    assert d.called and len(h.sent()) == 1


def test_drop_incoming(h: Harness) -> None:
    """With drop_incoming on the fault wrapper, frames from the peer are dropped and counted."""
    h.link.startService()
    h.broker.connect()
    link_faults(h.link).drop_incoming = True
    h.from_peer(Ping())
    assert h.link.state is LinkState.awaiting_peer
    assert link_faults(h.link).dropped == 1


def test_suback_failure_reported() -> None:
    """A refused subscription is reported as a problem and keeps the link out of active."""
    h = Harness(FakeMQTTClient(auto_suback=False))
    h.link.startService()
    h.broker.connect()
    h.broker.suback(h.link.subscription, ok=False)
    assert h.link.state is LinkState.awaiting_setup_and_peer
    assert "refused" in h.listener.problems[-1][1]


def test_two_links_share_one_broker() -> None:
    """Two links on one broker connection each follow their own peer."""
    clock, broker = Clock(), FakeMQTTClient()
    first = Harness(broker, clock, name="parent")
    second = Harness(broker, clock, name="other")
    second.link.peer_long_name = "d1.other"
    second.link._peer_dashed = "d1-other"
    from gwproactor.message import subscription_filter

    second.link.subscription = subscription_filter("d1.other", CHILD_SHORT)
    first.link.startService()
    second.link.startService()
    broker.connect()
    assert first.link.state is LinkState.awaiting_peer and second.link.state is LinkState.awaiting_peer
    pings = [first.codec.decode(p.payload) for p in broker.take_published()]
    first.ack_from_peer(pings[0].header.message_id)
    assert first.link.state is LinkState.active
    assert second.link.state is LinkState.awaiting_peer
    broker.disconnect()
    assert first.link.state is LinkState.connecting and second.link.state is LinkState.connecting


def test_stop_leaves_no_timers(h: Harness) -> None:
    """Stopping a link cancels its timers and fails what waits for acks."""
    h.activate()
    failures: list = []
    h.link.send(StartupEvent(src=CHILD_LONG)).addErrback(failures.append)
    h.link.stopService()
    assert h.link.state is LinkState.stopped
    assert failures[0].check(LinkDown)
    assert h.clock.getDelayedCalls() == []


def _frames() -> list[dict]:
    return [json.loads(line) for line in FRAMES.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("frame", _frames(), ids=lambda f: f["payload"]["Header"]["MessageType"])
def test_captured_4x_frames_accepted(frame: dict) -> None:
    """Every captured 4.x frame is accepted on a link configured with its names, and our frame decodes the same."""
    header = frame["payload"]["Header"]
    to_parent = header["Src"] == CHILD_LONG
    clock, broker, codec, listener = Clock(), FakeMQTTClient(), Codec(), Listener()
    own = (PARENT_LONG, PARENT_SHORT) if to_parent else (CHILD_LONG, CHILD_SHORT)
    peer = (CHILD_LONG, CHILD_SHORT) if to_parent else (PARENT_LONG, PARENT_SHORT)
    link = Link(
        "peer",
        own_long_name=own[0],
        own_short_name=own[1],
        peer_long_name=peer[0],
        peer_short_name=peer[1],
        broker=broker,
        codec=codec,
        listener=listener,
        clock=clock,
    )
    link.startService()
    broker.connect()
    broker.take_published()
    assert broker.deliver(frame["topic"], json.dumps(frame["payload"]).encode()) == 1
    assert link.stats.rejected == 0 and link.stats.decode_errors == 0
    assert link.state in (LinkState.active, LinkState.awaiting_peer)
    received = codec.decode(json.dumps(frame["payload"]).encode())
    if header["AckRequired"]:
        if header["MessageType"] != "gridworks.ping":
            assert listener.messages[-1] == received
        acks = [codec.decode(p.payload) for p in broker.take_published()]
        assert [a.payload.ack_message_id for a in acks] == [header["MessageId"]]
    # Our own frame for the same payload, from the same side, decodes with the same fields.
    ours = make_message(header["Src"], header["Dst"], received.payload, ack_required=header["AckRequired"])
    assert json.loads(codec.encode(ours)) == frame["payload"]
    link.stopService()


def test_problem_event_payload_roundtrip(h: Harness) -> None:
    """Problem events sent on a link round-trip through the codec unchanged."""
    h.activate()
    event = ProblemEvent(src=CHILD_LONG, problem_type="warning", summary="s", details="d")
    h.link.send(event).addErrback(lambda f: None)
    (frame,) = h.sent()
    assert frame.payload == event
