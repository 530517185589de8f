"""Backoff policy, and BrokerConnection's reconnect timing and ClientService gating, on a memory reactor (no broker)."""

from __future__ import annotations

import gc
import random

import automat
import pytest
from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from gwproactor.mqtt import Backoff, BrokerConnection
from gwproactor.mqtt.backoff import Backoff as ShimBackoff
from gwproactor.ops.backoff import Backoff as OpsBackoff

CONNACK_OK = b"\x20\x02\x00\x00"


def test_ceiling_grows_then_caps() -> None:
    """The ceiling doubles from ``initial`` and never exceeds ``cap``."""
    b = Backoff(initial=0.5, factor=2.0, cap=4.0)
    assert [b.ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.ceiling(10_000) == 4.0


def test_defaults() -> None:
    """Defaults are initial 0.5 s, factor 2, cap 60 s."""
    assert Backoff() == Backoff(initial=0.5, factor=2.0, cap=60.0)
    assert Backoff().ceiling(20) == 60.0


def test_full_jitter_within_ceiling_and_seeded() -> None:
    """``delay`` is uniform in [0, ceiling] and reproducible with a seeded Random."""
    b = Backoff(initial=1.0, factor=2.0, cap=8.0)
    got = [b.delay(n, random.Random(7)) for n in range(6)]
    want = [random.Random(7).uniform(0, b.ceiling(n)) for n in range(6)]
    assert got == want
    rng = random.Random(1)
    samples = [b.delay(5, rng) for _ in range(2000)]
    assert 0.0 <= min(samples) < 0.5 and 7.5 < max(samples) <= 8.0


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0}, {"cap": -1}, {"factor": 0.5}, {"initial": 2.0, "cap": 1.0}]
)
def test_bad_parameters_raise(kwargs: dict) -> None:
    """Nonsense parameters are refused with ValueError."""
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_negative_attempt_raises() -> None:
    """A negative attempt number is a ValueError."""
    with pytest.raises(ValueError):
        Backoff().delay(-1, random.Random(0))


def test_backoff_has_one_home() -> None:
    """gwproactor.mqtt.Backoff and the gwproactor.mqtt.backoff shim are gwproactor.ops.backoff.Backoff."""
    assert Backoff is ShimBackoff is OpsBackoff


def test_retry_policy_counts_failed_attempts_from_one() -> None:
    """retry_policy(rng)(n) is delay(n - 1, rng): ClientService passes 1 for the first retry."""
    b = Backoff(initial=1.0, factor=2.0, cap=8.0)
    policy = b.retry_policy(random.Random(4))
    expected = random.Random(4)
    assert [policy(n) for n in range(1, 7)] == [b.delay(n, expected) for n in range(6)]


