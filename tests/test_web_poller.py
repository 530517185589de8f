"""Tests of the REST poller actor: Clock-driven backoff with StubTreq, and live polls of a real local web server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.web import server
from twisted.web.resource import Resource
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gwproactor.errors import UnknownActorError
from gwproactor_test.fakes import ProactorStub
from gwproactor.interfaces import IActor, IProactor
from gwproactor.web.poller import EMPTY, FAILED, SENT, SKIPPED, STOPPED, TIMEOUT, RestPoller


@implementer(IProactor)
class FakeProactor(ProactorStub):
    """Records what the poller sends and the problems it reports."""

    def __init__(self, reactor: Any) -> None:
        self.name = "d1.test"
        self.reactor = reactor
        self.sent: list[Any] = []
        self.problems: list[tuple[str, str, str]] = []

    def add_actor(self, actor: Any) -> Any:
        actor.proactor = self
        return actor

    def get_actor(self, name: str) -> Any:
        raise UnknownActorError(name)

    def send(self, message: Any) -> None:
        self.sent.append(message)

    def send_threadsafe(self, message: Any) -> None:
        self.send(message)

    def report_problem(self, problem_type: str, summary: str, details: str) -> Deferred:
        self.problems.append((problem_type, summary, details))
        return succeed(None)


class Weather(Resource):
    """A test REST endpoint: answers ok / 500 / never, as the test says."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.mode = "ok"
        self.hits = 0
        self.hanging: list[Any] = []
        self.lost: list[Any] = []

    def render_GET(self, request: Any) -> Any:
        self.hits += 1
        if self.mode == "fail":
            request.setResponseCode(500)
            return b"oops"
        if self.mode == "hang":
            self.hanging.append(request)
            request.notifyFinish().addErrback(lambda f: self.lost.append(request))
            return server.NOT_DONE_YET
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"temp_c": 21.5}).encode()


def to_temp(body: bytes, response: Any) -> Any:
    """convert: the payload is the temperature (a plain dict stands in for a payload here)."""
    data = json.loads(body)
    return None if data.get("temp_c") is None else Temp(data["temp_c"])


class Temp:
    """A minimal payload."""

    TYPE_NAME = "test.temp"

    def __init__(self, value: float) -> None:
        self.value = value


def make_poller(proactor: FakeProactor, **kwargs: Any) -> RestPoller:
    kwargs.setdefault("convert", to_temp)
    poller = RestPoller("weather", kwargs.pop("url", "http://weather.test/now"), dst="thermostat", **kwargs)
    proactor.add_actor(poller)
    return poller


def test_fakes_provide_their_interfaces() -> None:
    """The fake proactor provides IProactor; the poller provides IActor."""
    proactor = FakeProactor(Clock())
    verifyObject(IProactor, proactor)
    verifyObject(IActor, make_poller(proactor, http_client=StubTreq(Weather())))


# --- Clock-driven, in-memory HTTP ------------------------------------------------


def test_polls_on_the_interval_and_sends_to_dst() -> None:
    """Each successful poll sends convert's payload to dst; polls run every interval_s."""
    clock = Clock()
    proactor = FakeProactor(clock)
    weather = Weather()
    stub = StubTreq(weather)
    poller = make_poller(proactor, http_client=stub, clock=clock, interval_s=10)
    poller.startService()
    clock.advance(0)
    stub.flush()
    assert weather.hits == 1 and len(proactor.sent) == 1
    message = proactor.sent[0]
    assert (message.src, message.dst, message.payload.value) == ("weather", "thermostat", 21.5)
    clock.advance(9.9)
    stub.flush()
    assert weather.hits == 1
    clock.advance(0.1)
    stub.flush()
    assert weather.hits == 2 and poller.stats()["successes"] == 2
    poller.stopService()
    assert clock.getDelayedCalls() == []


