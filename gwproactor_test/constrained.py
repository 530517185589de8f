"""A constrained-link scenario: a backlog drains through a slow, far link while a fresh alarm must overtake it.

Used by ``tests/test_live_constrained.py`` (small backlog, generous bound) and
``benchmarks/constrained.py`` (100,000 events at 64 kbit/s with 300 ms latency).  The child proactor
reaches the broker through a :class:`~gwproactor_test.proxy.FaultProxy` shaped to ``bandwidth`` bytes/s
each way with ``latency`` seconds added; the parent connects directly.  Both run in this process, on
this reactor: the shaped link, not the CPU, is the bottleneck.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import attrs
from twisted.internet.defer import Deferred

from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings
from gwproactor.demo.apps import Reading
from gwproactor.message import Event, default_registry
from gwproactor.proactor import Proactor
from gwproactor_test.wait import await_for

__all__ = ["Alarm", "ConstrainedResult", "run_alarm_through_backlog"]

CHILD, PARENT = "d1.constrained.scada", "d1.constrained"
_P = TypeVar("_P", bound=Proactor)


@default_registry.register
@attrs.define(frozen=True)
class Alarm(Event):
    """An alarm: sent before any queued normal event (``PRIORITY = "alarm"``)."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.gwp.alarm"
    PRIORITY: ClassVar[str] = "alarm"
    text: str = ""


class _Parent(Proactor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.readings = 0
        self.first_reading_at: float | None = None
        self.alarm_seen: Deferred[float] = Deferred()
        self.alarm_after_readings: int | None = None

    def handle_event(self, link: Any, event: Any) -> Any:
        if isinstance(event, Reading):
            self.readings += 1
            if self.first_reading_at is None:
                self.first_reading_at = time.monotonic()
        elif isinstance(event, Alarm) and not self.alarm_seen.called:
            self.alarm_after_readings = self.readings
            self.alarm_seen.callback(time.monotonic())
        return None


@attrs.define
class ConstrainedResult:
    """What :func:`run_alarm_through_backlog` measured."""

    events: int
    alarm_latency_s: float
    alarm_after_readings: int
    drain_s: float
    bytes_on_link: int
    bytes_per_event: float
    compress: bool

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _make(cls: type[_P], endpoint: str, tmp: Path, long: str, short: str, link: LinkSettings) -> _P:
    from twisted.internet import reactor

    settings = ProactorSettings(long_name=long, short_name=short, links={"link": link},
                                brokers={"default": BrokerSettings(endpoint=endpoint)},
                                store=StoreSettings(directory=tmp / f"store-{short}", sync_policy="never"))
    return cls(settings, reactor=reactor)


async def run_alarm_through_backlog(
    broker: Any, make_proxy: Callable[[str, int], Any], tmp: Path, *, events: int, bandwidth: float,
    latency: float, compress: bool = True, window: int = 20, alarm_after: float = 0.1, timeout: float = 3600.0,
) -> ConstrainedResult:
    """Drain ``events`` stored readings through the shaped link; an alarm is generated after ``alarm_after`` of them."""
    proxy = make_proxy("127.0.0.1", broker.port)
    # On a slow link an ack waits behind everything in flight: a window of uncompressed batch frames
    # (2 frames of ~19 kB at 8,000 bytes/s) takes ~5 s to leave, so the 5 s default would time out and resend.
    timing: dict[str, Any] = dict(ack_timeout_s=30.0, heartbeat_s=5.0, receive_deadline_s=90.0)
    child = _make(Proactor, proxy.endpoint(), tmp, CHILD, "s",
                  LinkSettings(peer_long_name=PARENT, peer_short_name="a", upstream=True, window=window,
                               compress=compress, **timing))
    parent = _make(_Parent, broker.endpoint(), tmp, PARENT, "a",
                   LinkSettings(peer_long_name=CHILD, peer_short_name="s", compress=compress, **timing))
    child.startService()
    try:
        for n in range(events):
            child.generate_event(Reading(src=CHILD, seq=n, value=20.0 + (n % 50) / 10))
        await await_for(lambda: len(child.store.pending_ids()) >= events, 60)
        proxy.set_latency(latency)
        proxy.set_bandwidth(bandwidth)
        up, down = proxy.bytes_up, proxy.bytes_down
        parent.startService()
        await await_for(lambda: parent.readings >= max(1, int(events * alarm_after)), timeout,
                        describe=lambda: f"{parent.readings} readings")
        sent_at = time.monotonic()
        child.generate_event(Alarm(src=CHILD, text="pressure too high"))
        seen_at = await parent.alarm_seen
        await await_for(lambda: parent.readings >= events, timeout, describe=lambda: f"{parent.readings} readings")
        drained_at = time.monotonic()
        used = proxy.bytes_up - up + proxy.bytes_down - down
        return ConstrainedResult(
            events=events,
            alarm_latency_s=round(seen_at - sent_at, 3),
            alarm_after_readings=parent.alarm_after_readings or 0,
            drain_s=round(drained_at - (parent.first_reading_at or drained_at), 1),
            bytes_on_link=used,
            bytes_per_event=round(used / events, 1),
            compress=compress,
        )
    finally:
        proxy.set_bandwidth(None)
        proxy.set_latency(0)
        await child.stopService()
        await parent.stopService()
