"""The :class:`Actor` base class: a Twisted service with a routing name and a mailbox."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.logger import Logger
from zope.interface import implementer

from gwproactor.interfaces import IActor, IProactor

if TYPE_CHECKING:  # pragma: no cover
    from gwproactor.message import Message


@implementer(IActor)
class Actor(Service):
    """Base class of live actors.

    Subclasses override :meth:`receive` (and, as with any Twisted service,
    ``startService`` / ``stopService``, calling the base versions).  An actor is
    added to a proactor with :meth:`gwproactor.proactor.Proactor.add_actor`,
    which sets :attr:`proactor`; the actor then sends with :meth:`send` or
    :meth:`send_to`.

    :param name: the routing name; messages whose ``Header.Dst`` equals it are
        delivered to :meth:`receive`.
    """

    log = Logger()
    #: The routing name (Twisted's ``Service.name``, which for an actor is always a str).
    name: str

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"an actor needs a non-empty str name, got {name!r}")
        self.name = name
        self.proactor: IProactor | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def receive(self, message: Message) -> Any:
        """Handle one message routed to this actor.  The default logs and drops it."""
        self.log.warn(
            "{actor} dropped a message of type {message_type} (receive not overridden)",
            actor=self.name,
            message_type=message.header.message_type,
        )
        return None

    def send(self, message: Message) -> None:
        """Route ``message`` through the hosting proactor."""
        self._require_proactor().send(message)

    def send_to(self, dst: str, payload: Any, **kwargs: Any) -> None:
        """Wrap ``payload`` in a message from this actor to the actor ``dst`` and route it."""
        from gwproactor.message import make_message

        self.send(make_message(self.name, dst, payload, **kwargs))

    def _require_proactor(self) -> IProactor:
        if self.proactor is None:
            raise RuntimeError(f"{self!r} is not hosted by a proactor yet: call proactor.add_actor(actor) first")
        return self.proactor