def test_failures_back_off_exponentially_and_success_resets() -> None:
    """HTTP 500s double the delay up to the cap, are reported once per period, and a success resets the delay."""
    clock = Clock()
    proactor = FakeProactor(clock)
    weather = Weather()
    weather.mode = "fail"
    stub = StubTreq(weather)
    poller = make_poller(proactor, http_client=stub, clock=clock, interval_s=1, backoff_cap_s=8)
    poller.startService()
    hit_times = []
    for i in range(1, 400):
        clock.rightNow = round(i * 0.1, 6)  # exact steps: no float drift at timer boundaries
        clock.advance(0)
        stub.flush()
        if weather.hits > len(hit_times):
            hit_times.append(round(clock.seconds(), 1))
        if len(hit_times) == 6:
            break
    gaps = [round(b - a, 1) for a, b in zip(hit_times, hit_times[1:], strict=False)]
    assert gaps == [1, 2, 4, 8, 8]
    stats = poller.stats()
    assert stats["failures"] == 6 and stats["consecutive_failures"] == 6 and stats["successes"] == 0
    assert "HTTP 500" in stats["last_error"]
    assert len(proactor.problems) == 1
    problem_type, summary, details = proactor.problems[0]
    assert problem_type == "warning" and summary == "poller weather failed" and "HTTP 500" in details
    weather.mode = "ok"
    clock.advance(8)
    stub.flush()
    assert poller.stats()["consecutive_failures"] == 0 and poller.next_delay_s == 1
    assert len(proactor.sent) == 1
    poller.stopService()


def test_convert_errors_and_empty_results() -> None:
    """convert raising is a counted failure; convert returning None sends nothing."""
    clock = Clock()
    proactor = FakeProactor(clock)
    stub = StubTreq(Weather())

    def broken(body: bytes, response: Any) -> Any:
        raise ValueError("no temp_c field")

    poller = make_poller(proactor, http_client=stub, clock=clock, convert=broken)
    d = poller.poll()
    stub.flush()
    assert d.result == FAILED and "convert failed" in poller.last_error and "no temp_c field" in poller.last_error
    poller.convert = lambda body, response: None
    d = poller.poll()
    stub.flush()
    assert d.result == EMPTY and proactor.sent == [] and poller.empty == 1


def test_a_poll_in_flight_is_not_overlapped() -> None:
    """poll() while a poll is in flight is skipped."""
    clock = Clock()
    proactor = FakeProactor(clock)
    weather = Weather()
    weather.mode = "hang"
    stub = StubTreq(weather)
    poller = make_poller(proactor, http_client=stub, clock=clock)
    first = poller.poll()
    stub.flush()
    assert not first.called
    assert poller.poll().result == SKIPPED
    weather.hanging[0].write(b'{"temp_c": 3}')
    weather.hanging[0].finish()
    stub.flush()
    assert first.result == SENT and poller.polls == 1 and clock.getDelayedCalls() == []


def test_problem_reports_are_rate_limited_per_kind() -> None:
    """A flood of failures gives one report per kind per period, the next one mentions the suppressed count."""
    clock = Clock()
    proactor = FakeProactor(clock)
    weather = Weather()
    weather.mode = "fail"
    stub = StubTreq(weather)
    poller = make_poller(proactor, http_client=stub, clock=clock, max_reports=1, report_period_s=60)
    for _ in range(5):
        poller.poll()
        stub.flush()
    assert len(proactor.problems) == 1
    clock.advance(60)
    poller.poll()
    stub.flush()
    assert len(proactor.problems) == 2 and "4 similar reports suppressed" in proactor.problems[1][2]


# --- live: a real local web server -----------------------------------------------


@pytest.fixture
def reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest_twisted.async_yield_fixture
async def weather_server(reactor: Any) -> AsyncIterator[tuple[str, Weather]]:
    weather = Weather()
    port = reactor.listenTCP(0, server.Site(weather), interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}/now", weather
    for request in weather.hanging:
        if not request.finished and request not in weather.lost:
            request.finish()
    await maybeDeferred(port.stopListening)