class _FailingEndpoint:
    """A client endpoint whose every attempt fails at once; records the clock time of each attempt."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.attempts: list[float] = []

    def connect(self, factory):
        self.attempts.append(self.clock.seconds())
        return fail(ConnectionRefusedError())


def test_retry_policy_drives_client_service_on_a_clock() -> None:
    """A ClientService with Backoff.retry_policy retries after delay(0), delay(1), ... from the seeded rng."""
    clock = Clock()
    endpoint = _FailingEndpoint(clock)
    b = Backoff(initial=0.5, factor=2.0, cap=4.0)
    service = ClientService(endpoint, Factory.forProtocol(Protocol), retryPolicy=b.retry_policy(random.Random(9)),
                            clock=clock)
    service.startService()
    for _ in range(8):
        (retry,) = clock.getDelayedCalls()
        clock.advance(retry.getTime() - clock.seconds())
    expected_rng, t, want = random.Random(9), 0.0, [0.0]
    while len(want) < len(endpoint.attempts):
        t += b.delay(len(want) - 1, expected_rng)
        want.append(t)
    assert len(endpoint.attempts) >= 9
    assert endpoint.attempts == pytest.approx(want)
    service.stopService()
    assert clock.getDelayedCalls() == []


def test_client_service_cannot_lose_a_connection_while_preparing() -> None:
    """The measured reason for mqtt/_gate.py: ClientService raises NoTransition on a loss during prepareConnection.

    If this starts failing, Twisted's ClientService handles the loss itself and the gate may go.
    """
    reactor = MemoryReactorClock()
    from twisted.internet.endpoints import TCP4ClientEndpoint

    pending: list[Deferred] = []

    class Session(Protocol):
        def connectionLost(self, reason=None):
            pending.pop().errback(reason)  # the loss fails the preparation, as a lost MQTT CONNECT would

    def prepare(protocol):
        pending.append(Deferred())
        return pending[-1]

    service = ClientService(TCP4ClientEndpoint(reactor, "h", 1), Factory.forProtocol(Session), clock=reactor,
                            retryPolicy=lambda n: 1.0, prepareConnection=prepare)
    service.startService()
    proto = reactor.tcpClients[-1][2].buildProtocol(None)
    proto.makeConnection(StringTransport())
    with pytest.raises(automat.NoTransition):
        proto.connectionLost(Failure(ConnectionDone()))
    service.stopService()


def test_loss_before_connack_fails_the_attempt_and_retries(log_events: list[dict]) -> None:
    """A connection lost before CONNACK raises nothing, counts one failed attempt and is retried after delay(0)."""
    reactor = MemoryReactorClock()
    conn = _service(reactor)
    conn.startService()
    proto, _ = _accept_latest(reactor)
    proto.connectionLost(Failure(ConnectionLost()))
    assert conn.stats()["connect_failures"] == 1 and not conn.is_connected
    assert _retries_after(reactor, Backoff(initial=0.5, factor=2.0, cap=4.0).delay(0, random.Random(3)))
    proto, _ = _accept_latest(reactor)
    proto.dataReceived(b"\x20\x02\x00\x05")  # refused
    proto.connectionLost(Failure(ConnectionDone()))
    assert conn.stats()["connect_failures"] == 2 and conn.stats()["refused_connacks"] == 1
    conn.stopService()
    gc.collect()
    assert not [e for e in log_events if "Unhandled" in str(e.get("log_format", ""))]


def test_connect_timeout_counts_from_the_start_of_the_attempt() -> None:
    """The CONNACK deadline is connect_timeout after the attempt started, not after TCP was made."""
    reactor = MemoryReactorClock()
    conn = _service(reactor, connect_timeout=3.0)
    conn.startService()
    reactor.advance(2.0)
    proto, transport = _accept_latest(reactor)
    reactor.advance(0.9)
    assert not transport.disconnecting
    reactor.advance(0.2)
    assert transport.disconnecting
    proto.connectionLost(Failure(ConnectionDone()))
    assert conn.last_error == "no CONNACK within connect_timeout=3.0 s"
    conn.stopService()


def test_stop_while_awaiting_connack_aborts_and_waits_for_the_close() -> None:
    """stopService before CONNACK aborts the connection; its Deferred fires once the connection is closed."""
    reactor = MemoryReactorClock()
    conn = _service(reactor)
    conn.startService()
    proto, transport = _accept_latest(reactor)
    d = conn.stopService()
    assert transport.disconnecting and not d.called
    proto.connectionLost(Failure(ConnectionDone()))
    assert d.called
    assert conn.stats()["connect_failures"] == 0
    assert all(not c.active() for c in reactor.getDelayedCalls())
    reactor.advance(100)
    assert len(reactor.tcpClients) == 1


def test_stop_while_tcp_connecting_cancels_it() -> None:
    """stopService while TCP is still connecting stops the connector and fires at once; nothing is retried."""
    reactor = MemoryReactorClock()
    conn = _service(reactor)
    conn.startService()
    d = conn.stopService()
    assert d.called and reactor.connectors[-1].stoppedConnecting
    assert all(not c.active() for c in reactor.getDelayedCalls())
    assert conn.stats()["connect_failures"] == 0


def test_retries_are_logged_once_naming_the_broker(log_events: list[dict]) -> None:
    """Each retry logs our "reconnecting in" line (with the broker name), not ClientService's own line too."""
    reactor = MemoryReactorClock()
    conn = _service(reactor)
    conn.startService()
    _refuse_latest(reactor)
    conn.stopService()
    formats = [str(e.get("log_format", "")) for e in log_events]
    ours = "broker {broker}: reconnecting in {delay:.3f} s (attempt {attempt})"
    assert [f for f in formats if "reconnecting in" in f] == [ours]
    assert not [f for f in formats if "Scheduling retry" in f]


# -- the service on a MemoryReactorClock ------------------------------------------------------------


def _service(reactor: MemoryReactorClock, seed: int = 3, **kwargs) -> BrokerConnection:
    conn = BrokerConnection(
        "b",
        reactor,
        endpoint="tcp:host=127.0.0.1:port=1883",
        backoff=Backoff(initial=0.5, factor=2.0, cap=4.0),
        rng=random.Random(seed),
        **kwargs,
    )
    return conn


