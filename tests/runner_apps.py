"""Applications for the runner's own tests (``gwproactor run --app tests.runner_apps:...``; the checkout on the path)."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from gwproactor.proactor import Proactor


class FailingStart(Proactor):
    """Starts its children (brokers, links), then fails: the runner must not stay up half-started."""

    def startService(self) -> None:
        super().startService()
        raise RuntimeError("the pump driver is missing")


class ThreadReporter(Proactor):
    """Writes the names of the process's threads to ``$GWPT_THREADS_FILE`` once every broker is connected."""

    def startService(self) -> None:
        super().startService()
        for broker in self.brokers.values():
            broker.when_connected().addCallback(self._connected)

    def _connected(self, _: Any) -> None:
        if all(b.is_connected for b in self.brokers.values()):
            names = sorted(t.name for t in threading.enumerate())
            path = os.environ["GWPT_THREADS_FILE"]
            with open(path + ".tmp", "w") as f:
                json.dump(names, f)
            os.replace(path + ".tmp", path)


class StartThenStop(Proactor):
    """Starts, then asks for its own shutdown on the next reactor turn (a whole run, for log-output tests)."""

    def startService(self) -> None:
        super().startService()
        self.reactor.callLater(0, self.request_shutdown, "test: started")
