"""Which ack timeouts count against a link: no flap from frames sent before the peer was heard (issue 12)."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from gwproactor.errors import AckTimeout
from gwproactor.links.machine import AckEvidence, LinkState
from gwproactor.message import Ping, ProblemEvent
from tests.test_link import ACK_TIMEOUT, DEADLINE, HEARTBEAT, PARENT_LONG, Harness


def _pings(h: Harness) -> list[Any]:
    return [m for m in h.sent() if m.header.message_type == "gridworks.ping"]


def _left_active(h: Harness) -> list[Any]:
    return [t for t in h.listener.transitions if t.left_active]


def test_evidence_numbers_frames_in_send_order() -> None:
    """AckEvidence: a frame counts unless the peer was heard again, or an ack arrived, after it was sent."""
    e = AckEvidence()
    first = e.frame_sent()
    second = e.frame_sent()
    assert e.is_evidence(first) and e.is_evidence(second)
    e.ack_received()
    third = e.frame_sent()
    assert not e.is_evidence(first) and not e.is_evidence(second) and e.is_evidence(third)
    e.peer_heard_again()
    assert not e.is_evidence(third)
    assert e.is_evidence(None)  # an untagged timeout always counts


def test_stale_ping_does_not_flap_a_link_that_just_became_active() -> None:
    """A ping sent while waiting for the peer times out after the peer appeared: the link stays active."""
    h = Harness()
    h.link.startService()
    h.broker.connect()
    assert h.link.state is LinkState.awaiting_peer
    stale = _pings(h)
    assert len(stale) == 1  # the probe sent on full subscription
    h.clock.advance(ACK_TIMEOUT - 1)
    h.from_peer(Ping())  # the peer appears; its ping is not an ack of ours
    assert h.link.state is LinkState.active
    h.clock.advance(1)  # the stale probe's ack timeout
    assert h.link.state is LinkState.active
    assert _left_active(h) == []
    assert h.link.stats.ack_timeouts_discounted == 1
    assert h.link.stats.ack_timeouts_counted == 0
    assert "gridworks.event.comm.response.timeout" not in h.listener.comm_events()


def test_probes_while_the_peer_is_away_do_not_flap_when_it_returns() -> None:
    """After an outage, the probes sent while the peer was away time out harmlessly once it is back."""
    h = Harness()
    h.activate()
    h.clock.advance(DEADLINE)  # the peer went silent
    assert h.link.state is LinkState.awaiting_peer
    for _ in range(4):  # a probe outstanding all the time, re-sent after each timeout
        h.clock.advance(ACK_TIMEOUT)
    assert h.link.state is LinkState.awaiting_peer
    h.clock.advance(ACK_TIMEOUT / 2)
    h.from_peer(Ping())  # back
    assert h.link.state is LinkState.active
    h.clock.advance(ACK_TIMEOUT)
    assert h.link.state is LinkState.active
    assert len(_left_active(h)) == 1  # only the real outage


def test_timeout_with_nothing_heard_since_still_counts() -> None:
    """A frame sent while active that gets no ack, with no ack since, still takes the link out of active."""
    h = Harness()
    h.activate()
    d = h.link.send(ProblemEvent(src="x", problem_type="warning", summary="s", details=""))
    d.addErrback(lambda f: f.trap(AckTimeout, Exception))
    h.clock.advance(ACK_TIMEOUT)
    assert h.link.state is LinkState.active and h.link.stats.probes == 1  # confirming first
    h.clock.advance(ACK_TIMEOUT)
    assert h.link.state is LinkState.awaiting_peer
    assert h.link.stats.ack_timeouts_counted == 1


def test_a_peer_that_talks_but_never_acks_still_takes_the_link_down() -> None:
    """One-way loss: the peer's pings arrive but none of our frames is acked: the timeout counts."""
    h = Harness()
    h.activate()
    d = h.link.send(ProblemEvent(src="x", problem_type="warning", summary="s", details=""))
    d.addErrback(lambda f: None)
    h.clock.advance(1)
    h.from_peer(Ping())  # heard, but no ack of ours
    h.clock.advance(ACK_TIMEOUT - 1)
    h.from_peer(Ping())  # still heard; the probe is not acked either
    h.clock.advance(ACK_TIMEOUT)
    assert h.link.state is LinkState.awaiting_peer


def test_a_lone_unacked_frame_is_confirmed_by_a_probe_and_the_link_stays_active() -> None:
    """Nothing acked since a frame timed out: a probe goes out; its ack keeps the link active."""
    h = Harness()
    h.activate()
    d = h.link.send(ProblemEvent(src="x", problem_type="warning", summary="refused", details=""))
    d.addErrback(lambda f: None)
    h.sent()
    h.clock.advance(ACK_TIMEOUT)
    [probe] = _pings(h)
    h.ack_from_peer(probe.header.message_id)
    h.clock.advance(ACK_TIMEOUT)
    assert h.link.state is LinkState.active
    assert (h.link.stats.probes, h.link.stats.ack_timeouts_counted) == (1, 0)


