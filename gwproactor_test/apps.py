"""Applications for fault tests of derived projects' runners (run with ``gwproactor run --app``)."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from gwproactor.actors import Actor
from gwproactor.demo.apps import DemoChild

__all__ = ["SlowStopChild", "StuckActor", "StuckStopChild"]


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
