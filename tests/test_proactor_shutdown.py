"""Clock-driven tests of bounded shutdown: a child service that never stops delays the shutdown by its deadline only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.logger import globalLogPublisher

from gwproactor.actors import Actor
from gwproactor.config import LinkSettings, ProactorSettings, StoreSettings
from gwproactor.proactor import Proactor
from gwproactor.store import FileEventStore, MemoryEventStore
from gwproactor_test.fakes import FakeMQTTClient


class StopRecorder(Actor):
    """Records when it was stopped; ``stop_after`` seconds of its clock (None: never) before its stop fires."""

    def __init__(self, name: str, clock: Clock, stopped: list[str], stop_after: float | None = 0.0) -> None:
        super().__init__(name)
        self.clock = clock
        self.stopped = stopped
        self.stop_after = stop_after

    def stopService(self) -> Any:
        super().stopService()
        if self.stop_after is None:
            return Deferred()  # never fires
        return deferLater(self.clock, self.stop_after, self.stopped.append, self.name)


@pytest.fixture
def captured_logs():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def settings(store_dir: Path | None = None, **kwargs: Any) -> ProactorSettings:
    return ProactorSettings(
        long_name="d1.stop",
        short_name="st",
        links={"parent": LinkSettings(peer_long_name="d1", peer_short_name="a", upstream=True)},
        store=StoreSettings(directory=store_dir),
        **kwargs,
    )


def run_shutdown(clock: Clock, proactor: Proactor, seconds: float) -> list[int]:
    """Start a shutdown and advance ``clock`` by ``seconds`` in small steps; returns the exit codes seen so far."""
    exit_codes: list[int] = []
    proactor.shutdown("test").addCallback(exit_codes.append)
    for _ in range(int(seconds * 10)):
        clock.advance(0.1)
    return exit_codes


def not_stopped_lines(events: list[dict]) -> list[dict]:
    return [e for e in events if "did not stop within" in e.get("log_format", "")]


def test_stuck_actor_is_left_behind_and_the_store_still_closed(tmp_path: Path, captured_logs: list) -> None:
    """An actor whose stop never fires: after service_stop_timeout_s the next services stop, the store is closed, exit 1, a log line names it."""
    clock = Clock()
    stopped: list[str] = []
    p = Proactor(settings(tmp_path / "store", service_stop_timeout_s=3.0), reactor=clock,
                 brokers={"default": FakeMQTTClient()})
    p.add_actor(StopRecorder("first", clock, stopped))
    p.add_actor(StopRecorder("stuck", clock, stopped, stop_after=None))  # stopped first: reverse order
    p.startService()
    clock.advance(0)
    exit_codes = run_shutdown(clock, p, 2.5)
    assert exit_codes == [] and stopped == [], "the shutdown waits for the stuck actor up to its deadline"
    assert p.links["parent"].running
    for _ in range(10):
        clock.advance(0.1)
    assert exit_codes == [1]
    assert stopped == ["first"] and not p.links["parent"].running
    [line] = not_stopped_lines(captured_logs)
    assert line["service"] == "stuck" and line["timeout_s"] == 3.0
    assert "'stuck'" in line["what"]
    assert p.counters["stop_timeouts"] == 1
    assert clock.getDelayedCalls() == []
    # Closed: the lock is free, and the shutdown event was synced before the close.
    store = FileEventStore.open(str(tmp_path / "store"), clock=clock)
    try:
        types = [json.loads(store.read(i))["TypeName"] for i in store.pending_ids()]
        assert "gridworks.event.shutdown" in types
    finally:
        store.close()


def test_a_slow_stop_within_the_deadline_is_waited_for(captured_logs: list) -> None:
    """An actor that takes less than service_stop_timeout_s to stop is waited for, and the exit status stays 0."""
    clock = Clock()
    stopped: list[str] = []
    p = Proactor(settings(service_stop_timeout_s=3.0), reactor=clock, store=MemoryEventStore(clock=clock),
                 brokers={"default": FakeMQTTClient()})
    p.add_actor(StopRecorder("slow", clock, stopped, stop_after=2.5))
    p.startService()
    exit_codes = run_shutdown(clock, p, 2.0)
    assert exit_codes == [] and stopped == []
    for _ in range(10):
        clock.advance(0.1)
    assert exit_codes == [0] and stopped == ["slow"]
    assert not_stopped_lines(captured_logs) == []
    assert clock.getDelayedCalls() == []


def test_timeout_keeps_an_earlier_non_zero_exit_code() -> None:
    """A shutdown requested with exit code 3 still ends with 3 when a service also misses its deadline."""
    clock = Clock()
    p = Proactor(settings(service_stop_timeout_s=1.0), reactor=clock, store=MemoryEventStore(clock=clock),
                 brokers={"default": FakeMQTTClient()})
    p.add_actor(StopRecorder("stuck", clock, [], stop_after=None))
    p.startService()
    exit_codes: list[int] = []
    p.shutdown("test", exit_code=3).addCallback(exit_codes.append)
    clock.pump([0.1] * 20)
    assert exit_codes == [3]


class StuckClose(MemoryEventStore):
    """A memory store whose close() never finishes (a disk that hangs in fsync)."""

    def close(self) -> Deferred:
        super().close()
        return Deferred()


def test_a_store_close_that_never_finishes_is_bounded(captured_logs: list) -> None:
    """A store whose close never fires delays the shutdown by service_stop_timeout_s only; exit 1, logged."""
    clock = Clock()
    p = Proactor(settings(service_stop_timeout_s=2.0), reactor=clock, store=StuckClose(clock=clock),
                 brokers={"default": FakeMQTTClient()})
    p.startService()
    exit_codes = run_shutdown(clock, p, 1.5)
    assert exit_codes == []
    clock.pump([0.1] * 10)
    assert exit_codes == [1]
    [line] = not_stopped_lines(captured_logs)
    assert line["service"] == "event store"

