"""A loopback TCP byte proxy that injects network faults (cuts, half-open links, latency, stalls, refusals).

It forwards bytes without looking at them, so it works for plain MQTT and for TLS alike.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal, cast

import attrs
from twisted.internet import defer, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IDelayedCall, IListeningPort, ITCPTransport, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["Direction", "FaultProxy"]

Direction = Literal["up", "down"]
"""``"up"`` is client → target (e.g. to the broker); ``"down"`` is target → client."""

_DIRECTIONS: tuple[Direction, ...] = ("up", "down")
_CLOSE = object()  # queued after the data when one side closes, so the close is forwarded in order

log = Logger()


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _abort(transport: ITransport | None) -> None:
    """Abort a proxied connection: both of its sides are TCP connections, so the transport has ``abortConnection``."""
    if transport is not None:
        cast(ITCPTransport, transport).abortConnection()


class _Lane:
    """One direction of one proxied connection: an ordered queue of chunks (and a final close)."""

    def __init__(self, proxy: FaultProxy, direction: Direction) -> None:
        self.proxy = proxy
        self.direction = direction
        self.queue: deque[tuple[float, Any]] = deque()
        self.sink: ITransport | None = None  # transport the lane writes to
        self.timer: IDelayedCall | None = None
        self.free_at = 0.0  # with a bandwidth limit: when the simulated link is free for the next bytes

    def push(self, item: Any) -> None:
        self.queue.append((self.proxy._reactor.seconds() + self.proxy.latency, item))
        self.pump()

    def pump(self) -> None:
        proxy = self.proxy
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.sink is None or proxy._held(self.direction):
            return
        now = proxy._reactor.seconds()
        bandwidth = proxy._bandwidth.get(self.direction)
        while self.queue:
            due, item = self.queue[0]
            if bandwidth is not None and item is not _CLOSE:
                due = max(due, self.free_at)
            if due > now:
                self.timer = proxy._reactor.callLater(due - now, self.pump)
                return
            self.queue.popleft()
            if item is _CLOSE:
                self.sink.loseConnection()
                self.queue.clear()
                return
            if bandwidth is not None:
                # A serial link: at most 50 ms worth of bytes at a time, the rest when the link is free again.
                chunk = max(1, int(bandwidth * 0.05))
                if len(item) > chunk:
                    self.queue.appendleft((due, item[chunk:]))
                    item = item[:chunk]
                # Counted from when the chunk was due, not from now: a late timer sends what is owed at once.
                self.free_at = due + len(item) / bandwidth
            self.sink.write(item)
            if self.direction == "up":
                proxy.bytes_up += len(item)
            else:
                proxy.bytes_down += len(item)

    def discard(self) -> None:
        self.queue.clear()
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class _Upstream(protocol.Protocol):
    """The proxy's connection to the target."""

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        self.pair.down.push(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802 - Twisted API
        self.pair.upstream_lost()


class _Pair(protocol.Protocol):
    """The proxy's accepted client connection, with its upstream connection and two lanes."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.up = _Lane(proxy, "up")
        self.down = _Lane(proxy, "down")
        self.upstream: _Upstream | None = None
        self.closed = False
        self.silenced = False
        self.connecting: Deferred[Any] | None = None

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        proxy = self.proxy
        if proxy._refusing:
            proxy.connections_refused += 1
            self.closed = True
            _abort(self.transport)
            return
        proxy.connections_accepted += 1
        proxy._pairs.add(self)
        self.down.sink = self.transport
        if proxy._never_answer:
            proxy.connections_silenced += 1
            self.silenced = True
            return
        endpoint = TCP4ClientEndpoint(proxy._reactor, proxy.target_host, proxy.target_port, timeout=5)
        self.connecting = endpoint.connect(protocol.Factory.forProtocol(lambda: _Upstream(self)))
        self.connecting.addCallbacks(self._upstream_made, self._upstream_failed)

    def _upstream_made(self, upstream: _Upstream) -> None:
        self.connecting = None
        if self.closed:
            _abort(upstream.transport)
            return
        self.upstream = upstream
        self.up.sink = upstream.transport
        self.up.pump()

    def _upstream_failed(self, reason: Failure) -> None:
        self.connecting = None
        if reason.check(defer.CancelledError) is None:
            self.proxy.upstream_failures += 1
            log.info("fault proxy could not reach {host}:{port}", host=self.proxy.target_host,
                     port=self.proxy.target_port)
        if not self.closed:
            _abort(self.transport)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        if self.silenced:
            self.proxy.bytes_swallowed += len(data)
            return
        self.up.push(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802 - Twisted API
        if self.closed and self not in self.proxy._pairs:
            return
        self.closed = True
        self.down.sink = None
        self.down.discard()
        if self.connecting is not None:
            self.connecting.cancel()
        if self.upstream is not None:
            self.up.push(_CLOSE)
        self._forget_if_done()

    def upstream_lost(self) -> None:
        self.up.sink = None
        self.up.discard()
        self.upstream = None
        if not self.closed:
            self.down.push(_CLOSE)
        self._forget_if_done()

    def _forget_if_done(self) -> None:
        # Once both sides are gone the pair is done; a held close keeps it listed until it is delivered.
        if self.closed and self.upstream is None:
            self.proxy._pairs.discard(self)

    def abort(self) -> None:
        self.up.discard()
        self.down.discard()
        if self.connecting is not None:
            self.connecting.cancel()
        if self.upstream is not None:
            _abort(self.upstream.transport)
        if not self.closed:
            _abort(self.transport)


@attrs.define(eq=False)
class FaultProxy:
    """A TCP proxy on ``127.0.0.1`` in front of ``target_host:target_port`` whose faults tests switch on and off.

    Faults apply to current and future connections:

    * :meth:`cut` aborts every current connection, both sides.
    * :meth:`half_open` stops forwarding in both directions without closing anything (data and closes are held,
      in order, not dropped); :meth:`resume` delivers what was held and forwards again. New connections made
      meanwhile are accepted and connected upstream, but nothing flows on them either.
    * :meth:`pause` / :meth:`unpause` do the same for one direction.
    * :meth:`set_latency` delays each forwarded chunk by that many seconds, preserving order.
    * :meth:`set_bandwidth` limits the bytes per second each way (a cellular or satellite link), settable
      while running.
    * :meth:`refuse` makes the proxy accept new connections and close them at once (the client sees its
      connection made then lost, never any data).
    * :meth:`accept_but_never_answer` makes new connections open but never connect upstream nor answer; the
      client's bytes are read and discarded. They stay open until :meth:`cut` or :meth:`stop`.

    Counters: :attr:`connection_count` (open client connections), ``connections_accepted``,
    ``connections_refused``, ``connections_silenced``, ``upstream_failures``, ``bytes_up``, ``bytes_down``,
    ``bytes_swallowed``.

    :param target_host: where to forward to.
    :param target_port: where to forward to.
    :param reactor: the reactor to listen and connect with (the global one when ``None``).
    """

    target_host: str
    target_port: int
    reactor: Any = None
    host: str = attrs.field(init=False, default="127.0.0.1")
    port: int = attrs.field(init=False, default=0)
    latency: float = attrs.field(init=False, default=0.0)
    connections_accepted: int = attrs.field(init=False, default=0)
    connections_refused: int = attrs.field(init=False, default=0)
    connections_silenced: int = attrs.field(init=False, default=0)
    upstream_failures: int = attrs.field(init=False, default=0)
    bytes_up: int = attrs.field(init=False, default=0)
    bytes_down: int = attrs.field(init=False, default=0)
    bytes_swallowed: int = attrs.field(init=False, default=0)
    _listening: IListeningPort | None = attrs.field(init=False, default=None)
    _pairs: set[_Pair] = attrs.field(init=False, factory=set)
    _paused: set[str] = attrs.field(init=False, factory=set)
    _half_open: bool = attrs.field(init=False, default=False)
    _refusing: bool = attrs.field(init=False, default=False)
    _never_answer: bool = attrs.field(init=False, default=False)
    _bandwidth: dict[Direction, float | None] = attrs.field(init=False, factory=dict)  # bytes/s, or None

    @property
    def _reactor(self) -> Any:
        if self.reactor is None:
            self.reactor = _default_reactor()
        return self.reactor

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Deferred[None]:
        """Listen on a free port of ``127.0.0.1``; fire once :attr:`port` is set."""
        endpoint = TCP4ServerEndpoint(self._reactor, 0, interface=self.host)
        d = endpoint.listen(protocol.Factory.forProtocol(lambda: _Pair(self)))

        def listening(port: IListeningPort) -> None:
            self._listening = port
            self.port = cast(IPv4Address, port.getHost()).port

        return d.addCallback(listening)

    def stop(self) -> Deferred[None]:
        """Stop listening and abort every connection; fire when the listening port is closed."""
        self.cut()
        if self._listening is None:
            return defer.succeed(None)
        listening, self._listening = self._listening, None
        return defer.maybeDeferred(listening.stopListening).addCallback(lambda _: None)

    def endpoint(self) -> str:
        """Return the Twisted client endpoint description of the proxy (``tcp:host=127.0.0.1:port=N``)."""
        return f"tcp:host={self.host}:port={self.port}"

    @property
    def connection_count(self) -> int:
        """How many client connections are currently open through the proxy."""
        return sum(1 for pair in self._pairs if not pair.closed)

    # ------------------------------------------------------------------ faults

    def cut(self) -> None:
        """Abort every current connection, both client and target sides."""
        pairs = list(self._pairs)
        self._pairs.clear()
        for pair in pairs:
            pair.abort()

    def half_open(self) -> None:
        """Stop forwarding in both directions without closing; bytes and closes are held until :meth:`resume`."""
        self._half_open = True

    def resume(self) -> None:
        """Undo :meth:`half_open`: deliver what was held, in order, and forward again."""
        self._half_open = False
        self._pump_all()

    def pause(self, direction: Direction) -> None:
        """Hold bytes flowing in ``direction`` (``"up"``: client → target, ``"down"``: target → client)."""
        self._paused.add(self._check(direction))

    def unpause(self, direction: Direction) -> None:
        """Undo :meth:`pause` for ``direction``."""
        self._paused.discard(self._check(direction))
        self._pump_all()

    def set_bandwidth(self, bytes_per_s: float | None, direction: Direction | None = None) -> None:
        """Forward at most ``bytes_per_s`` each way (or only ``direction``), like a serial link; ``None`` lifts it.

        It applies at once to what is queued and to current and future connections, and combines with
        :meth:`set_latency` (a chunk leaves after its latency, when the link is free).  64 kbit/s is 8,000.
        """
        if bytes_per_s is not None and not bytes_per_s > 0:
            raise ValueError(f"bandwidth must be a positive number of bytes per second or None, got {bytes_per_s!r}")
        for d in (_DIRECTIONS if direction is None else (self._check(direction),)):
            self._bandwidth[d] = None if bytes_per_s is None else float(bytes_per_s)
        self._pump_all()

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk forwarded from now on by ``seconds`` (order is preserved); ``0`` turns it off."""
        if seconds < 0:
            raise ValueError(f"latency must be >= 0, got {seconds!r}")
        self.latency = float(seconds)

    def refuse(self, refusing: bool = True) -> None:
        """While ``refusing``, accept new connections and close them at once (current ones are untouched)."""
        self._refusing = refusing

    def accept_but_never_answer(self, enabled: bool = True) -> None:
        """While ``enabled``, new connections open but are never forwarded nor answered (current ones untouched)."""
        self._never_answer = enabled

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _check(direction: str) -> Direction:
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        return direction

    def _held(self, direction: Direction) -> bool:
        return self._half_open or direction in self._paused

    def _pump_all(self) -> None:
        for pair in list(self._pairs):
            pair.up.pump()
            pair.down.pump()
