"""The :class:`Proactor` service: hosts actors, routes their messages, and wires links and the event store."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.application.service import MultiService
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure
from zope.interface import implementer

from gwproactor.actors.router import Router
from gwproactor.interfaces import IActor, IProactor

T = TypeVar("T")


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@implementer(IProactor)
class Proactor(MultiService):
    """A SCADA process: live actors on one reactor, linked to peers over MQTT.

    The proactor is a :class:`~twisted.application.service.MultiService`: add it
    to an application (or start it with ``startService``) and it starts its
    actors.  Messages sent with :meth:`send` before it starts are queued and
    delivered once it has started.

    :param name: the proactor's long name (``Src`` of what it sends).
    :param reactor: the reactor to run on; defaults to the global reactor,
        imported when the proactor is built (never at module import).
    """

    log = Logger(namespace="gwproactor.proactor")

    def __init__(self, name: str, *, reactor: Any = None) -> None:
        super().__init__()
        if not isinstance(name, str) or not name:
            raise ValueError(f"a proactor needs a non-empty str name, got {name!r}")
        self.name = name
        self.reactor = reactor if reactor is not None else _default_reactor()
        self.router = Router(clock=self.reactor, on_failure=self._actor_failed)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # --- actors and routing ------------------------------------------------

    def add_actor(self, actor: Any) -> Any:
        """Host ``actor``; raises :class:`~gwproactor.errors.DuplicateActorError` if its name is taken.

        An actor added while the proactor runs is started at once.  Returns ``actor``.
        """
        if not IActor.providedBy(actor):
            raise TypeError(f"{actor!r} does not provide IActor")
        self.router.add(actor)
        actor.proactor = self
        try:
            self.addService(actor)
        except BaseException:
            self.router.remove(actor.name)
            actor.proactor = None
            raise
        return actor

    def get_actor(self, name: str) -> Any:
        """The actor named ``name``; raises :class:`~gwproactor.errors.UnknownActorError`."""
        return self.router.get(name)

    @property
    def actor_names(self) -> list[str]:
        """Names of the hosted actors."""
        return self.router.names

    def send(self, message: Any) -> None:
        """Route ``message`` to the actor named by its ``Header.Dst``.

        Delivery happens on a later reactor turn, in send order.  Unknown
        destinations are counted as dead letters and logged (rate-limited).
        Must be called from the reactor thread; see :meth:`send_threadsafe`.
        """
        self.router.send(message)

    def send_threadsafe(self, message: Any) -> None:
        """Like :meth:`send`, but callable from any thread (including the reactor thread)."""
        if threadable.isInIOThread():
            self.router.send(message)
        else:
            self.reactor.callFromThread(self.router.send, message)

    def run_blocking(self, f: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred:
        """Run the blocking callable ``f(*args, **kwargs)`` in the reactor's thread pool.

        Returns a Deferred with its result.  Use it for hardware drivers and
        other blocking code; talk back to the reactor with :meth:`send_threadsafe`.
        """
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args, **kwargs)

    def _actor_failed(self, actor: Any, message: Any, failure: Failure) -> None:
        """Called for each failed delivery; subclasses and later layers extend it."""

    # --- lifecycle -----------------------------------------------------------

    def startService(self) -> None:
        """Start every hosted service, then begin delivering queued messages."""
        super().startService()
        self.router.start()

    def stopService(self) -> Deferred:
        """Stop delivering and stop the hosted services in reverse order, one after another."""
        self.router.stop()
        return Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self) -> None:
        from twisted.application.service import Service
        from twisted.internet.defer import maybeDeferred

        Service.stopService(self)
        for service in reversed(list(self)):
            try:
                await maybeDeferred(service.stopService)
            except BaseException:
                self.log.failure("stopping {service} failed", service=service)

    # --- observability ---------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the proactor's counters."""
        return {"name": self.name, "router": self.router.stats.as_dict(), "queued": self.router.queued}
