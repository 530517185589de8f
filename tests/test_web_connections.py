"""The HTTP server's own limits over raw TCP: the request deadline, the connection cap, JSON for every answer.

The server is a real proactor's web service with a FileEventStore in a tmp directory
(:func:`tests.test_web_events_store.serve`): a request cut off or refused must leave the store unchanged.
Waits are on Deferreds (a connection's end) or polls with a deadline; nothing sleeps to wait for something.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from gwproactor.config import HTTPSettings, ProactorSettings
from gwproactor.errors import InvalidSettings
from gwproactor.proactor import Proactor
from gwproactor.store import MemoryEventStore
from gwproactor_test.fakes import FakeMQTTClient
from gwproactor_test.wait import await_for
from tests.test_web_events_store import Served, serve

DEADLINE_S = 0.5
#: How long a test waits for something that should happen about DEADLINE_S from now.
PATIENCE_S = DEADLINE_S + 5.0
JSON_TYPE = b"application/json; charset=utf-8"


class RawClient(Protocol):
    """A TCP client that records what it receives; ``closed`` fires with it when the connection ends."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.received = b""
        self.closed: Deferred = Deferred()
        self.closed_at: float | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.closed_at = self.reactor.seconds()
        self.closed.callback(self.received)

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    async def wait_closed(self, timeout_s: float = PATIENCE_S) -> bytes:
        """What was received, once the server closed the connection (fails after ``timeout_s``)."""
        return await self.closed.addTimeout(timeout_s, self.reactor)

    async def response(self, timeout_s: float = PATIENCE_S) -> tuple[int, dict[bytes, bytes], Any]:
        """The first complete response: status, headers (lower-case names) and decoded JSON body."""
        await await_for(lambda: _complete(self.received), timeout_s, lambda: repr(self.received),
                        reactor=self.reactor)
        return parse_response(self.received)


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = parse_headers(head).get(b"content-length")
    return length is not None and len(body) >= int(length)


