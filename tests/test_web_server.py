"""Live tests of the HTTP endpoints (/health, /stats, /events) with treq against a real listening port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Callable

import pytest
import pytest_twisted
import treq
from twisted.internet import task
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.web.client import ResponseNeverReceived
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gwproactor.errors import StoreClosed, StoreFull, UnknownActorError
from gwproactor_test.fakes import ProactorStub
from gwproactor.interfaces import IProactor
from gwproactor.message import Codec, GenericEvent, ProblemEvent
from gwproactor.web.server import WebService, make_site


@implementer(IProactor)
class FakeProactor(ProactorStub):
    """The part of the proactor API the web endpoints use; events are 'stored' when the test says so."""

    def __init__(self, reactor: Any) -> None:
        self.name = "d1.isone.test"
        self.reactor = reactor
        self.codec = Codec()
        self.ok = False
        self.states = {"upstream": "awaiting_peer"}
        self.events: list[Any] = []
        self.pending: list[Deferred] = []
        self.arrived: list[Deferred] = []
        self.store_error: Exception | None = None
        self.auto_store = True

    # IProactor
    def add_actor(self, actor: Any) -> Any:
        return actor

    def get_actor(self, name: str) -> Any:
        raise UnknownActorError(name)

    def send(self, message: Any) -> None:
        pass

    def send_threadsafe(self, message: Any) -> None:
        pass

    # the rest of the API used by the web endpoints
    def health(self) -> tuple[bool, dict[str, Any]]:
        return self.ok, {"links": dict(self.states)}

    def link_states(self) -> dict[str, str]:
        return dict(self.states)

    def stats(self) -> dict[str, Any]:
        return {"name": self.name, "events": len(self.events)}

    def generate_event(self, event: Any) -> Deferred:
        if self.store_error is not None:
            return fail(self.store_error)
        self.events.append(event)
        d: Deferred = Deferred()
        self.pending.append(d)
        waiters, self.arrived = self.arrived, []
        for w in waiters:  # on a later turn: never resume the test inside the server's render call
            self.reactor.callLater(0, w.callback, event)
        if self.auto_store:
            d.callback(event.message_id)
        return d

    def when_event_arrives(self) -> Deferred:
        d: Deferred = Deferred()
        self.arrived.append(d)
        return d.addTimeout(10, self.reactor)  # a deadline: a broken test fails instead of hanging


@pytest.fixture
def reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def proactor(reactor: Any) -> FakeProactor:
    return FakeProactor(reactor)


@pytest_twisted.async_yield_fixture
async def server(proactor: FakeProactor, reactor: Any) -> AsyncIterator[tuple[str, Any]]:
    site = make_site(proactor, max_body_bytes=1024)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}", site
    await maybeDeferred(port.stopListening)


async def get(url: str) -> tuple[int, Any]:
    response = await treq.get(url, persistent=False)
    return response.code, json.loads(await treq.content(response))


async def post(url: str, data: Any) -> tuple[int, Any]:
    response = await treq.post(url, data=data, headers={b"content-type": [b"application/json"]}, persistent=False)
    body = await treq.content(response)
    return response.code, json.loads(body)


async def wait_until(reactor: Any, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` on the reactor until true, failing after ``timeout_s``."""
    deadline = reactor.seconds() + timeout_s
    while not predicate():
        assert reactor.seconds() < deadline, "condition not met before the deadline"
        await task.deferLater(reactor, 0.01, lambda: None)


def test_fake_proactor_provides_iproactor(proactor: FakeProactor) -> None:
    """The fake used here is checked against IProactor."""
    verifyObject(IProactor, proactor)


@pytest_twisted.ensureDeferred
async def test_health_flips_from_503_to_200(server: tuple[str, Any], proactor: FakeProactor) -> None:
    """/health answers 503 with the link states while unhealthy and 200 once healthy."""
    url, _ = server
    assert await get(url + "/health") == (503, {"ok": False, "links": {"upstream": "awaiting_peer"}})
    proactor.ok, proactor.states = True, {"upstream": "active"}
    assert await get(url + "/health") == (200, {"ok": True, "links": {"upstream": "active"}})


