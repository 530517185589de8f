"""Live tests of gwproactor_test.proxy.FaultProxy against a loopback echo server and a private broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import protocol, task
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import ConnectError

from gwproactor_test.broker import PrivateBroker
from gwproactor_test.certs import TestCerts
from gwproactor_test.plugin import FaultProxyFactory
from gwproactor_test.proxy import FaultProxy

from gwproactor_test.wait import await_for  # noqa: E402

pytestmark = pytest.mark.live


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds naming ``what``."""
    return await_for(predicate, timeout, describe=f"waiting for {what}")


async def turns(n: int = 20) -> None:
    """Let the reactor run ``n`` short iterations (for asserting that something did *not* happen)."""
    for _ in range(n):
        await task.deferLater(_reactor(), 0.005, lambda: None)


class Probe(protocol.Protocol):
    """Records bytes received, and whether the connection was made and lost."""

    def __init__(self, greeting: bytes = b"", echo: bool = False) -> None:
        self.received = b""
        self.made = False
        self.lost = False
        self.greeting = greeting
        self.echo = echo

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        self.made = True
        if self.greeting:
            self.transport.write(self.greeting)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        self.received += data
        if self.echo:
            self.transport.write(data)

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - Twisted API
        self.lost = True


@attrs.define(eq=False)
class EchoServer:
    """A loopback server that greets each connection with ``hello`` then echoes; it keeps its protocols."""

    port: int = 0
    connections: list[Probe] = attrs.field(factory=list)
    listening: Any = None

    def build(self) -> Probe:
        probe = Probe(greeting=b"hello", echo=True)
        self.connections.append(probe)
        return probe


@pytest.fixture
def echo_server(twisted_greenlet: Any) -> Iterator[EchoServer]:
    server = EchoServer()
    server.listening = _reactor().listenTCP(0, protocol.Factory.forProtocol(server.build), interface="127.0.0.1")
    server.port = server.listening.getHost().port
    yield server
    for conn in server.connections:
        if not conn.lost:
            conn.transport.abortConnection()
    pytest_twisted.blockon(server.listening.stopListening())


async def connect(description: str) -> Probe:
    """Connect a :class:`Probe` with a Twisted endpoint description."""
    return await clientFromString(_reactor(), description).connect(protocol.Factory.forProtocol(Probe))


@pytest.fixture
def proxy(fault_proxy: FaultProxyFactory, echo_server: EchoServer) -> FaultProxy:
    return fault_proxy("127.0.0.1", echo_server.port)


@pytest_twisted.ensureDeferred
async def test_forwards_both_ways_and_counts(proxy: FaultProxy, echo_server: EchoServer) -> None:
    """Bytes flow both ways through the proxy, are counted, and a client close reaches the target."""
    assert proxy.endpoint() == f"tcp:host=127.0.0.1:port={proxy.port}"
    client = await connect(proxy.endpoint())
    await until(lambda: client.received == b"hello", what="greeting")
    client.transport.write(b"ping")
    await until(lambda: client.received == b"helloping", what="echo")
    assert proxy.connection_count == 1 and proxy.connections_accepted == 1
    assert (proxy.bytes_up, proxy.bytes_down) == (4, 9)
    client.transport.loseConnection()
    await until(lambda: echo_server.connections[0].lost, what="the close to reach the target")
    await until(lambda: proxy.connection_count == 0, what="the proxy to forget the connection")


@pytest_twisted.ensureDeferred
async def test_target_close_reaches_client(proxy: FaultProxy, echo_server: EchoServer) -> None:
    """When the target closes, the proxy closes the client side after delivering pending bytes."""
    client = await connect(proxy.endpoint())
    await until(lambda: len(echo_server.connections) == 1, what="upstream connection")
    server = echo_server.connections[0]
    server.transport.write(b"bye")
    server.transport.loseConnection()
    await until(lambda: client.lost, what="client close")
    assert client.received == b"hellobye"


@pytest_twisted.ensureDeferred
async def test_cut_aborts_both_sides(proxy: FaultProxy, echo_server: EchoServer) -> None:
    """cut() aborts every current connection on the client and the target side; new ones still work."""
    clients = [await connect(proxy.endpoint()) for _ in range(2)]
    await until(lambda: all(c.received == b"hello" for c in clients), what="greetings")
    assert proxy.connection_count == 2
    proxy.cut()
    await until(lambda: all(c.lost for c in clients), what="client sides to drop")
    await until(lambda: all(s.lost for s in echo_server.connections), what="target sides to drop")
    assert proxy.connection_count == 0
    again = await connect(proxy.endpoint())
    await until(lambda: again.received == b"hello", what="a new connection")