def _refuse_latest(reactor: MemoryReactorClock) -> None:
    factory = reactor.tcpClients[-1][2]
    factory.clientConnectionFailed(reactor.connectors[-1], Failure(ConnectionRefusedError()))


def _retries_after(reactor: MemoryReactorClock, delay: float) -> bool:
    """True if the next attempt starts ``delay`` seconds from now (not 1 ms earlier, by 1 ms later)."""
    attempts = len(reactor.tcpClients)
    reactor.advance(max(0.0, delay - 0.001))
    if len(reactor.tcpClients) != attempts:
        return False
    reactor.advance(0.002)
    return len(reactor.tcpClients) == attempts + 1


def _accept_latest(reactor: MemoryReactorClock):
    factory = reactor.tcpClients[-1][2]
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_retries_follow_backoff_with_jitter_and_cap() -> None:
    """Refused TCP connects are retried after Backoff.delay(0), delay(1), ... (capped), drawn from the seeded rng."""
    reactor = MemoryReactorClock()
    conn = _service(reactor)
    conn.startService()
    expected_rng = random.Random(3)
    policy = Backoff(initial=0.5, factor=2.0, cap=4.0)
    for attempt in range(8):
        assert len(reactor.tcpClients) == attempt + 1
        _refuse_latest(reactor)
        delay = policy.delay(attempt, expected_rng)
        assert delay <= 4.0
        assert len([c for c in reactor.getDelayedCalls() if c.active()]) == 1
        assert _retries_after(reactor, delay)
    assert conn.stats()["connect_failures"] == 8
    conn.stopService()
    assert [c for c in reactor.getDelayedCalls() if c.active()] == []


def test_backoff_resets_after_connack() -> None:
    """After an accepting CONNACK the next reconnect uses attempt 0 again."""
    reactor = MemoryReactorClock()
    conn = _service(reactor, seed=11)
    conn.startService()
    expected_rng = random.Random(11)
    policy = Backoff(initial=0.5, factor=2.0, cap=4.0)
    for attempt in range(4):
        _refuse_latest(reactor)
        assert _retries_after(reactor, policy.delay(attempt, expected_rng))
    proto, _ = _accept_latest(reactor)
    proto.dataReceived(CONNACK_OK)
    assert conn.is_connected
    proto.connectionLost(Failure(ConnectionDone()))
    assert not conn.is_connected
    delay = policy.delay(0, expected_rng)
    assert delay <= 0.5
    assert _retries_after(reactor, delay)
    conn.stopService()


def test_connect_timeout_without_connack_retries() -> None:
    """TCP made but no CONNACK within connect_timeout: the attempt is aborted, counted and retried with backoff."""
    reactor = MemoryReactorClock()
    conn = _service(reactor, connect_timeout=3.0)
    conn.startService()
    proto, transport = _accept_latest(reactor)
    reactor.advance(2.9)
    assert not transport.disconnecting
    reactor.advance(0.2)
    assert transport.disconnecting
    proto.connectionLost(Failure(ConnectionDone()))
    assert conn.stats()["connect_failures"] == 1
    delay = Backoff(initial=0.5, factor=2.0, cap=4.0).delay(0, random.Random(3))
    reactor.advance(delay)
    assert len(reactor.tcpClients) == 2
    conn.stopService()


def test_connect_timeout_while_tcp_pending_cancels_attempt() -> None:
    """A TCP connect still pending at connect_timeout is cancelled, counted once and retried."""
    reactor = MemoryReactorClock()
    conn = _service(reactor, connect_timeout=2.0)
    conn.startService()
    reactor.advance(2.0)
    assert reactor.connectors[-1].stoppedConnecting
    assert conn.stats()["connect_failures"] == 1
    assert "TCP/TLS connect not done within connect_timeout=2.0 s" in (conn.last_error or "")
    assert _retries_after(reactor, Backoff(initial=0.5, factor=2.0, cap=4.0).delay(0, random.Random(3)))
    conn.stopService()


def test_stop_cancels_pending_retry() -> None:
    """stopService while waiting to retry cancels the retry and fires at once."""
    reactor = MemoryReactorClock()
    conn = _service(reactor)
    conn.startService()
    _refuse_latest(reactor)
    d = conn.stopService()
    assert d.called
    reactor.advance(100)
    assert len(reactor.tcpClients) == 1
    assert reactor.getDelayedCalls() == [] or all(not c.active() for c in reactor.getDelayedCalls())