@pytest_twisted.ensureDeferred
async def test_live_poll_fails_on_500_times_out_on_a_hang_and_recovers(
    weather_server: tuple[str, Weather], reactor: Any
) -> None:
    """Against a real server: 500 is a failure, a hung request times out (and is aborted), then a poll recovers."""
    url, weather = weather_server
    proactor = FakeProactor(reactor)
    poller = make_poller(proactor, url=url, reactor=reactor, interval_s=60, timeout_s=0.5)

    weather.mode = "fail"
    assert await poller.poll() == FAILED
    assert "HTTP 500" in poller.last_error

    weather.mode = "hang"
    started = reactor.seconds()
    assert await poller.poll() == TIMEOUT
    assert reactor.seconds() - started >= 0.5
    assert poller.timeouts == 1 and "timed out after 0.5 s" in poller.last_error
    assert poller.consecutive_failures == 2 and poller.next_delay_s == 120

    weather.mode = "ok"
    assert await poller.poll() == SENT
    assert proactor.sent[0].payload.value == 21.5
    assert poller.stats()["consecutive_failures"] == 0 and poller.next_delay_s == 60
    assert [p[0] for p in proactor.problems] == ["warning", "warning"]  # one per kind: HTTP error, timeout


@pytest_twisted.ensureDeferred
async def test_live_connection_refused_is_a_failure(reactor: Any) -> None:
    """A closed port is a counted failure, not a crash."""
    port = reactor.listenTCP(0, server.Site(Weather()), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/now"
    await maybeDeferred(port.stopListening)
    proactor = FakeProactor(reactor)
    poller = make_poller(proactor, url=url, reactor=reactor, timeout_s=5)
    assert await poller.poll() == FAILED
    assert "ConnectionRefused" in poller.last_error


@pytest_twisted.ensureDeferred
async def test_live_stop_cancels_a_hung_poll(weather_server: tuple[str, Weather], reactor: Any) -> None:
    """stopService during a hung poll cancels it quietly (outcome stopped, not a failure)."""
    url, weather = weather_server
    weather.mode = "hang"
    proactor = FakeProactor(reactor)
    poller = make_poller(proactor, url=url, reactor=reactor, timeout_s=30)
    poller.startService()
    d = poller.poll()
    poller.stopService()
    assert await d == STOPPED
    assert poller.failures == 0


def test_timeout_on_the_clock_cancels_the_request_and_backs_off() -> None:
    """A request that never answers is cancelled after timeout_s; the next scheduled poll is backed off."""
    clock = Clock()
    proactor = FakeProactor(clock)
    weather = Weather()
    weather.mode = "hang"
    stub = StubTreq(weather)
    poller = make_poller(proactor, http_client=stub, clock=clock, interval_s=5, timeout_s=2)
    poller.startService()
    clock.advance(0)
    stub.flush()
    assert weather.hits == 1 and poller.timeouts == 0
    clock.advance(2)
    stub.flush()
    assert poller.timeouts == 1 and poller.consecutive_failures == 1 and poller.next_delay_s == 5
    assert [round(c.getTime() - clock.seconds(), 6) for c in clock.getDelayedCalls()] == [5]
    poller.stopService()
    assert clock.getDelayedCalls() == []


def test_a_skipped_scheduled_poll_keeps_the_loop_going() -> None:
    """If a manual poll is in flight when a scheduled poll is due, the loop reschedules instead of stopping."""
    clock = Clock()
    proactor = FakeProactor(clock)
    weather = Weather()
    weather.mode = "hang"
    stub = StubTreq(weather)
    poller = make_poller(proactor, http_client=stub, clock=clock, interval_s=5, timeout_s=60)
    manual = poller.poll()
    stub.flush()
    poller.startService()
    clock.advance(0)
    assert weather.hits == 1 and not manual.called
    assert sorted(round(c.getTime(), 6) for c in clock.getDelayedCalls()) == [5, 60]
    poller.stopService()
    assert manual.result == STOPPED and clock.getDelayedCalls() == []