@pytest_twisted.ensureDeferred
async def test_half_open_holds_then_resume_delivers(proxy: FaultProxy, echo_server: EchoServer) -> None:
    """half_open() stops forwarding both ways without closing; resume() delivers the held bytes in order."""
    client = await connect(proxy.endpoint())
    await until(lambda: client.received == b"hello", what="greeting")
    server = echo_server.connections[0]
    proxy.half_open()
    client.transport.write(b"one")
    client.transport.write(b"two")
    server.transport.write(b"down")
    await turns()
    assert server.received == b"" and client.received == b"hello"
    assert not client.lost and not server.lost and proxy.connection_count == 1
    proxy.resume()
    await until(lambda: client.received == b"hellodownonetwo", what="held bytes and their echo")
    assert server.received == b"onetwo"


@pytest_twisted.ensureDeferred
async def test_half_open_holds_close(proxy: FaultProxy, echo_server: EchoServer) -> None:
    """A client close during half_open() does not reach the target until resume()."""
    client = await connect(proxy.endpoint())
    await until(lambda: client.received == b"hello", what="greeting")
    proxy.half_open()
    client.transport.loseConnection()
    await until(lambda: client.lost, what="client close")
    await turns()
    assert not echo_server.connections[0].lost
    assert proxy.connection_count == 0
    proxy.resume()
    await until(lambda: echo_server.connections[0].lost, what="the held close")


@pytest_twisted.ensureDeferred
async def test_latency_delays_and_keeps_order(proxy: FaultProxy, echo_server: EchoServer) -> None:
    """set_latency() delays each forwarded chunk (each way) and keeps their order."""
    client = await connect(proxy.endpoint())
    await until(lambda: client.received == b"hello", what="greeting")
    proxy.set_latency(0.2)
    reactor = _reactor()
    sent_at = reactor.seconds()
    for chunk in (b"a", b"b", b"c", b"d"):
        client.transport.write(chunk)
    await until(lambda: client.received == b"helloabcd", what="delayed echo")
    assert reactor.seconds() - sent_at >= 0.4 - 0.02  # 0.2 s up + 0.2 s down
    proxy.set_latency(0)
    client.transport.write(b"e")
    await until(lambda: client.received == b"helloabcde", what="undelayed echo")
    with pytest.raises(ValueError):
        proxy.set_latency(-1)


@pytest_twisted.ensureDeferred
async def test_pause_up_only(proxy: FaultProxy, echo_server: EchoServer) -> None:
    """pause('up') holds client→target bytes while target→client bytes still flow; unpause() releases them."""
    proxy.pause("up")
    client = await connect(proxy.endpoint())
    await until(lambda: client.received == b"hello", what="greeting (down still flows)")
    client.transport.write(b"held")
    await turns()
    assert echo_server.connections[0].received == b""
    proxy.unpause("up")
    await until(lambda: client.received == b"helloheld", what="released bytes and echo")


@pytest_twisted.ensureDeferred
async def test_pause_down_only(proxy: FaultProxy, echo_server: EchoServer) -> None:
    """pause('down') holds target→client bytes while client→target bytes still flow."""
    proxy.pause("down")
    client = await connect(proxy.endpoint())
    client.transport.write(b"up")
    await until(lambda: echo_server.connections and echo_server.connections[0].received == b"up", what="up")
    await turns()
    assert client.received == b""
    proxy.unpause("down")
    await until(lambda: client.received == b"helloup", what="released bytes")
    with pytest.raises(ValueError):
        proxy.pause("sideways")  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_refuse(proxy: FaultProxy, echo_server: EchoServer) -> None:
    """refuse(True) accepts new connections and closes them at once; current ones are untouched."""
    existing = await connect(proxy.endpoint())
    await until(lambda: existing.received == b"hello", what="greeting")
    proxy.refuse(True)
    refused = await connect(proxy.endpoint())
    await until(lambda: refused.lost, what="the refused connection to close")
    assert refused.received == b"" and proxy.connections_refused == 1
    assert len(echo_server.connections) == 1
    existing.transport.write(b"still")
    await until(lambda: existing.received == b"hellostill", what="the existing connection")
    proxy.refuse(False)
    later = await connect(proxy.endpoint())
    await until(lambda: later.received == b"hello", what="a connection after refuse(False)")


@pytest_twisted.ensureDeferred
async def test_accept_but_never_answer(proxy: FaultProxy, echo_server: EchoServer) -> None:
    """accept_but_never_answer() keeps new connections open, swallows their bytes and never connects upstream."""
    proxy.accept_but_never_answer(True)
    client = await connect(proxy.endpoint())
    client.transport.write(b"\x10\x0c anything")
    await until(lambda: proxy.bytes_swallowed == 11, what="bytes to be swallowed")
    await turns()
    assert client.received == b"" and not client.lost
    assert echo_server.connections == [] and proxy.connections_silenced == 1
    assert proxy.connection_count == 1
    proxy.cut()
    await until(lambda: client.lost, what="cut to close the silent connection")
    proxy.accept_but_never_answer(False)
    normal = await connect(proxy.endpoint())
    await until(lambda: normal.received == b"hello", what="normal forwarding again")


