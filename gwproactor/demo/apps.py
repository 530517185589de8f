"""Two small applications — an event-generating child and a recording parent — for the demo, crash tests and benchmarks.

Run them with ``gwproactor run --app gwproactor.demo.apps:DemoChild`` (settings from
``GWP_*`` variables).  Each writes one JSON line every ``status_interval_s`` (and one
at exit) to its status file when one is configured, which the demo reads to print
progress; its ``"t"`` is the wall time (:func:`time.time`) of the line.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, ClassVar

import attrs
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gwproactor.config import ProactorSettings
from gwproactor.message import Event, default_registry
from gwproactor.proactor import Proactor

__all__ = ["DemoChild", "DemoChildSettings", "DemoOptions", "DemoParent", "DemoParentSettings", "Reading"]


@default_registry.register
@attrs.define(frozen=True)
class Reading(Event):
    """A demo measurement event."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.demo.reading"

    seq: int = 0
    value: float = 0.0


@attrs.define(frozen=True, kw_only=True)
class DemoOptions:
    """What the demo applications do.

    :param rate_hz: events per second the child generates (0: as fast as durability allows, in bursts).
    :param count: how many events the child generates (0: no limit).
    :param burst: events generated per tick.
    :param record_file: where each side appends one line per event: the child when the
        event is durable, the parent when its application accepts it.
    :param status_file: where each side appends a JSON status line every ``status_interval_s``.
    :param status_interval_s: seconds between status lines.
    """

    rate_hz: float = 10.0
    count: int = 0
    burst: int = 1
    record_file: str = ""
    status_file: str = ""
    status_interval_s: float = 1.0


@attrs.define(frozen=True, kw_only=True)
class DemoChildSettings(ProactorSettings):
    """Settings of :class:`DemoChild`."""

    demo: DemoOptions = attrs.field(factory=DemoOptions)


@attrs.define(frozen=True, kw_only=True)
class DemoParentSettings(ProactorSettings):
    """Settings of :class:`DemoParent`."""

    demo: DemoOptions = attrs.field(factory=DemoOptions)


class _Recorder:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if path else None

    def write(self, line: str) -> None:
        if self.fd is not None:
            # One unbuffered write per line: it survives a kill -9 of this process.
            os.write(self.fd, (line + "\n").encode())

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _StatusMixin:
    settings: Any
    reactor: Any
    log: Logger

    def _start_status(self) -> None:
        self._status = _Recorder(self.settings.demo.status_file)
        self._status_loop = LoopingCall(self.write_status)
        self._status_loop.clock = self.reactor
        if self.settings.demo.status_file:
            self._status_loop.start(self.settings.demo.status_interval_s, now=True).addErrback(lambda f: self.log.failure("demo status writer failed", f))

    def _stop_status(self) -> None:
        if self._status_loop.running:
            self._status_loop.stop()
        self.write_status(final=True)
        self._status.close()

    def write_status(self, final: bool = False) -> None:
        """Append one JSON status line to the status file (``"t"``: its wall time, a timestamp)."""
        self._status.write(json.dumps({"t": time.time(), "final": final, **self.status()}))

    def status(self) -> dict[str, Any]:  # pragma: no cover - overridden
        return {}


class DemoChild(_StatusMixin, Proactor):
    """Generates :class:`Reading` events and records each one once it is durable."""

    settings_class = DemoChildSettings

    def __init__(self, settings: DemoChildSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.generated = 0
        self.durable = 0
        self.max_pending = 0
        self._records = _Recorder(settings.demo.record_file)
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._start_status()
        options = self.settings.demo
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.reactor
        interval = 1.0 / options.rate_hz if options.rate_hz > 0 else 0.0
        self._loop.start(interval, now=True).addErrback(lambda f: self.log.failure("demo generator failed", f))

    def _tick(self) -> None:
        options = self.settings.demo
        for _ in range(max(1, options.burst)):
            if options.count and self.generated >= options.count:
                if self._loop is not None and self._loop.running:
                    self._loop.stop()
                return
            self.generated += 1
            event = Reading(src=self.name, seq=self.generated, value=float(self.generated % 100))
            d = self.generate_event(event)
            d.addCallback(self._record_durable, event)
            d.addErrback(lambda f: self.log.failure("event not stored", f))
        self.max_pending = max(self.max_pending, self.store.stats().get("pending", 0))

    def _record_durable(self, _: Any, event: Reading) -> None:
        self.durable += 1
        self._records.write(f"{event.message_id} {event.seq}")

    def stopService(self) -> Any:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        d = super().stopService()

        def done(result: Any) -> Any:
            self._stop_status()
            self._records.close()
            return result

        return d.addBoth(done)

    def status(self) -> dict[str, Any]:
        """Link state, events generated / durable / pending / acked, RTT."""
        link = self.upstream
        store = self.store.stats() if not getattr(self.store, "_closed", False) else {}
        rtt = link.acks.rtt if link is not None else None
        return {
            "role": "child",
            "name": self.name,
            "link": link.state.value if link is not None else None,
            "generated": self.generated,
            "durable": self.durable,
            "pending": store.get("pending"),
            "acked": self.outbox.stats.acked + self.outbox.stats.late_acked if self.outbox else 0,
            "reuploaded": self.outbox.stats.reuploaded if self.outbox else 0,
            "max_pending": max(self.max_pending, store.get("pending") or 0),
            "rtt_ms": round(rtt.p50 * 1000, 2) if rtt is not None and rtt.p50 is not None else None,
        }


class DemoParent(_StatusMixin, Proactor):
    """Records every event its application accepts (after deduplication)."""

    settings_class = DemoParentSettings

    def __init__(self, settings: DemoParentSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.readings = 0
        self.events = 0
        self._records = _Recorder(settings.demo.record_file)

    def startService(self) -> None:
        super().startService()
        self._start_status()

    def handle_event(self, link: Any, event: Any) -> Any:
        self.events += 1
        if isinstance(event, Reading):
            self.readings += 1
            self._records.write(f"{event.message_id} {event.seq}")
        return super().handle_event(link, event)

    def stopService(self) -> Any:
        d = super().stopService()

        def done(result: Any) -> Any:
            self._stop_status()
            self._records.close()
            return result

        return d.addBoth(done)

    def status(self) -> dict[str, Any]:
        """Link states and what was received."""
        return {
            "role": "parent",
            "name": self.name,
            "links": self.link_states(),
            "readings": self.readings,
            "events": self.events,
            "duplicates_dropped": self.counters.get("duplicates_dropped", 0),
        }
