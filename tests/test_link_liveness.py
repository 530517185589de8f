"""Tests of the heartbeat and receive-deadline timers (gwproactor.links.liveness) on a deterministic Clock."""

from __future__ import annotations


import pytest
from twisted.internet.task import Clock

from gwproactor.errors import ConfigError
from gwproactor.links.liveness import Liveness

HEARTBEAT = 10.0
DEADLINE = 30.0


class Probe:
    """Records the clock times at which pings were sent and the deadline fired."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pings: list[float] = []
        self.deadlines: list[float] = []

    def ping(self) -> None:
        self.pings.append(self.clock.seconds())

    def deadline(self) -> None:
        self.deadlines.append(self.clock.seconds())


def make(heartbeat: float = HEARTBEAT, deadline: float = DEADLINE) -> tuple[Clock, Probe, Liveness]:
    clock = Clock()
    probe = Probe(clock)
    return clock, probe, Liveness(clock, heartbeat, deadline, probe.ping, probe.deadline)


def tick(clock: Clock, seconds: float, step: float, each=lambda: None) -> None:
    """Advance ``clock`` by ``seconds`` in ``step`` increments, calling ``each`` after every step."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        each()


def test_heartbeat_fires_when_idle() -> None:
    """With nothing sent, a ping goes out every heartbeat interval."""
    clock, probe, live = make()
    live.start()
    clock.advance(HEARTBEAT - 0.25)
    assert probe.pings == []
    clock.advance(0.25)
    assert probe.pings == [10.0]
    tick(clock, 2 * HEARTBEAT, 1.0, live.received)  # the peer keeps talking; we say nothing
    assert probe.pings == pytest.approx([10.0, 20.0, 30.0])
    assert live.pings_sent == 3
    assert probe.deadlines == []


def test_heartbeat_suppressed_by_traffic() -> None:
    """Frames sent more often than the heartbeat interval suppress pings; the ping follows the last frame."""
    clock, probe, live = make()
    live.start()

    def both() -> None:
        live.sent()
        live.received()

    tick(clock, 100.0, HEARTBEAT / 2, both)
    assert probe.pings == []
    clock.advance(3.0)
    live.sent()  # last frame at t=103
    clock.advance(HEARTBEAT - 0.25)
    assert probe.pings == []
    clock.advance(0.25)
    assert probe.pings == pytest.approx([113.0])


def test_sent_is_cheap_and_does_not_reschedule() -> None:
    """sent() and received() only record times: the same two delayed calls stay scheduled."""
    clock, _, live = make()
    live.start()
    calls = list(clock.getDelayedCalls())
    assert len(calls) == 2
    for _ in range(1000):
        live.sent()
        live.received()
    assert clock.getDelayedCalls() == calls


def test_receive_deadline_fires_while_streaming_to_a_silent_peer() -> None:
    """The deadline fires once, on time, while we keep sending but hear nothing; our sending never resets it."""
    clock, probe, live = make()
    live.start()
    tick(clock, DEADLINE - 1.0, 1.0, live.sent)
    assert probe.deadlines == []
    tick(clock, 1.0, 1.0, live.sent)
    assert probe.deadlines == pytest.approx([DEADLINE])
    assert (live.deadlines_expired, live.deadline_armed) == (1, False)
    tick(clock, 5 * DEADLINE, 1.0, live.sent)
    assert probe.deadlines == pytest.approx([DEADLINE])
    assert probe.pings == []  # we were streaming: no heartbeat needed


def test_receive_deadline_reset_by_received() -> None:
    """A received frame restarts the deadline from that moment."""
    clock, probe, live = make()
    live.start()
    clock.advance(DEADLINE - 1.0)
    live.received()  # t = 29
    clock.advance(DEADLINE - 0.25)
    assert probe.deadlines == []
    clock.advance(0.25)
    assert probe.deadlines == pytest.approx([2 * DEADLINE - 1.0])


def test_deadline_rearms_only_on_next_received() -> None:
    """After the deadline fired, only the next received() starts it again."""
    clock, probe, live = make()
    live.start()
    clock.advance(DEADLINE)
    assert probe.deadlines == pytest.approx([DEADLINE])
    clock.advance(10 * DEADLINE)
    assert len(probe.deadlines) == 1
    assert not live.deadline_armed
    live.received()  # t = 330
    assert live.deadline_armed
    clock.advance(DEADLINE)
    assert probe.deadlines == pytest.approx([DEADLINE, 11 * DEADLINE + DEADLINE])


