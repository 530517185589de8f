"""Applications for fault tests of derived projects' runners (run with ``gwproactor run --app``)."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import deferLater

from gwproactor.demo.apps import DemoChild

__all__ = ["SlowStopChild"]


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
