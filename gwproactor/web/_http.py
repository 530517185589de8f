"""The HTTP layer under the endpoints: JSON for every answer, a deadline for each request, a cap on connections.

:class:`JSONSite` is a :class:`twisted.web.server.Site` whose channels (:class:`JSONChannel`) answer what
Twisted would answer itself — a request it cannot parse, a request that did not arrive in time, a failure while
rendering — with JSON instead of HTML or an empty body, and which refuses connections beyond
``max_connections`` by closing them at once.  It counts all of it (:meth:`JSONSite.stats`).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any, Callable

from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server

from gwproactor.ops.problems import RateLimiter

#: Default bound of a ``POST /events`` body (bytes); larger bodies get 413.
MAX_BODY_BYTES = 64 * 1024
#: Default time for a request's headers and body to arrive (seconds).
REQUEST_DEADLINE_S = 10.0
#: Default bound of open connections.
MAX_CONNECTIONS = 64

_log = Logger(namespace="gwproactor.web")


def json_bytes(obj: Any) -> bytes:
    """Compact UTF-8 JSON of ``obj`` (``str()`` of anything JSON has no type for)."""
    return json.dumps(obj, default=str, separators=(",", ":"), allow_nan=False).encode("utf-8")


def json_reply(request: Any, code: int, obj: Any) -> bytes:
    """Set ``request``'s status and JSON headers; return the body to write."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return json_bytes(obj)


def raw_json_response(code: int, obj: Any) -> bytes:
    """A whole HTTP/1.1 response with a JSON body that closes the connection (for answers without a Request)."""
    body = json_bytes(obj)
    head = (
        b"HTTP/1.1 %d %s\r\n"
        b"Content-Type: application/json; charset=utf-8\r\n"
        b"Cache-Control: no-store\r\n"
        b"Connection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % (code, http.RESPONSES[code], len(body))
    )
    return head + body


class JSONRequest(server.Request):
    """A request that keeps at most ``site.max_body_bytes`` of its body, and fails as JSON.

    ``body_too_large`` is true once the body (announced by ``Content-Length`` or received, chunked) is over
    the limit; what is over it is not kept.
    """

    body_too_large = False
    _body_seen = 0
    channel: JSONChannel  # a JSONSite's requests come from its channels (Twisted sets None once finished)

    def _limit(self) -> int:
        return getattr(self.channel.site, "max_body_bytes", MAX_BODY_BYTES) if self.channel else MAX_BODY_BYTES

    def gotLength(self, length: int | None) -> None:
        """Refuse to buffer a body announced larger than the limit (keeps an empty in-memory buffer)."""
        if length is not None and length > self._limit():
            self.body_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Buffer ``data`` while under the limit; past it, discard and mark the body too large."""
        self._body_seen += len(data)
        if self.body_too_large or self._body_seen > self._limit():
            self.body_too_large = True
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        """As Twisted's, but ``OPTIONS *`` (and anything else for ``*``) is answered with JSON too."""
        if self.path != b"*":
            super().process()
            return
        self.site = self.channel.site
        if self.method == b"OPTIONS":
            body = json_reply(self, 200, {"ok": True})
        else:
            self.setHeader(b"allow", b"OPTIONS")
            method = self.method.decode("ascii", "replace")
            body = json_reply(self, 405, {"error": f"method {method} not allowed for *; use OPTIONS"})
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()

    def processingFailed(self, reason: Failure) -> Failure:
        """Log ``reason`` and answer a JSON 500 (Twisted's answer is an HTML page)."""
        _log.failure("HTTP {method} {path} failed", reason, method=self.method, path=self.path)
        if self.startedWriting:  # too late for a status: cut the answer short
            self.loseConnection()
            return reason
        body = json_reply(self, 500, {"error": f"internal error: {reason.getErrorMessage()}"})
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()
        return reason


class _Refused(Protocol):
    """A connection over the cap: closed as soon as it is made, without reading it."""

    transport: ITCPTransport  # set by makeConnection before connectionMade

    def connectionMade(self) -> None:
        self.transport.abortConnection()