def test_ping_now_sends_at_once_and_postpones_heartbeat() -> None:
    """ping_now sends a ping immediately; the next heartbeat comes one interval later."""
    clock, probe, live = make()
    live.start()
    clock.advance(4.0)
    live.ping_now()
    assert probe.pings == pytest.approx([4.0])
    clock.advance(HEARTBEAT - 0.25)
    assert probe.pings == pytest.approx([4.0])
    clock.advance(0.25)
    assert probe.pings == pytest.approx([4.0, 14.0])
    assert live.last_sent == pytest.approx(14.0)


def test_stop_cancels_everything() -> None:
    """stop() leaves no delayed call; afterwards nothing fires and sent/received/ping_now do nothing."""
    clock, probe, live = make()
    live.start()
    clock.advance(5.0)
    live.stop()
    assert clock.getDelayedCalls() == []
    assert not live.running
    live.received()
    live.sent()
    live.ping_now()
    clock.advance(10 * DEADLINE)
    assert (probe.pings, probe.deadlines) == ([], [])
    assert clock.getDelayedCalls() == []
    live.stop()  # idempotent
    assert clock.getDelayedCalls() == []


def test_stop_after_deadline_fired_leaves_nothing() -> None:
    """stop() after the deadline expired (heartbeat still running) also leaves no delayed call."""
    clock, _, live = make()
    live.start()
    clock.advance(DEADLINE)
    live.stop()
    assert clock.getDelayedCalls() == []


def test_start_is_idempotent_and_restartable() -> None:
    """A second start() while running changes nothing; start() after stop() counts afresh."""
    clock, probe, live = make()
    live.start()
    clock.advance(5.0)
    live.start()
    assert len(clock.getDelayedCalls()) == 2
    clock.advance(5.0)
    assert probe.pings == pytest.approx([10.0])
    live.stop()
    clock.advance(100.0)  # t = 110
    live.start()
    tick(clock, DEADLINE, 1.0)
    assert probe.deadlines == pytest.approx([140.0])
    assert probe.pings == pytest.approx([10.0, 120.0, 130.0, 140.0])
    live.stop()
    assert clock.getDelayedCalls() == []


def test_float_steps_do_not_spin() -> None:
    """Sub-second intervals advanced in float steps fire on time and terminate (no rounding spin)."""
    clock, probe, live = make(heartbeat=0.1, deadline=0.3)
    live.start()
    tick(clock, 1.0, 0.1)
    assert len(probe.pings) == 10
    assert len(probe.deadlines) == 1
    tick(clock, 1.0, 0.01, live.sent)
    assert len(probe.pings) == 10
    live.stop()
    assert clock.getDelayedCalls() == []


def test_callback_exceptions_are_logged_and_timers_keep_running(log_events: list[dict]) -> None:
    """send_ping / on_deadline raising is logged; the heartbeat keeps going."""
    clock = Clock()

    def broken() -> None:
        raise RuntimeError("boom")

    live = Liveness(clock, HEARTBEAT, DEADLINE, broken, broken)
    live.start()
    tick(clock, DEADLINE, 1.0)
    assert live.pings_sent == 3
    assert live.deadlines_expired == 1
    formats = [e.get("log_format") for e in log_events if "log_failure" in e]
    assert formats.count("send_ping failed") == 3
    assert formats.count("on_deadline callback failed") == 1
    live.stop()
    assert clock.getDelayedCalls() == []


def test_send_ping_may_stop_liveness() -> None:
    """A send_ping that stops the liveness (link going down) leaves no delayed call behind."""
    clock = Clock()
    live: Liveness

    def ping_and_stop() -> None:
        live.stop()

    live = Liveness(clock, HEARTBEAT, DEADLINE, ping_and_stop, lambda: None)
    live.start()
    clock.advance(HEARTBEAT)
    assert clock.getDelayedCalls() == []


def test_on_deadline_may_restart_liveness() -> None:
    """An on_deadline that restarts the liveness ends with exactly the two fresh timers."""
    clock = Clock()
    live: Liveness

    def restart() -> None:
        live.stop()
        live.start()

    live = Liveness(clock, HEARTBEAT, DEADLINE, lambda: None, restart)
    live.start()
    clock.advance(DEADLINE)
    assert len(clock.getDelayedCalls()) == 2
    assert live.deadline_armed
    live.stop()
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize(("heartbeat", "deadline"), [(0, 30.0), (10.0, 0), (-1.0, 30.0), (10.0, -5.0)])
def test_bad_settings_raise_config_error(heartbeat: float, deadline: float) -> None:
    """Non-positive intervals are refused with ConfigError."""
    with pytest.raises(ConfigError):
        Liveness(Clock(), heartbeat, deadline, lambda: None, lambda: None)