def test_one_unacked_frame_among_acked_ones_keeps_the_link_active() -> None:
    """A frame the peer never acks while it acks later frames: its Deferred fails, the link stays active."""
    h = Harness()
    h.activate()
    failures: list[Any] = []
    bad = h.link.send(ProblemEvent(src="x", problem_type="warning", summary="bad", details=""))
    bad.addErrback(failures.append)
    good = h.link.send(ProblemEvent(src="x", problem_type="warning", summary="good", details=""))
    sent = h.sent()
    h.ack_from_peer(sent[-1].header.message_id)
    assert h.clock.advance(ACK_TIMEOUT) is None
    assert good.called
    assert len(failures) == 1 and failures[0].check(AckTimeout)
    assert h.link.state is LinkState.active
    assert h.link.stats.ack_timeouts_discounted == 1


def test_ack_is_applied_before_the_frame_reactivates_the_link() -> None:
    """An ack that brings the link back is reported to the listener before the transition to active."""
    h = Harness()
    h.activate()
    h.clock.advance(DEADLINE)
    assert h.link.state is LinkState.awaiting_peer
    probe = _pings(h)[-1]
    order: list[str] = []
    h.listener.link_acked = lambda link, mid, rtt: order.append("acked")  # type: ignore[method-assign]
    h.listener.link_transition = lambda link, t: order.append(t.new.value)  # type: ignore[method-assign]
    h.ack_from_peer(probe.header.message_id)
    assert order == ["acked", "active"]


def test_heartbeat_keeps_idle_link_active_across_many_timeouts() -> None:
    """An idle, healthy pair: heartbeats acked in time, no timeout discounted or counted."""
    h = Harness()
    h.activate()
    for _ in range(10):
        h.clock.advance(HEARTBEAT)
        for m in _pings(h):
            h.ack_from_peer(m.header.message_id)
        h.from_peer(Ping())
    assert h.link.state is LinkState.active
    assert (h.link.stats.ack_timeouts_counted, h.link.stats.ack_timeouts_discounted) == (0, 0)
    assert isinstance(h.clock, Clock)


def test_an_outage_logs_a_few_lines_not_one_per_timeout() -> None:
    """A 5-minute outage: one warning for the timeout, one for leaving active, one summary when back; stop is INFO."""
    from twisted.logger import LogLevel, globalLogPublisher

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        h = Harness()
        h.activate()
        h.clock.advance(HEARTBEAT)  # a heartbeat ping goes out; the peer is gone from now on
        for _ in range(300):
            h.clock.advance(1)
        h.from_peer(Ping())
        assert h.link.state is LinkState.active
        h.link.stopService()
    finally:
        globalLogPublisher.removeObserver(events.append)
    mine = [e for e in events if e.get("link_name") == "parent"]
    warnings = [e for e in mine if e["log_level"] >= LogLevel.warn]
    assert len(warnings) == 2, [e["log_format"] for e in warnings]
    summary = [e for e in mine if e["log_format"].startswith("link {link_name} active again")]
    assert len(summary) == 1 and summary[0]["probes"] >= 50
    stop = [e for e in mine if e["log_format"].startswith("link {link_name} left active") and e["input"] == "stop"]
    assert len(stop) == 1 and stop[0]["log_level"] == LogLevel.info


def test_the_peers_will_takes_the_link_out_of_active_at_once() -> None:
    """The broker publishes the peer's Last Will: the link leaves active now, not at the receive deadline."""
    from gwproactor.message import will_payload, will_topic

    h = Harness()
    h.activate()
    h.broker.deliver(will_topic(PARENT_LONG), will_payload(PARENT_LONG, "connection lost"))
    assert h.link.state is LinkState.awaiting_peer
    assert h.link.recent_transitions[-1][1] == "peer_gone" and h.link.stats.peer_gone == 1
    assert "gridworks.event.comm.response.timeout" in h.listener.comm_events()
    assert _pings(h)  # probing: back as soon as the peer answers
    h.from_peer(Ping())
    assert h.link.state is LinkState.active


def test_a_will_that_is_not_the_peers_is_rejected() -> None:
    """A will naming another process, or garbage on the will topic, changes nothing and is counted."""
    from gwproactor.message import will_payload, will_topic

    h = Harness()
    h.activate()
    h.broker.deliver(will_topic(PARENT_LONG), will_payload("d1.someone.else", "connection lost"))
    h.broker.deliver(will_topic(PARENT_LONG), b"\xff not json")
    assert h.link.state is LinkState.active
    assert h.link.stats.rejected == 2 and h.link.stats.peer_gone == 0


def test_a_stale_probe_is_not_an_ack_worth_waiting_for() -> None:
    """awaiting_acks leaves out the probe sent before the peer appeared (shutdown does not wait for it)."""
    h = Harness()
    h.link.startService()
    h.broker.connect()  # probe sent; nobody there
    h.from_peer(Ping())
    assert h.link.state is LinkState.active
    assert h.link.acks.in_flight == 1 and h.link.awaiting_acks == 0
    d = h.link.send(ProblemEvent(src="x", problem_type="warning", summary="s", details=""))
    d.addErrback(lambda f: None)
    assert h.link.awaiting_acks == 1