def parse_headers(head: bytes) -> dict[bytes, bytes]:
    lines = head.split(b"\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}


def parse_response(data: bytes) -> tuple[int, dict[bytes, bytes], Any]:
    head, _, rest = data.partition(b"\r\n\r\n")
    headers = parse_headers(head)
    body = rest[: int(headers[b"content-length"])]
    return int(head.split(b" ", 2)[1]), headers, json.loads(body) if body else None


async def connect(served: Served, reactor: Any) -> RawClient:
    client = RawClient(reactor)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", served.port), client)
    return client


async def request(served: Served, reactor: Any, data: bytes) -> tuple[int, dict[bytes, bytes], Any]:
    """Send ``data`` on a new connection and return the response it gets; the connection is then closed."""
    client = await connect(served, reactor)
    client.send(data)
    try:
        return await client.response()
    finally:
        client.transport.loseConnection()
        await client.wait_closed()


def get(path: bytes) -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture
def reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest_twisted.async_yield_fixture
async def served(tmp_path: Path, reactor: Any) -> AsyncIterator[Served]:
    s = await serve(tmp_path, reactor, request_deadline_s=DEADLINE_S, max_connections=3)
    yield s
    await s.close()


# --- the request deadline ----------------------------------------------------------------------------------------

SLOW_HEAD = b"POST /events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"


@pytest.mark.parametrize(
    "start, trickle",
    [
        pytest.param(SLOW_HEAD, b"{", id="slow-body"),
        pytest.param(b"POST /events HTTP/1.1\r\n", b"X", id="slow-headers"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_client_sending_one_byte_per_interval_is_cut_off_at_the_deadline(
    served: Served, reactor: Any, start: bytes, trickle: bytes
) -> None:
    """A request whose bytes keep arriving (1 every 50 ms) but never complete gets a JSON 408 at the deadline."""
    before = served.pending()
    client = await connect(served, reactor)
    started = reactor.seconds()
    client.send(start)
    sender = task.LoopingCall(client.send, trickle)
    sender.clock = reactor
    sender.start(0.05)
    try:
        received = await client.wait_closed()
    finally:
        sender.stop()
    assert DEADLINE_S - 0.2 <= client.closed_at - started < DEADLINE_S + 2.0
    code, headers, body = parse_response(received)
    assert (code, headers[b"content-type"], headers[b"connection"]) == (408, JSON_TYPE, b"close")
    assert body == {"error": f"request not received within {DEADLINE_S:g} s; connection closed"}
    assert served.site.stats()["timeouts"] == 1 and served.pending() == before
    await await_for(lambda: served.site.open_connections == 0, PATIENCE_S, reactor=reactor)


@pytest_twisted.ensureDeferred
async def test_an_idle_connection_is_closed_at_the_deadline_without_an_answer(served: Served, reactor: Any) -> None:
    """A connection on which no request starts is closed at the deadline, silently, and counted as idle_closed."""
    client = await connect(served, reactor)
    started = reactor.seconds()
    assert await client.wait_closed() == b""
    assert DEADLINE_S - 0.2 <= client.closed_at - started < DEADLINE_S + 2.0
    stats = served.site.stats()
    assert (stats["idle_closed"], stats["timeouts"]) == (1, 0)


@pytest_twisted.ensureDeferred
async def test_the_deadline_restarts_for_each_request_on_a_persistent_connection(
    served: Served, reactor: Any
) -> None:
    """Each request on a keep-alive connection has its own deadline, counted from the end of the previous answer."""
    client = await connect(served, reactor)
    connected = reactor.seconds()
    first = get(b"/health")
    client.send(first[:10])
    await task.deferLater(reactor, DEADLINE_S * 0.6, client.send, first[10:])
    code, _, _ = await client.response()
    assert code == 503  # the link is down: unhealthy, but answered
    # The second request arrives after the connection's first deadline, within the one restarted at the answer.
    client.received = b""
    await task.deferLater(reactor, DEADLINE_S * 0.6, client.send, get(b"/stats"))
    code, headers, body = await client.response()
    assert reactor.seconds() - connected > DEADLINE_S
    assert code == 200 and headers[b"content-type"] == JSON_TYPE and body["name"] == served.proactor.name
    answered = reactor.seconds()
    client.received = b""
    assert await client.wait_closed() == b""  # idle after the answer: closed one deadline later, silently
    assert DEADLINE_S - 0.2 <= client.closed_at - answered < DEADLINE_S + 2.0
    assert (served.site.stats()["timeouts"], served.site.stats()["idle_closed"]) == (0, 1)


@pytest_twisted.ensureDeferred
async def test_a_request_that_arrives_in_time_is_answered(served: Served, reactor: Any) -> None:
    """A POST /events whose body arrives in pieces but before the deadline is stored and answered 200."""
    body = b'{"TypeName": "gridworks.event.slow.but.on.time"}'
    client = await connect(served, reactor)
    client.send(b"POST /events HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), 10):
        await task.deferLater(reactor, 0.01, client.send, body[i : i + 10])
    code, _, reply = await client.response()
    assert code == 200 and served.pending()[-1] == reply["MessageId"]
    client.transport.loseConnection()
    await client.wait_closed()


# --- the connection cap ------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_connections_beyond_the_cap_are_closed_at_once_and_a_slot_frees_when_one_closes(
    tmp_path: Path, reactor: Any
) -> None:
    """With max_connections=3 the 4th connection is closed unread and counted; after one closes a new one is served."""
    served = await serve(tmp_path, reactor, request_deadline_s=30.0, max_connections=3)
    try:
        before = served.pending()
        held = [await connect(served, reactor) for _ in range(3)]
        await await_for(lambda: served.site.open_connections == 3, PATIENCE_S, reactor=reactor)
        extra = await connect(served, reactor)
        extra.send(b"POST /events HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n{}")
        assert await extra.wait_closed() == b""
        stats = served.site.stats()
        assert (stats["connections_refused"], stats["connections_open"], stats["max_connections"]) == (1, 3, 3)
        held[0].transport.loseConnection()
        await held[0].wait_closed()
        await await_for(lambda: served.site.open_connections == 2, PATIENCE_S, reactor=reactor)
        code, headers, body = await request(served, reactor, get(b"/stats"))
        assert code == 200 and headers[b"content-type"] == JSON_TYPE
        assert body["http"]["connections_refused"] == 1 and body["http"]["connections_open"] == 3
        assert served.pending() == before
        for client in held[1:]:
            client.transport.loseConnection()
            await client.wait_closed()
        await await_for(lambda: served.site.open_connections == 0, PATIENCE_S, reactor=reactor)
    finally:
        await served.close()


# --- JSON for every answer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, status, error",
    [
        pytest.param(get(b"/nope/deeper"), 404, "not found; endpoints: ", id="404"),
        pytest.param(get(b"/nope"), 404, "not found; endpoints: ", id="top-level-404"),
        pytest.param(get(b"/events"), 405, "method GET not allowed; use POST", id="405-get-events"),
        pytest.param(b"DELETE /health HTTP/1.1\r\nHost: test\r\n\r\n", 405, "method DELETE not allowed", id="405"),
        pytest.param(b"BREW /stats HTTP/1.1\r\nHost: test\r\n\r\n", 405, "method BREW not allowed", id="405-brew"),
        pytest.param(b"GET * HTTP/1.1\r\nHost: test\r\n\r\n", 405, "use OPTIONS", id="405-star"),
        pytest.param(b"GARBAGE\r\n\r\n", 400, "bad request: ", id="400-request-line"),
        pytest.param(b"GET /health HTTP/1.1\r\nNoColon\r\n\r\n", 400, "bad request: ", id="400-header"),
        pytest.param(b"POST /events HTTP/1.1\r\nContent-Length: 2x\r\n\r\n{}", 400, "bad request: ", id="400-length"),
        pytest.param(b"POST /events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad request: ",
                     id="400-chunked"),
        pytest.param(b"GET /health HTTP/1.1\r\nX: " + b"x" * 20000 + b"\r\n\r\n", 400, "bad request: ",
                     id="400-header-too-long"),
        pytest.param(b"POST /events HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 5\r\n\r\nhello", 400, "bad request: ", id="400-multipart"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_every_error_answer_is_json(
    served: Served, reactor: Any, data: bytes, status: int, error: str
) -> None:
    """404, 405 and the answers Twisted makes itself (bad request line, header, length, chunks) are JSON."""
    before = served.pending()
    code, headers, body = await request(served, reactor, data)
    assert (code, headers[b"content-type"]) == (status, JSON_TYPE)
    assert error in body["error"], body
    assert served.pending() == before


@pytest_twisted.ensureDeferred
async def test_options_star_is_json(served: Served, reactor: Any) -> None:
    """OPTIONS * (a server-wide probe, answered by Twisted with an empty body) is a JSON 200."""
    code, headers, body = await request(served, reactor, b"OPTIONS * HTTP/1.1\r\nHost: test\r\n\r\n")
    assert (code, headers[b"content-type"], body) == (200, JSON_TYPE, {"ok": True})


class ExplodingCodec:
    """A codec whose decoding raises something no endpoint expects (an escaping exception, not a DecodeError)."""

    def __init__(self, codec: Any) -> None:
        self.codec = codec

    def payload_from_dict(self, data: Any) -> Any:
        raise RuntimeError("codec bug")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.codec, name)


@pytest_twisted.ensureDeferred
async def test_an_exception_while_rendering_is_a_json_500(served: Served, reactor: Any) -> None:
    """An exception escaping a resource (Twisted answers an HTML page) is a JSON 500; nothing is stored."""
    before = served.pending()
    served.proactor.codec = ExplodingCodec(served.proactor.codec)
    body = b'{"TypeName": "gridworks.event.x"}'
    code, headers, reply = await request(
        served, reactor, b"POST /events HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert (code, headers[b"content-type"], reply) == (500, JSON_TYPE, {"error": "internal error: codec bug"})
    assert served.pending() == before and served.site.stats()["responses"]["500"] == 1


def test_request_bodies_are_buffered_in_memory() -> None:
    """Request bodies, even chunked ones (length unknown), go to memory, never to a temporary file (one more descriptor)."""
    import io

    from twisted.internet.task import Clock

    from gwproactor.web import make_site
    from tests.test_web_server import FakeProactor

    site = make_site(FakeProactor(Clock()), reactor=Clock())
    assert all(type(site.getContentFile(n)) is io.BytesIO for n in (None, 0, 100, 10**9))


# --- settings ----------------------------------------------------------------------------------------------------


def test_http_settings_reach_the_site() -> None:
    """HTTPSettings' request_deadline_s, max_connections and max_body_bytes are the limits of the proactor's site."""
    from twisted.internet.task import Clock

    clock = Clock()
    http = HTTPSettings(enabled=True, port=0, request_deadline_s=2.5, max_connections=7, max_body_bytes=999)
    p = Proactor(ProactorSettings(long_name="d1.web", short_name="w", http=http), reactor=clock,
                 store=MemoryEventStore(clock=clock), brokers={"default": FakeMQTTClient()})
    site = p.attach_web().site  # built when the proactor starts, or now on request
    assert (site.request_deadline_s, site.max_connections, site.max_body_bytes) == (2.5, 7, 999)
    assert HTTPSettings() == HTTPSettings(request_deadline_s=10.0, max_connections=64, max_body_bytes=65536)


@pytest.mark.parametrize("field", ["request_deadline_s", "max_connections", "max_body_bytes"])
def test_http_limits_must_be_positive(field: str) -> None:
    """A zero limit is refused when the settings are made (no way to switch a limit off by accident)."""
    with pytest.raises((InvalidSettings, ValueError, TypeError)):
        HTTPSettings(**{field: 0})


def test_operations_doc_lists_every_stats_counter() -> None:
    """docs/operations.rst names every key of the http stats, of the /events counters and every rejection reason."""
    from twisted.internet.task import Clock

    from gwproactor.web import make_site
    from gwproactor.web._body import REASONS
    from tests.test_web_server import FakeProactor

    site = make_site(FakeProactor(Clock()), reactor=Clock())
    doc = (Path(__file__).resolve().parent.parent / "docs" / "operations.rst").read_text()
    keys = [*site.stats(), *site.events.stats(), *REASONS]
    missing = [key for key in keys if f"``{key}``" not in doc]
    assert not missing, f"not in docs/operations.rst: {missing}"
