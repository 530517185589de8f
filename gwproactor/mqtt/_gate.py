"""ClientService plumbing of :class:`~gwproactor.mqtt.connection.BrokerConnection`: an endpoint whose connections
ClientService sees lost only after the broker's CONNACK opened them.

Why it exists is written in :mod:`gwproactor.mqtt.connection`'s docstring.  Nothing here knows MQTT: the
connection passes in how to build a session, the endpoint and what to do with each new connection.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.internet import ClientService
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IProtocol, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger, LogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from gwproactor.errors import MQTTError

__all__ = ["AttemptFailed", "Gate", "GatedEndpoint", "Reconnector", "SessionFactory"]


class AttemptFailed(MQTTError):
    """A connection attempt failed before CONNACK; the message is the reason logged and kept in ``last_error``."""


class Reconnector(ClientService):
    """ClientService without its own "Scheduling retry" log lines (the broker connection logs each retry itself,
    naming the broker)."""

    _log = Logger(observer=LogPublisher())  # a publisher without observers: the lines go nowhere


class _QuietFactory(Factory):
    """A factory that logs no "Starting factory" / "Stopping factory" lines."""

    noisy = False


class SessionFactory(_QuietFactory):
    """Builds the session of each connection with ``build()`` (the factory ClientService is given)."""

    def __init__(self, build: Callable[[], IProtocol]) -> None:
        self._build = build
        self.built: Any = None

    def buildProtocol(self, addr: Any) -> Any:
        self.built = self._build()
        return self.built


class Gate(Protocol):
    """One connection, between its transport and ClientService's protocol proxy.

    Data goes straight to the session.  The loss of the connection goes through the proxy (so to
    ClientService) once :attr:`opened` (by the CONNACK), and to the session alone before that; the session's
    owner then fails the attempt by failing :attr:`connack`, the Deferred ``prepareConnection`` returned.
    """

    def __init__(self, proxy: Any, session: Any, deadline: float) -> None:
        self.proxy = proxy
        self.session = session
        self.deadline = deadline
        """Reactor time by which the attempt must be connected (its ``connect_timeout``)."""
        self.opened = False
        self.connack: Deferred | None = None
        self.timer: IDelayedCall | None = None
        self._closed: list[Deferred] | None = []
        self.dataReceived = session.dataReceived  # type: ignore[method-assign]  # the hot path skips the proxy

    def makeConnection(self, transport: Any) -> None:
        self.connected = 1
        self.transport = transport
        self.proxy.makeConnection(transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.connected = 0
        try:
            (self.proxy if self.opened else self.session).connectionLost(reason)
        finally:
            waiters, self._closed = self._closed or [], None
            for d in waiters:
                d.callback(None)

    def when_closed(self) -> Deferred:
        """A Deferred that fires once the connection is closed (at once if it is)."""
        if self._closed is None:
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._closed.append(d)
        return d

    def stop_timer(self) -> None:
        """Cancel :attr:`timer` (the CONNACK deadline) if it is pending."""
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()


class _GateFactory(_QuietFactory):
    def __init__(self, proxies: Any, sessions: SessionFactory, deadline: float, opened: Callable[[Gate], None]) -> None:
        self._proxies = proxies
        self._sessions = sessions
        self._deadline = deadline
        self._opened = opened

    def buildProtocol(self, addr: Any) -> Gate | None:
        proxy = self._proxies.buildProtocol(addr)  # ClientService's proxy, around a session of SessionFactory
        if proxy is None or self._sessions.built is None:
            return None
        gate = Gate(proxy, self._sessions.built, self._deadline)
        self._opened(gate)
        return gate


@implementer(IStreamClientEndpoint)
class GatedEndpoint:
    """What ClientService connects to: ``endpoint()``'s endpoint, through a :class:`Gate`, bounded by ``timeout``.

    :param endpoint: returns a Deferred of the real endpoint (built when first needed).
    :param made: called with the :class:`Gate` of each new connection, before its ``connectionMade``.
    :param failed: errback of an attempt that failed before its TCP/TLS connection was made.
    """

    def __init__(self, *, endpoint: Callable[[], Deferred], sessions: SessionFactory, timeout: float,
                 clock: IReactorTime, made: Callable[[Gate], None], failed: Callable[[Failure], Any],
                 label: str) -> None:
        self._endpoint = endpoint
        self._sessions = sessions
        self._timeout = timeout
        self._clock = clock
        self._made = made
        self._failed = failed
        self._label = label

    def connect(self, protocolFactory: Any) -> Deferred:
        d = self._endpoint()
        d.addCallback(self._connect, protocolFactory)
        d.addErrback(self._failed)
        return d

    def _connect(self, endpoint: IStreamClientEndpoint, proxies: Any) -> Deferred:
        deadline = self._clock.seconds() + self._timeout
        connecting = endpoint.connect(_GateFactory(proxies, self._sessions, deadline, self._made))

        def timed_out(result: Any, timeout: float) -> Failure:
            return Failure(AttemptFailed(f"TCP/TLS connect not done within connect_timeout={timeout} s"))

        def proxy_of(gate: IProtocol) -> IProtocol:
            assert isinstance(gate, Gate)  # what _GateFactory builds
            return gate.proxy

        connecting.addTimeout(self._timeout, self._clock, onTimeoutCancel=timed_out)
        return connecting.addCallback(proxy_of)

    def __repr__(self) -> str:
        return f"<GatedEndpoint {self._label}>"
