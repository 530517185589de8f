"""Delivery of messages between actors: a FIFO mailbox drained on the reactor, dead letters, failure isolation."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gwproactor.interfaces import IActor

if TYPE_CHECKING:  # pragma: no cover
    from gwproactor.message import Message

#: How many messages one reactor turn delivers before yielding to other work.
BATCH = 500
#: At most one dead-letter log line per destination in this many seconds.
DEAD_LETTER_LOG_INTERVAL_S = 10.0


@attrs.define
class ActorStats:
    """Counters for one actor."""

    delivered: int = 0
    failures: int = 0


@attrs.define
class RouterStats:
    """Counters of the router as a whole."""

    routed: int = 0
    delivered: int = 0
    failures: int = 0
    dead_letters: int = 0
    dead_letters_by_dst: dict[str, int] = attrs.field(factory=dict)
    actors: dict[str, ActorStats] = attrs.field(factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return attrs.asdict(self)


class MessageHold(Protocol):
    """What the router asks of its supervisor: whether to hold a message back for now."""

    def hold(self, message: Message) -> bool:
        """Keep ``message`` (True) while its destination is restarting; False means deliver it now."""
        ...


@attrs.define(eq=False)
class Router:
    """Routes messages to actors by ``Header.Dst``.

    Messages are queued and delivered on a later reactor turn, in the order they
    were sent (so FIFO per sender).  Until :meth:`start` they are only queued.
    An exception or failed Deferred from ``receive`` is logged, counted and handed
    to ``on_failure``; it never stops delivery to other actors.

    :param clock: provides ``callLater`` and ``seconds``.
    :param on_failure: ``on_failure(actor, message, failure)``, called for each
        failed delivery (the proactor turns it into a problem event and a
        supervision decision).
    """

    clock: IReactorTime
    on_failure: Callable[[IActor, Message, Failure], None] = lambda actor, message, failure: None
    stats: RouterStats = attrs.field(factory=RouterStats)
    supervisor: MessageHold | None = None
    """A :class:`~gwproactor.actors.supervision.Supervisor`: messages for an actor it is restarting are held."""
    _actors: dict[str, IActor] = attrs.field(factory=dict, init=False)
    _queue: deque[Message] = attrs.field(factory=deque, init=False)
    _scheduled: IDelayedCall | None = attrs.field(default=None, init=False)
    _running: bool = attrs.field(default=False, init=False)
    _dead_letter_logged: dict[str, tuple[float, int]] = attrs.field(factory=dict, init=False)
    log: Logger = attrs.field(factory=lambda: Logger(namespace="gwproactor.router"), init=False)

    # --- actors -------------------------------------------------------------

    def add(self, actor: IActor) -> None:
        """Register ``actor`` (an :class:`~gwproactor.interfaces.IActor`) under its name."""
        from gwproactor.errors import DuplicateActorError

        if not IActor.providedBy(actor):
            raise TypeError(f"{actor!r} does not provide IActor")
        if actor.name in self._actors:
            raise DuplicateActorError(f"an actor named {actor.name!r} is already registered")
        self._actors[actor.name] = actor
        self.stats.actors.setdefault(actor.name, ActorStats())

    def remove(self, name: str) -> IActor:
        """Forget the actor ``name``; later messages to it are dead letters."""
        return self._actors.pop(name)

    def get(self, name: str) -> IActor:
        """The actor named ``name``; raises :class:`~gwproactor.errors.UnknownActorError`."""
        from gwproactor.errors import UnknownActorError

        try:
            return self._actors[name]
        except KeyError:
            raise UnknownActorError(f"no actor is named {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._actors

    @property
    def names(self) -> list[str]:
        """Names of the registered actors, in registration order."""
        return list(self._actors)

    # --- delivery -----------------------------------------------------------

    @property
    def queued(self) -> int:
        """Messages waiting for delivery."""
        return len(self._queue)

    def start(self) -> None:
        """Begin delivering (including what was queued before)."""
        self._running = True
        self._schedule()

    def stop(self) -> None:
        """Stop delivering; queued messages stay queued."""
        self._running = False
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None

    def send(self, message: Message) -> None:
        """Queue ``message`` for the actor named by its ``Header.Dst``."""
        self.stats.routed += 1
        self._queue.append(message)
        self._schedule()

    def _schedule(self) -> None:
        if self._running and self._scheduled is None and self._queue:
            self._scheduled = self.clock.callLater(0, self._drain)

    def _drain(self) -> None:
        self._scheduled = None
        queue = self._queue
        for _ in range(min(BATCH, len(queue))):
            if not self._running:
                break
            self._deliver(queue.popleft())
        self._schedule()

    def _deliver(self, message: Message) -> None:
        dst = message.header.dst
        actor = self._actors.get(dst)
        if actor is None:
            self._dead_letter(message)
            return
        if self.supervisor is not None and self.supervisor.hold(message):
            return
        self.stats.delivered += 1
        self.stats.actors[dst].delivered += 1
        try:
            result = actor.receive(message)
        except Exception:  # not BaseException: KeyboardInterrupt and SystemExit are no actor's failure
            self._failed(actor, message, Failure())
            return
        if isinstance(result, Deferred):
            result.addErrback(lambda f: self._failed(actor, message, f))

    def _failed(self, actor: IActor, message: Message, failure: Failure) -> None:
        self.stats.failures += 1
        self.stats.actors[actor.name].failures += 1
        self.log.failure(
            "actor {actor} failed on a {message_type} message from {src}",
            failure,
            actor=actor.name,
            message_type=message.header.message_type,
            src=message.header.src,
        )
        try:
            self.on_failure(actor, message, failure)
        except Exception:
            self.log.failure("on_failure callback failed for actor {actor}", actor=actor.name)

    def _dead_letter(self, message: Message) -> None:
        dst = message.header.dst
        self.stats.dead_letters += 1
        self.stats.dead_letters_by_dst[dst] = self.stats.dead_letters_by_dst.get(dst, 0) + 1
        now = self.clock.seconds()
        last, suppressed = self._dead_letter_logged.get(dst, (None, 0))
        if last is None or now - last >= DEAD_LETTER_LOG_INTERVAL_S:
            self.log.warn(
                "dead letter: no actor named {dst} (message type {message_type} from {src}); "
                "{suppressed} more to it were not logged",
                dst=dst,
                message_type=message.header.message_type,
                src=message.header.src,
                suppressed=suppressed,
            )
            self._dead_letter_logged[dst] = (now, 0)
        else:
            self._dead_letter_logged[dst] = (last, suppressed + 1)
