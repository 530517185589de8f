"""POST /events over real TCP into a real proactor whose FileEventStore lives in a tmp directory.

Every body the endpoint refuses gets a JSON 4xx and leaves the store exactly as it was (same pending ids, nothing
appended); what it accepts is in the store as sent.  Both JSON backends of the codec are used (orjson refuses
integers beyond 64 bits and deep nesting, the stdlib encoder lone surrogates), since the endpoint must refuse
whatever the store path would refuse.  Helpers here (:func:`serve`, :func:`raw_post`) are shared with
``tests/test_web_connections.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
import treq
from twisted.internet.defer import maybeDeferred

from gwproactor.config import HTTPSettings, LinkSettings, ProactorSettings
from gwproactor.message import Codec, ProblemEvent
from gwproactor.proactor import Proactor
from gwproactor.store import FileEventStore
from gwproactor.web._body import INT_MAX, INT_MIN, MAX_JSON_DEPTH, REASONS
from gwproactor_test.fakes import FakeMQTTClient

NAME = "d1.isone.web"


@attrs.define(eq=False)
class Served:
    """A proactor (not started: its upstream link stays down, so events wait in the store) and its web server."""

    proactor: Proactor
    store: FileEventStore
    url: str
    port: int

    @property
    def site(self) -> Any:
        return self.proactor.web.site

    def pending(self) -> list[str]:
        return list(self.store.pending_ids())

    async def close(self) -> None:
        await maybeDeferred(self.proactor.web.stopService)
        await self.store.close()


async def serve(tmp_path: Path, reactor: Any, backend: str = "auto", **http: Any) -> Served:
    """Start only the web service of a proactor with an upstream link and a FileEventStore in ``tmp_path``."""
    store = FileEventStore.open(str(tmp_path / "events"), clock=reactor)
    settings = ProactorSettings(
        long_name=NAME,
        short_name="w",
        links={"parent": LinkSettings(peer_long_name="d1.isone", peer_short_name="a", upstream=True)},
        http=HTTPSettings(enabled=True, port=0, **http),
    )
    p = Proactor(settings, reactor=reactor, store=store, codec=Codec(backend=backend),
                 brokers={"default": FakeMQTTClient()})
    p.attach_web().startService()  # only the web service: the proactor is not started
    port = (await p.web.when_listening()).getHost().port
    return Served(p, store, f"http://127.0.0.1:{port}", port)


async def post(url: str, data: bytes) -> tuple[int, Any, Any]:
    """POST ``data`` to ``url``; the status, the decoded JSON body and the response headers."""
    response = await treq.post(url, data=data, headers={b"content-type": [b"application/json"]}, persistent=False)
    body = await treq.content(response)
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json; charset=utf-8"], body
    return response.code, json.loads(body), response.headers


@pytest.fixture
def reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest.fixture(params=["orjson", "json"])
def backend(request: Any) -> str:
    return request.param


@pytest_twisted.async_yield_fixture
async def served(tmp_path: Path, reactor: Any, backend: str) -> AsyncIterator[Served]:
    s = await serve(tmp_path, reactor, backend, max_body_bytes=64 * 1024)
    yield s
    await s.close()


def nested(levels: int) -> bytes:
    """An event whose ``V`` field nests arrays so that the whole body is ``levels`` deep (the object is level 1)."""
    inner = levels - 1
    return b'{"TypeName": "gridworks.event.deep", "V": ' + b"[" * inner + b"]" * inner + b"}"


def with_value(raw: bytes) -> bytes:
    return b'{"TypeName": "gridworks.event.value", "V": ' + raw + b"}"


REFUSED = [
    pytest.param(nested(1000), 422, "too_deep", "body nests arrays/objects 1000 levels deep", id="nest-1000"),
    pytest.param(nested(30000), 422, "too_deep", "body nests arrays/objects 30000 levels deep", id="nest-30000"),
    pytest.param(nested(300), 422, "too_deep", "body nests arrays/objects 300 levels deep", id="nest-300"),
    pytest.param(nested(MAX_JSON_DEPTH + 1), 422, "too_deep", f"at most {MAX_JSON_DEPTH} are allowed", id="nest-65"),
    pytest.param(with_value(b"%d" % (INT_MAX + 1)), 422, "big_integer", "integer 18446744073709551616 is beyond",
                 id="int-2**64"),
    pytest.param(with_value(b"%d" % (INT_MIN - 1)), 422, "big_integer", "integer -9223372036854775809 is beyond",
                 id="int-below-int64"),
    pytest.param(with_value(b"9" * 5000), 422, "big_integer", "integer 999", id="int-5000-digits"),
    pytest.param(b'{"TypeName": "gridworks.event.x", "TimeCreatedMs": %d}' % 2**70, 422, "big_integer",
                 "integer 1180591620717411303424 is beyond", id="int-typed-field"),
    pytest.param(with_value(b"NaN"), 422, "not_finite", "NaN is not a JSON number", id="NaN"),
    pytest.param(with_value(b"Infinity"), 422, "not_finite", "Infinity is not a JSON number", id="Infinity"),
    pytest.param(with_value(b"[-Infinity]"), 422, "not_finite", "-Infinity is not a JSON number", id="-Infinity"),
    pytest.param(with_value(b"1e400"), 422, "not_finite", "number 1e400 is too large for a double", id="1e400"),
    pytest.param(with_value(b'"\\ud800"'), 422, "unencodable", "event cannot be stored: cannot encode as JSON",
                 id="lone-surrogate"),
    pytest.param(b"[1, 2]", 422, "not_an_object", "body must be a JSON object (an event), got array", id="array"),
    pytest.param(b'{"TypeName": "gridworks.ping"}', 422, "invalid_event", "Payload.TypeName: 'gridworks.ping'",
                 id="not-an-event"),
    pytest.param(b'{"TypeName": "gridworks.event.x"', 400, "not_json", "body is not JSON: ", id="truncated"),
    pytest.param(b'{"TypeName": "gridworks.event.x", "V": "[[[[[[[[[[[[[[[[[[[[', 400, "not_json",
                 "body is not JSON: Unterminated string", id="unterminated-string"),
    pytest.param(b"\xff\xfe{}", 400, "not_utf8", "body is not UTF-8: ", id="not-utf8"),
    pytest.param(b"", 400, "not_json", "body is empty", id="empty"),
]


@pytest.mark.parametrize("data, status, reason, error", REFUSED)
@pytest_twisted.ensureDeferred
async def test_refused_bodies_get_a_json_4xx_and_store_nothing(
    served: Served, data: bytes, status: int, reason: str, error: str
) -> None:
    """Each refused body gets its JSON 4xx and reason, is counted under that reason, and leaves the store unchanged."""
    before, appended = served.pending(), served.store.stats()["appended"]
    code, body, _ = await post(served.url + "/events", data)
    assert code == status and error in body["error"], body
    assert served.pending() == before and served.store.stats()["appended"] == appended
    rejected = served.site.events.stats()["rejected"]
    assert {k: v for k, v in rejected.items() if v} == {reason: 1}
    assert served.site.events.stats()["accepted"] == 0


@pytest_twisted.ensureDeferred
async def test_too_large_body_gets_413_and_stores_nothing(tmp_path: Path, reactor: Any) -> None:
    """A body over max_body_bytes gets a JSON 413, is counted as too_large, and leaves the store unchanged."""
    served = await serve(tmp_path, reactor, max_body_bytes=1024)
    try:
        before = served.pending()
        code, body, _ = await post(served.url + "/events", with_value(b'"' + b"x" * 2000 + b'"'))
        assert (code, body) == (413, {"error": "body larger than 1024 bytes"})
        assert served.pending() == before and served.site.events.stats()["too_large"] == 1
    finally:
        await served.close()


@pytest.mark.parametrize(
    "data, field, value",
    [
        pytest.param(nested(MAX_JSON_DEPTH), "V", json.loads(nested(MAX_JSON_DEPTH))["V"], id="nest-64"),
        pytest.param(with_value(b"%d" % INT_MAX), "V", INT_MAX, id="uint64-max"),
        pytest.param(with_value(b"%d" % INT_MIN), "V", INT_MIN, id="int64-min"),
        pytest.param(with_value(b'"[[[[ {{{{ \\" ]]]]"'), "V", '[[[[ {{{{ " ]]]]', id="brackets-in-a-string"),
        pytest.param(with_value(b"1.5e300"), "V", 1.5e300, id="large-double"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bodies_at_the_limits_are_stored_as_sent(served: Served, data: bytes, field: str, value: Any) -> None:
    """Bodies just inside the limits (64 levels, 64-bit integers, brackets in strings) get 200 and are stored as sent."""
    before = served.pending()
    code, body, _ = await post(served.url + "/events", data)
    assert code == 200, body
    assert served.pending() == [*before, body["MessageId"]]
    stored = json.loads(served.store.read(body["MessageId"]))
    assert stored[field] == value and stored["Src"] == NAME
    assert served.site.events.stats()["accepted"] == 1


@pytest_twisted.ensureDeferred
async def test_an_accepted_event_is_durable_in_the_store_before_the_200(served: Served) -> None:
    """A valid event gets 200 with its MessageId only once it is pending in the store, readable and decodable."""
    data = json.dumps(
        {"TypeName": "gridworks.event.problem", "ProblemType": "warning", "Summary": "door open", "Details": ""}
    ).encode()
    code, body, _ = await post(served.url + "/events", data)
    assert code == 200 and body["MessageId"] in served.pending()
    event = served.proactor.codec.decode_payload(served.store.read(body["MessageId"]))
    assert isinstance(event, ProblemEvent) and event.summary == "door open" and event.src == NAME


@pytest_twisted.ensureDeferred
async def test_stats_count_the_events_endpoint_by_reason(served: Served) -> None:
    """GET /stats shows the /events counters: accepted, rejected by reason (every reason listed), too large."""
    for data in (nested(500), with_value(b"NaN"), with_value(b"NaN"), b"{x", b'{"TypeName": "gridworks.event.ok"}'):
        await post(served.url + "/events", data)
    response = await treq.get(served.url + "/stats", persistent=False)
    stats = json.loads(await treq.content(response))
    events = stats["http"]["events"]
    assert events["accepted"] == 1 and events["too_large"] == 0 and events["unavailable"] == 0
    assert events["rejected"] == {**dict.fromkeys(REASONS, 0), "too_deep": 1, "not_finite": 2, "not_json": 1}
    assert stats["http"]["responses"] == {"200": 1, "400": 1, "422": 3}
    assert stats["store"]["pending"] == len(served.pending())
