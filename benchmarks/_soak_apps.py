"""The soak benchmark's two applications: the demo apps plus a reactor-lag probe (and a way to stop generating).

The library measures reactor lag (:class:`gwproactor.ops.ReactorLag`) only for its systemd
watchdog, and neither ``/stats`` nor the demo's status file reports it.  These subclasses start
one ``ReactorLag`` (a 100 ms timer, as the watchdog uses) and add its figures to each status
line; the lag maximum is reset after each line, so every line carries the worst lag since
the previous one.  Nothing else changes: same settings, same code path.

``SoakChild`` stops generating on SIGUSR1 (the runner handles only SIGTERM and SIGINT).
"""

from __future__ import annotations

import os
import signal
from typing import Any

from gwproactor.demo.apps import DemoChild, DemoParent
from gwproactor.ops import ReactorLag


class _LagMixin:
    reactor: Any

    def _start_lag(self) -> None:
        self.lag = ReactorLag(self.reactor, interval_s=0.1)
        self.lag_max_ever_s = 0.0
        self.lag.start()

    def _lag_status(self) -> dict[str, Any]:
        lag = getattr(self, "lag", None)
        if lag is None:
            return {"pid": os.getpid()}
        stats = lag.stats()
        self.lag_max_ever_s = max(self.lag_max_ever_s, lag.max_s)
        out = {
            "pid": os.getpid(),
            "lag_interval_max_s": stats["max_s"],
            "lag_p99_s": stats["p99_s"],
            "lag_max_ever_s": round(self.lag_max_ever_s, 6),
            "lag_histogram": stats["histogram"],
        }
        lag.reset()
        return out


class SoakChild(_LagMixin, DemoChild):
    """:class:`DemoChild` with a lag probe in its status lines; SIGUSR1 stops generating."""

    def startService(self) -> None:
        self._start_lag()
        super().startService()
        signal.signal(signal.SIGUSR1, lambda *_: self.reactor.callFromThread(self.stop_generating))

    def stop_generating(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self.log.info("soak: generation stopped after {n} events", n=self.generated)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "generating": bool(self._loop is not None and self._loop.running),
                **self._lag_status()}

    def stopService(self) -> Any:
        self.lag.stop()
        return super().stopService()


class SoakParent(_LagMixin, DemoParent):
    """:class:`DemoParent` with a lag probe in its status lines."""

    def startService(self) -> None:
        self._start_lag()
        super().startService()

    def status(self) -> dict[str, Any]:
        return {**super().status(), **self._lag_status()}

    def stopService(self) -> Any:
        self.lag.stop()
        return super().stopService()