@pytest_twisted.ensureDeferred
async def test_health_with_required_links(proactor: FakeProactor, reactor: Any) -> None:
    """With required_links, /health is 200 only when each of them is active (other links do not matter)."""
    port = reactor.listenTCP(0, make_site(proactor, required_links=["upstream"]), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/health"
    try:
        proactor.states = {"upstream": "awaiting_peer", "local": "active"}
        code, body = await get(url)
        assert code == 503 and body["required_links"] == ["upstream"] and not body["ok"]
        proactor.states = {"upstream": "active", "local": "stopped"}
        code, body = await get(url)
        assert code == 200 and body["ok"] and body["links"] == proactor.states
    finally:
        await maybeDeferred(port.stopListening)


@pytest_twisted.ensureDeferred
async def test_stats_is_the_proactor_stats_as_json(server: tuple[str, Any], proactor: FakeProactor) -> None:
    """/stats returns proactor.stats() as JSON, with the HTTP server's counters under "http"."""
    url, site = server
    code, body = await get(url + "/stats")
    http_stats = body.pop("http")
    assert code == 200 and body == {"name": "d1.isone.test", "events": 0}
    assert http_stats["events"] == site.events.stats() and http_stats["connections_accepted"] == 1


@pytest_twisted.ensureDeferred
async def test_post_event_replies_only_after_the_event_is_durable(
    server: tuple[str, Any], proactor: FakeProactor
) -> None:
    """POST /events answers 200 with the MessageId only after generate_event's Deferred fires."""
    url, site = server
    proactor.auto_store = False
    arrived = proactor.when_event_arrives()
    body = {"TypeName": "gridworks.event.problem", "ProblemType": "warning", "Summary": "door open", "Details": ""}
    reply = Deferred.fromCoroutine(post(url + "/events", json.dumps(body).encode()))
    event = await arrived
    assert isinstance(event, ProblemEvent)
    assert event.src == "d1.isone.test" and event.summary == "door open" and event.message_id
    assert not reply.called
    proactor.pending[0].callback(event.message_id)
    assert await reply == (200, {"MessageId": event.message_id})
    assert site.events.stats()["accepted"] == 1


@pytest_twisted.ensureDeferred
async def test_post_keeps_given_fields_and_accepts_unregistered_gridworks_events(
    server: tuple[str, Any], proactor: FakeProactor
) -> None:
    """Given Src/MessageId/TimeCreatedMs are kept; an unregistered gridworks.event.* decodes as a generic event."""
    url, _ = server
    body = {
        "TypeName": "gridworks.event.house.door",
        "Src": "d1.isone.test.door",
        "MessageId": "4f1c6e9a-0000-4000-8000-000000000001",
        "TimeCreatedMs": 1700000000000,
        "Open": True,
    }
    assert await post(url + "/events", json.dumps(body).encode()) == (200, {"MessageId": body["MessageId"]})
    event = proactor.events[0]
    assert isinstance(event, GenericEvent)
    assert (event.src, event.time_created_ms, event.extra["Open"]) == ("d1.isone.test.door", 1700000000000, True)


@pytest.mark.parametrize(
    "data, status, reason, error",
    [
        (b"{not json", 400, "not_json", "body is not JSON: "),
        (b"", 400, "not_json", "body is empty; send one JSON object (an event)"),
        (b"\xff\xfe", 400, "not_utf8", "body is not UTF-8: "),
        (b"[1, 2]", 422, "not_an_object", "body must be a JSON object (an event), got array"),
        (b"null", 422, "not_an_object", "body must be a JSON object (an event), got null"),
        (b"{}", 422, "invalid_event", "Payload.TypeName: missing field"),
        (b'{"TypeName": "no.such.type"}', 422, "invalid_event", "Payload.TypeName: unknown type 'no.such.type'"),
        (
            b'{"TypeName": "gridworks.ping"}',
            422,
            "invalid_event",
            "Payload.TypeName: 'gridworks.ping' is not an event type",
        ),
        (
            b'{"TypeName": "gridworks.event.problem", "ProblemType": "error", "Summary": 3}',
            422,
            "invalid_event",
            "Payload.Summary: ",
        ),
        (
            b'{"TypeName": "gridworks.event.problem", "ProblemType": "error"}',
            422,
            "invalid_event",
            "Payload.Summary: missing field",
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_invalid_bodies_get_a_4xx_with_a_precise_error(
    server: tuple[str, Any], proactor: FakeProactor, data: bytes, status: int, reason: str, error: str
) -> None:
    """Bodies that are not JSON get 400, JSON that is not an object or not an event 422; each with its reason."""
    url, site = server
    code, body = await post(url + "/events", data)
    assert code == status
    assert body["error"].startswith(error), body
    assert proactor.events == []
    assert {k: v for k, v in site.events.stats()["rejected"].items() if v} == {reason: 1}


@pytest.mark.parametrize(
    "data, reason",
    [
        (b'{"TypeName": "gridworks.event.x", "V": "\\ud800"}', "unencodable"),
        (b'{"TypeName": "gridworks.event.x", "V": ' + b"[" * 300 + b"]" * 300 + b"}", "too_deep"),
        (b'{"TypeName": "gridworks.event.x", "V": 18446744073709551616}', "big_integer"),
        (b'{"TypeName": "gridworks.event.x", "V": NaN}', "not_finite"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bodies_the_store_would_refuse_never_reach_generate_event(
    server: tuple[str, Any], proactor: FakeProactor, data: bytes, reason: str
) -> None:
    """What the store's encoder would refuse or change is refused (422) before generate_event, which never encodes here."""
    url, site = server
    code, body = await post(url + "/events", data)
    assert code == 422 and proactor.events == [], body
    assert {k: v for k, v in site.events.stats()["rejected"].items() if v} == {reason: 1}


class UnknownLengthProducer:
    """A chunked request body (no Content-Length)."""

    length = UNKNOWN_LENGTH

    def __init__(self, data: bytes) -> None:
        self.data = data

    def startProducing(self, consumer: Any) -> Deferred:
        for i in range(0, len(self.data), 256):
            consumer.write(self.data[i : i + 256])
        d: Deferred = Deferred()
        d.callback(None)
        return d

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def test_unknown_length_producer_provides_ibodyproducer() -> None:
    """The chunked-body helper is a real IBodyProducer."""
    verifyObject(IBodyProducer, implementer(IBodyProducer)(UnknownLengthProducer)(b""))


@pytest_twisted.ensureDeferred
async def test_oversize_bodies_get_413(server: tuple[str, Any], proactor: FakeProactor) -> None:
    """A body over the limit gets 413, whether announced by Content-Length or sent chunked."""
    url, site = server
    big = json.dumps({"TypeName": "gridworks.event.big", "Blob": "x" * 2000}).encode()
    assert await post(url + "/events", big) == (413, {"error": "body larger than 1024 bytes"})
    producer = implementer(IBodyProducer)(UnknownLengthProducer)(big)
    assert await post(url + "/events", producer) == (413, {"error": "body larger than 1024 bytes"})
    assert proactor.events == [] and site.events.too_large == 2
    small = json.dumps({"TypeName": "gridworks.event.small"}).encode()
    code, _ = await post(url + "/events", implementer(IBodyProducer)(UnknownLengthProducer)(small))
    assert code == 200


@pytest.mark.parametrize("error", [StoreFull("store is full (reject_new)"), StoreClosed("store is closed")])
@pytest_twisted.ensureDeferred
async def test_store_rejection_gets_503(server: tuple[str, Any], proactor: FakeProactor, error: Exception) -> None:
    """When the store rejects the event (full or closed) the reply is 503 with the store's message."""
    url, site = server
    proactor.store_error = error
    code, body = await post(url + "/events", b'{"TypeName": "gridworks.event.x"}')
    assert code == 503 and body == {"error": f"event store unavailable: {error}"}
    assert site.events.unavailable == 1


@pytest_twisted.ensureDeferred
async def test_unexpected_store_error_gets_500(server: tuple[str, Any], proactor: FakeProactor) -> None:
    """Any other generate_event failure is a 500 naming it."""
    url, _ = server
    proactor.store_error = OSError("disk on fire")
    code, body = await post(url + "/events", b'{"TypeName": "gridworks.event.x"}')
    assert code == 500 and body == {"error": "event not stored: disk on fire"}


@pytest_twisted.ensureDeferred
async def test_client_disconnect_while_storing_is_harmless(
    server: tuple[str, Any], proactor: FakeProactor, reactor: Any
) -> None:
    """A client that hangs up before the event is durable is counted; the later store result is dropped quietly."""
    url, site = server
    proactor.auto_store = False
    arrived = proactor.when_event_arrives()
    reply = treq.post(url + "/events", data=b'{"TypeName": "gridworks.event.x"}', persistent=False)
    await arrived
    reply.cancel()
    with pytest.raises(ResponseNeverReceived):  # the request was sent; its response is cancelled
        await reply
    await wait_until(reactor, lambda: site.events.disconnected == 1)
    proactor.pending[0].callback("id")
    assert site.events.accepted == 1
    code, body = await get(url + "/stats")
    assert code == 200 and body["events"] == 1 and body["http"]["events"]["disconnected"] == 1


@pytest_twisted.ensureDeferred
async def test_wrong_methods_and_paths(server: tuple[str, Any]) -> None:
    """GET /events is a JSON 405 naming the allowed method, an unknown path is a JSON 404."""
    url, _ = server
    response = await treq.get(url + "/events", persistent=False)
    assert response.code == 405 and response.headers.getRawHeaders(b"allow") == [b"POST"]
    assert (await treq.json_content(response)) == {"error": "method GET not allowed; use POST"}
    code, body = await get(url + "/nope/deeper")
    assert code == 404 and "endpoints" in body["error"]
    code, _ = await post(url + "/health", b"{}")
    assert code == 405


@pytest_twisted.ensureDeferred
async def test_web_service_listens_on_an_endpoint_string(proactor: FakeProactor, reactor: Any) -> None:
    """WebService listens on a server endpoint string while running and stops listening on stop."""
    service = WebService(proactor, "tcp:0:interface=127.0.0.1")
    service.startService()
    port = await service.when_listening()
    url = f"http://127.0.0.1:{port.getHost().port}"
    code, _ = await get(url + "/stats")
    assert code == 200
    await service.stopService()
    with pytest.raises(ConnectError):
        await treq.get(url + "/stats", persistent=False)


def test_web_service_is_twisteds_stream_server_endpoint_service(proactor: FakeProactor) -> None:
    """WebService is a StreamServerEndpointService; building it parses nothing and binds nothing."""
    from twisted.application.internet import StreamServerEndpointService

    service = WebService(proactor, "tcp:0:interface=127.0.0.1", reactor=task.Clock())
    assert isinstance(service, StreamServerEndpointService)
    assert service.endpoint == "tcp:0:interface=127.0.0.1" and service.port is None
    assert service.stopService() is None and not service.running  # stopping a service never started


def test_web_service_on_a_memory_endpoint_reports_the_port_and_stops_it(proactor: FakeProactor) -> None:
    """An endpoint object works too: when_listening fires with its port; stopService stops listening, then fires."""
    from twisted.internet.testing import MemoryReactor

    from twisted.internet.endpoints import TCP4ServerEndpoint

    memory = MemoryReactor()
    service = WebService(proactor, TCP4ServerEndpoint(memory, 0, interface="127.0.0.1"), reactor=task.Clock())
    waiting = service.when_listening()
    service.startService()
    port = waiting.result
    assert service.port is port and memory.tcpServers[0][1] is service.site
    stopped = service.stopService()
    assert stopped.called and service.port is None and not service.running
    service.startService()  # it may start again
    assert len(memory.tcpServers) == 2
    service.stopService()


def test_a_listen_failure_is_logged_and_fails_when_listening(proactor: FakeProactor) -> None:
    """A port that cannot be bound fails when_listening; the service keeps running without a port and stops cleanly."""
    from twisted.internet.error import CannotListenError

    @implementer(IStreamServerEndpoint)
    class Refusing:
        def listen(self, factory: Any) -> Deferred:
            return fail(CannotListenError("127.0.0.1", 1, OSError("in use")))

    from twisted.logger import globalLogPublisher

    service = WebService(proactor, Refusing(), reactor=task.Clock())
    waiting = service.when_listening()
    captured_logs: list[dict] = []
    globalLogPublisher.addObserver(captured_logs.append)
    try:
        service.startService()
    finally:
        globalLogPublisher.removeObserver(captured_logs.append)
    failure = waiting.result
    waiting.addErrback(lambda f: None)
    assert failure.check(CannotListenError) and service.running and service.port is None
    assert any("could not listen" in e.get("log_format", "") for e in captured_logs)
    stopped = service.stopService()
    assert stopped.called and not service.running


@pytest_twisted.ensureDeferred
async def test_defaulted_time_and_access_log_dates_are_wall_time_on_a_monotonic_reactor(
    proactor: FakeProactor, reactor: Any
) -> None:
    """On a monotonic reactor whose wall clock stepped a year since, TimeCreatedMs and access-log dates follow the wall."""
    import time

    from twisted.logger import formatEvent, globalLogPublisher
    from twisted.web.http import datetimeToLogString

    from gwproactor.ops.clock import is_monotonic, use_monotonic_time

    assert use_monotonic_time(reactor) and is_monotonic(reactor)  # what every running proactor does
    year = 365 * 86400.0

    def stepped() -> float:
        return time.time() + year  # the wall clock a year after the switch; reactor.seconds() did not follow

    lines: list[str] = []

    def observe(event: dict) -> None:
        text = formatEvent(event)
        if "POST /events" in text:
            lines.append(text)

    service = WebService(proactor, "tcp:0:interface=127.0.0.1", wall=stepped)
    service.startService()
    globalLogPublisher.addObserver(observe)
    try:
        port = await service.when_listening()
        before = int(stepped() * 1000)
        body = {"TypeName": "gridworks.event.problem", "ProblemType": "warning", "Summary": "s", "Details": ""}
        code, _ = await post(f"http://127.0.0.1:{port.getHost().port}/events", json.dumps(body).encode())
        after = int(stepped() * 1000)
        assert code == 200
        assert before <= proactor.events[0].time_created_ms <= after
        await wait_until(reactor, lambda: bool(lines))
    finally:
        globalLogPublisher.removeObserver(observe)
        await service.stopService()
    day = datetimeToLogString(stepped())[1:12]  # "[14/Nov/2024:..." -> "14/Nov/2024"
    assert day in lines[0], lines[0]