@pytest_twisted.ensureDeferred
async def test_unreachable_target_drops_client(fault_proxy: FaultProxyFactory) -> None:
    """When the target refuses, the proxy drops the client and counts an upstream failure."""
    from gwproactor_test.broker import free_port

    proxy = fault_proxy("127.0.0.1", free_port())
    client = await connect(proxy.endpoint())
    await until(lambda: client.lost, what="the client to be dropped")
    assert proxy.upstream_failures == 1 and proxy.connection_count == 0


@pytest_twisted.ensureDeferred
async def test_stop_closes_everything(echo_server: EchoServer) -> None:
    """stop() aborts connections and stops listening."""
    proxy = FaultProxy("127.0.0.1", echo_server.port, reactor=_reactor())
    await proxy.start()
    client = await connect(proxy.endpoint())
    await until(lambda: client.received == b"hello", what="greeting")
    await proxy.stop()
    await until(lambda: client.lost, what="the connection to drop")
    with pytest.raises(ConnectError):
        await connect(proxy.endpoint())
    await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_tls_mqtt_through_proxy(
    private_broker: PrivateBroker, test_certs: TestCerts, fault_proxy: FaultProxyFactory
) -> None:
    """TLS MQTT works through the proxy to the private broker, and cut() drops the session."""
    proxy = fault_proxy(private_broker.host, private_broker.tls_port)
    description = private_broker.endpoint(tls=True).replace(
        f":port={private_broker.tls_port}:", f":port={proxy.port}:"
    )
    client = await connect(description)
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + b"\x00\x05proxy"
    client.transport.write(bytes([0x10, len(body)]) + body)
    await until(lambda: len(client.received) >= 4, what="CONNACK through the proxy")
    assert client.received == b"\x20\x02\x00\x00"
    assert proxy.bytes_up > len(body) and proxy.bytes_down > 4  # TLS framing went through
    proxy.cut()
    await until(lambda: client.lost, what="the cut to drop the MQTT session")


class _Sink:
    """A transport double that records what a proxy lane writes, with the clock time of each write."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.writes: list[tuple[float, bytes]] = []

    def write(self, data: bytes) -> None:
        self.writes.append((self.clock.seconds(), data))

    def loseConnection(self) -> None:  # noqa: N802 - Twisted API
        self.writes.append((self.clock.seconds(), b"<close>"))


def _lane(bandwidth: float | None, latency: float = 0.0) -> tuple[Any, Any, _Sink]:
    from twisted.internet.task import Clock

    from gwproactor_test.proxy import _Lane

    clock = Clock()
    proxy = FaultProxy("127.0.0.1", 1, reactor=clock)
    proxy.set_latency(latency)
    proxy.set_bandwidth(bandwidth, "up")
    lane = _Lane(proxy, "up")
    lane.sink = _Sink(clock)
    return clock, lane, lane.sink


def test_bandwidth_paces_bytes_like_a_serial_link() -> None:
    """At 8,000 bytes/s (64 kbit/s) 40,000 bytes take 5 s to leave, in order, in chunks of at most 400 bytes."""
    clock, lane, sink = _lane(8000.0)
    lane.push(bytes(range(256)) * 156 + b"x" * 64)  # 40,000 bytes
    for _ in range(60):
        clock.advance(0.1)
    data = b"".join(d for _, d in sink.writes)
    assert data == bytes(range(256)) * 156 + b"x" * 64
    assert max(len(d) for _, d in sink.writes) <= 400
    assert 4.9 <= sink.writes[-1][0] <= 5.1


def test_bandwidth_and_latency_combine_and_can_change_while_running() -> None:
    """Latency delays the start; lifting the limit while bytes wait lets the rest go at once."""
    clock, lane, sink = _lane(1000.0, latency=0.3)
    lane.push(b"a" * 1000)
    clock.advance(0.29)
    assert sink.writes == []
    clock.advance(0.31)  # t = 0.6: 0.3 s of sending at 1,000 bytes/s
    sent = sum(len(d) for _, d in sink.writes)
    assert 250 <= sent <= 400
    lane.proxy.set_bandwidth(None)
    lane.pump()
    assert sum(len(d) for _, d in sink.writes) == 1000


def test_bad_bandwidth_is_refused() -> None:
    """set_bandwidth refuses 0 and negative rates and unknown directions."""
    proxy = FaultProxy("127.0.0.1", 1)
    with pytest.raises(ValueError):
        proxy.set_bandwidth(0)
    with pytest.raises(ValueError):
        proxy.set_bandwidth(10, "sideways")  # type: ignore[arg-type]
