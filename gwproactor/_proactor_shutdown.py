"""A proactor's orderly shutdown: once, in order, each step within a deadline.

:class:`Shutdown` runs the sequence :meth:`~gwproactor.proactor.Proactor.shutdown` documents and keeps its
outcome (reason, exit code, who waits for it).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from gwproactor.message import ShutdownEvent

class Shutdown:
    """The shutdown of one proactor.

    :param proactor: the proactor (its public API, settings, reactor, links, counters and child services).
    :param supervisor: its actor :class:`~gwproactor.actors.supervision.Supervisor` (stopped first, with the router).
    :param close_store: closes the event store if it was opened (returns a Deferred or None).
    """

    def __init__(self, proactor: Any, supervisor: Any, close_store: Callable[[], Any]) -> None:
        self._proactor = proactor
        self._supervisor = supervisor
        self._close_store = close_store
        self.exit_code = 0
        self.reason: str | None = None
        self.requested: tuple[str, int] | None = None
        self._done: Deferred | None = None
        self._waiters: list[Deferred] = []

    @property
    def started(self) -> bool:
        """True once the shutdown has begun."""
        return self._done is not None

    def when_done(self) -> Deferred:
        """A Deferred that fires with the exit code once the shutdown has completed."""
        d: Deferred = Deferred()
        if self._done is not None and self._done.called:
            d.callback(self.exit_code)
        else:
            self._waiters.append(d)
        return d

    def begin(self, reason: str, exit_code: int) -> Deferred:
        """Start the shutdown (only the first call does); fires with the exit code when it is done."""
        if self._done is None:
            self.exit_code = exit_code
            self.reason = reason
            self._done = Deferred.fromCoroutine(self._graceful(reason))
            self._done.addBoth(self._finished)
        d: Deferred = Deferred()

        def tell(result: object) -> object:
            d.callback(self.exit_code)
            return result

        self._done.addBoth(tell)
        return d

    def _finished(self, result: Any) -> None:
        if isinstance(result, Failure):
            self._proactor.log.failure("shutdown failed", result)
            self.exit_code = self.exit_code or 1
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(self.exit_code)

    async def _graceful(self, reason: str) -> None:
        from twisted.internet.task import deferLater

        p = self._proactor
        self._proactor.log.info("{name} shutting down: {reason}", name=p.name, reason=reason)
        p.router.stop()
        self._supervisor.stop()
        if p.systemd is not None and p.systemd.running:
            p.systemd.stopService()
        if p.running:
            deadline = p.reactor.seconds() + p.settings.shutdown_grace_s
            while self._in_flight() and p.reactor.seconds() < deadline:
                await deferLater(p.reactor, 0.02, lambda: None)
            event = ShutdownEvent(src=p.name, reason=reason)
            try:
                d = p.generate_event(event)
                d.addTimeout(max(p.settings.shutdown_grace_s, 1.0), p.reactor)
                await d
            except Exception:
                self._proactor.log.failure("could not record the shutdown event")
        Service.stopService(p)
        for service in reversed(list(p)):
            name = service.name or repr(service)
            await self._stop_within(service.stopService, f"service {name!r} ({type(service).__name__})", name)
        await self._stop_within(self._close_store, "the event store", "event store")
        self._proactor.log.info("{name} stopped", name=p.name)

    async def _stop_within(self, stop: Callable[[], Any], what: str, service: str) -> None:
        """Run ``stop()`` and wait for it at most ``settings.service_stop_timeout_s``; past that, go on (exit status 1)."""
        p = self._proactor
        timeout_s = p.settings.service_stop_timeout_s
        d = maybeDeferred(stop)
        d.addTimeout(timeout_s, p.reactor)
        try:
            await d
        except defer.TimeoutError:
            p.counters["stop_timeouts"] += 1
            self.exit_code = self.exit_code or 1
            self._proactor.log.error(
                "{what} did not stop within {timeout_s} s; shutting down without waiting for it",
                what=what,
                service=service,
                timeout_s=timeout_s,
            )
        except Exception:
            self._proactor.log.failure("stopping {what} failed", what=what, service=service)

    def _in_flight(self) -> int:
        return sum(link.awaiting_acks for link in self._proactor.links.values() if link.is_active)