class JSONChannel(http.HTTPChannel):
    """An HTTP channel with a total deadline for each request and JSON for the answers it makes itself.

    The deadline runs from the connection's start, and again from the end of each answer on a persistent
    connection, until the request's headers and body have all arrived; unlike ``timeOut`` (an idle timeout)
    it does not restart when a byte arrives.  When it passes, a JSON 408 is sent if part of a request has
    arrived, and the connection is closed (aborted after ``abortTimeout`` if the peer does not read).
    """

    #: Set by :meth:`JSONSite.buildProtocol`; ``None`` means no deadline.
    request_deadline_s: float | None = None
    #: Set by ``Site.buildProtocol``.
    site: JSONSite
    #: TCP (or TLS over TCP), set by makeConnection before connectionMade; the methods below run after it.
    transport: ITCPTransport
    _deadline: Any = None
    _force_close: Any = None
    _request_started = False
    _closing = False
    _opened = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._opened = True
        self.site.connection_opened()
        self._start_deadline()

    def dataReceived(self, data: bytes) -> None:
        if data and self._deadline is not None:
            self._request_started = True
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        self._stop_deadline()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        # Before Twisted replays data buffered during the answer (which may complete the next request).
        if self.persistent and not self._closing:
            self._start_deadline()
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_deadline()
        if self._force_close is not None:
            if self._force_close.active():
                self._force_close.cancel()
            self._force_close = None
        if self._opened:
            self._opened = False
            self.site.connection_closed()
        super().connectionLost(reason)

    def _respondToBadRequestAndDisconnect(self) -> None:
        """Twisted's answer to a request it cannot parse (an empty 400), as JSON."""
        if self._closing:
            return
        self.site.count("bad_requests")
        self._close_with(
            raw_json_response(
                400, {"error": "bad request: malformed or oversized request line, header or chunked body"}
            )
        )

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request line or header longer than ``MAX_LENGTH``: Twisted closes without an answer; answer a JSON 400."""
        self._respondToBadRequestAndDisconnect()

    def _start_deadline(self) -> None:
        self._stop_deadline()
        self._request_started = False
        if self.request_deadline_s is not None:
            self._deadline = self.callLater(self.request_deadline_s, self._deadline_passed)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self._closing:
            return
        peer = str(self.transport.getPeer())
        if not self._request_started:
            self.site.count("idle_closed")
            self._close_with(b"")
            return
        self.site.request_timed_out(peer)
        self._close_with(
            raw_json_response(
                408, {"error": f"request not received within {self.request_deadline_s:g} s; connection closed"}
            )
        )

    def _close_with(self, data: bytes) -> None:
        """Write ``data``, close the connection and abort it if it is still open after ``abortTimeout``."""
        self._closing = True
        self._stop_deadline()
        if data:
            self.transport.write(data)
        if self.abortTimeout is not None:
            self._force_close = self.callLater(self.abortTimeout, self.transport.abortConnection)
        self.loseConnection()


class JSONSite(server.Site):
    """A :class:`~twisted.web.server.Site` of :class:`JSONChannel` channels with a cap on open connections.

    :param max_connections: connections beyond it are closed as soon as they are accepted (and counted).
    :param request_deadline_s: each request's headers and body must arrive within it (see :class:`JSONChannel`).
    :param max_body_bytes: bound of the body a request keeps (see :class:`JSONRequest`).
    """

    # Twisted types this as its HTTP/1.1-or-2 wrapper factory; Site.buildProtocol takes any HTTPChannel class.
    protocol = JSONChannel  # type: ignore[assignment]
    #: Set by :func:`~gwproactor.web.server.make_site`: the ``/events`` resource whose counters :meth:`stats` shows.
    events: Any = None

    def __init__(
        self,
        resource: Any,
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_deadline_s: float | None = REQUEST_DEADLINE_S,
        max_body_bytes: int = MAX_BODY_BYTES,
        logFormatter: Callable[[str, Any], str] | None = None,
        reactor: Any = None,
    ) -> None:
        super().__init__(resource, requestFactory=JSONRequest, logFormatter=logFormatter, reactor=reactor)
        self.max_connections = max_connections
        self.request_deadline_s = request_deadline_s
        self.max_body_bytes = max_body_bytes
        self.open_connections = 0
        self.counters: Counter = Counter()
        self.responses: Counter = Counter()
        self._warnings = RateLimiter(clock=self.reactor, max_per_period=1, period_s=60.0)

    def buildProtocol(self, addr: Any) -> Any:
        """A channel, or a protocol that closes the connection at once when ``max_connections`` are open."""
        if self.open_connections >= self.max_connections:
            self.counters["connections_refused"] += 1
            self._warn(
                "refused",
                "HTTP connection from {peer} closed: {open} connections open (max_connections {max_connections})",
                peer=str(addr),
                open=self.open_connections,
                max_connections=self.max_connections,
            )
            return _Refused()
        channel = super().buildProtocol(addr)
        channel.request_deadline_s = self.request_deadline_s
        return channel

    def getContentFile(self, length: int | None) -> io.BytesIO:
        """An in-memory body buffer: bodies are bounded by ``max_body_bytes`` (Twisted uses a temporary file
        for long or chunked bodies, one more descriptor per request)."""
        return io.BytesIO()

    def log(self, request: Any) -> None:
        """Count the answer by status, then write the access log line."""
        self.responses[request.code] += 1
        super().log(request)

    def connection_opened(self) -> None:
        self.open_connections += 1
        self.counters["connections_accepted"] += 1

    def connection_closed(self) -> None:
        self.open_connections -= 1

    def count(self, name: str) -> None:
        self.counters[name] += 1

    def request_timed_out(self, peer: str) -> None:
        self.counters["timeouts"] += 1
        self._warn(
            "timeout",
            "HTTP request from {peer} not received within {deadline_s} s: answered 408 and closed",
            peer=peer,
            deadline_s=self.request_deadline_s,
        )

    def _warn(self, key: str, format: str, **fields: Any) -> None:
        """At most one line per minute per kind; the next one says how many were not logged."""
        if self._warnings.allow(key):
            suppressed = self._warnings.take_suppressed(key)
            _log.warn(format + " ({suppressed} similar not logged)", suppressed=suppressed, **fields)

    def stats(self) -> dict[str, Any]:
        """Counters of the connections, the answers by status and (``events``) of ``POST /events``."""
        counters = self.counters
        out: dict[str, Any] = {
            "connections_open": self.open_connections,
            "max_connections": self.max_connections,
            "connections_accepted": counters["connections_accepted"],
            "connections_refused": counters["connections_refused"],
            "request_deadline_s": self.request_deadline_s,
            "timeouts": counters["timeouts"],
            "idle_closed": counters["idle_closed"],
            "bad_requests": counters["bad_requests"],
            "responses": {str(code): n for code, n in sorted(self.responses.items())},
        }
        if self.events is not None:
            out["events"] = self.events.stats()
        return out
