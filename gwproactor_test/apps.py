"""Applications for fault tests of derived projects' runners (run with ``gwproactor run --app``)."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from gwproactor.actors import Actor
from gwproactor.demo.apps import DemoChild, DemoParent
from gwproactor.ops.clock import is_monotonic

__all__ = ["SlowStopChild", "StatsChild", "StatsParent", "StuckActor", "StuckStopChild"]


class SlowStopChild(DemoChild):
    """A demo child whose shutdown takes ``$GWPT_STOP_DELAY_S`` seconds (default 30) before it stops.

    For tests of what a second signal does while a graceful shutdown is still running.
    """

    def stopService(self) -> Any:
        delay = float(os.environ.get("GWPT_STOP_DELAY_S", "30"))
        self.log.info("slow stop: waiting {delay} s before stopping", delay=delay)
        d = deferLater(self.reactor, delay, lambda: None)
        d.addCallback(lambda _: DemoChild.stopService(self))
        return d


class StuckActor(Actor):
    """An actor whose ``stopService`` returns a Deferred that never fires (a driver hung in its shutdown)."""

    def stopService(self) -> Any:
        super().stopService()
        self.log.info("stuck actor {name}: its stop will never finish", name=self.name)
        return Deferred()


class StuckStopChild(DemoChild):
    """A demo child hosting a :class:`StuckActor` named ``stuck``, for tests of the bounded shutdown
    (``service_stop_timeout_s``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_actor(StuckActor("stuck"))


class _WithStats:
    """Adds ``stats`` (the proactor's :meth:`~gwproactor.proactor.Proactor.stats`), ``monotonic`` and ``reactor``
    (the reactor's class name) to each status line."""

    reactor: Any
    stats: Any
    store: Any

    def status(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"monotonic": is_monotonic(self.reactor), "reactor": type(self.reactor).__name__}
        if not getattr(self.store, "_closed", False):
            extra["stats"] = self.stats()
        return {**super().status(), **extra}  # type: ignore[misc]


class StatsChild(_WithStats, DemoChild):
    """:class:`~gwproactor.demo.apps.DemoChild` whose status lines carry its full stats (links, acks, transitions).

    For live tests that watch a process's links from outside it (set ``GWP_DEMO__STATUS_FILE``).
    """


class StatsParent(_WithStats, DemoParent):
    """:class:`~gwproactor.demo.apps.DemoParent` whose status lines carry its full stats.

    It accepts each event (and so acks it) ``$GWPT_ACCEPT_DELAY_S`` seconds (default 0) after it arrives, on a
    reactor timer: with a delay, the child always has acks in flight.
    """

    def handle_event(self, link: Any, event: Any) -> Any:
        delay = float(os.environ.get("GWPT_ACCEPT_DELAY_S", "0"))
        if delay <= 0 or link is None:
            return super().handle_event(link, event)
        return deferLater(self.reactor, delay, DemoParent.handle_event, self, link, event)
