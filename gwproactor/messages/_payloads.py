"""The message envelope and the payloads gwproactor itself sends (gridworks 4.x wire names)."""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar, Literal, Mapping, Optional

import attrs

from gwproactor.messages._schema import PayloadRegistry, wire_field


def _new_id() -> str:
    return str(uuid.uuid4())


def now_ms() -> int:
    """Current UTC time in integer milliseconds."""
    return time.time_ns() // 1_000_000


@attrs.define(frozen=True)
class Header:
    """The envelope header: who sends what to whom, and whether it must be acked."""

    TYPE_NAME: ClassVar[str] = "gridworks.header"
    TYPE_NAME_AFTER: ClassVar[Optional[str]] = "ack_required"

    src: str
    dst: str
    message_type: str
    message_id: str = wire_field(default="", required=True)
    ack_required: bool = wire_field(default=False, required=True)
    version: str = "001"
    #: JSON fields this version does not know (kept for re-encoding).
    #: (``attrs.field`` is spelled out in each class, not wrapped in a helper, so that mypy's attrs
    #: plugin sees ``extra`` as keyword-only and the subclasses' positional fields type-check.)
    extra: Mapping[str, Any] = attrs.field(factory=dict, kw_only=True, repr=False, hash=False)


@attrs.define(frozen=True)
class Payload:
    """Base of payload classes: ``TYPE_NAME`` plus the unknown JSON fields in :attr:`extra`.

    Subclasses are attrs classes (``@attrs.define(frozen=True)``) declaring
    ``TYPE_NAME: ClassVar[str]``; field ``foo_bar`` is JSON ``FooBar`` unless
    declared with :func:`wire_field` ``("OtherName")``.  ``TypeName`` is encoded
    after the field named by ``TYPE_NAME_AFTER`` (default: after all fields).
    """

    TYPE_NAME: ClassVar[str]
    TYPE_NAME_AFTER: ClassVar[Optional[str]] = None

    #: JSON fields this class does not declare; re-encoded after the declared ones.
    extra: Mapping[str, Any] = attrs.field(factory=dict, kw_only=True, repr=False, hash=False)

    @property
    def type_name(self) -> str:
        """The payload's ``TypeName``."""
        return self.TYPE_NAME


@attrs.define(frozen=True)
class Message:
    """One envelope: ``{"Header": ..., "Payload": ..., "TypeName": "gw"}``."""

    TYPE_NAME: ClassVar[str] = "gw"

    header: Header
    payload: Any
    #: Unknown envelope fields (kept for re-encoding).
    extra: Mapping[str, Any] = attrs.field(factory=dict, kw_only=True, repr=False, hash=False)

    @property
    def src(self) -> str:
        """``Header.Src``."""
        return self.header.src

    @property
    def dst(self) -> str:
        """``Header.Dst``."""
        return self.header.dst

    @property
    def message_type(self) -> str:
        """``Header.MessageType``."""
        return self.header.message_type

    @property
    def message_id(self) -> str:
        """``Header.MessageId``."""
        return self.header.message_id

    @property
    def ack_required(self) -> bool:
        """``Header.AckRequired``."""
        return self.header.ack_required


@attrs.define(frozen=True)
class Ack(Payload):
    """Acknowledges the message whose ``MessageId`` is :attr:`ack_message_id`.  Never acked itself."""

    TYPE_NAME: ClassVar[str] = "gridworks.ack"

    ack_message_id: str = wire_field("AckMessageID")


@attrs.define(frozen=True)
class Ping(Payload):
    """Heartbeat sent on an otherwise idle link (ack required)."""

    TYPE_NAME: ClassVar[str] = "gridworks.ping"

    message_id: str = attrs.field(factory=_new_id)


@attrs.define(frozen=True)
class Event(Payload):
    """Base of events: durable, acked records that travel upstream.

    ``message_id``, ``time_created_ms`` and ``src`` are keyword-only.
    """

    TYPE_NAME: ClassVar[str] = "gridworks.event"
    TYPE_NAME_AFTER: ClassVar[Optional[str]] = "src"
    PRIORITY: ClassVar[str] = "normal"
    """``"alarm"``, ``"normal"`` or ``"bulk"``: the outbox sends queued events by class in that order
    (oldest first within a class), so a fresh alarm overtakes a backlog."""
    TTL_S: ClassVar[Optional[float]] = None
    """Seconds after ``TimeCreatedMs`` past which a stored event of this type is dropped instead of sent
    (counted and reported); ``None``: it never expires."""

    message_id: str = attrs.field(factory=_new_id, kw_only=True)
    time_created_ms: int = attrs.field(factory=now_ms, kw_only=True)
    src: str = attrs.field(kw_only=True)


@attrs.define(frozen=True)
class GenericEvent(Event):
    """An event whose ``TypeName`` (``gridworks.event.*``) is not registered; keeps all its fields."""

    GENERIC_TYPE_NAME: ClassVar[bool] = True

    type_name: str = attrs.field(kw_only=True)


@attrs.define(frozen=True)
class StartupEvent(Event):
    """The process started."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.startup"


@attrs.define(frozen=True)
class ShutdownEvent(Event):
    """The process is shutting down, with a reason."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.shutdown"

    reason: str = wire_field(default="", required=True)
    version: str = "001"


@attrs.define(frozen=True)
class ProblemEvent(Event):
    """Something went wrong (``problem_type`` ``"error"`` or ``"warning"``)."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.problem"

    problem_type: Literal["error", "warning"] = attrs.field(validator=attrs.validators.in_(("error", "warning")))
    summary: str
    details: str = wire_field(default="", required=True)
    version: str = "001"


@attrs.define(frozen=True)
class CommEvent(Event):
    """Base of communication events about the link named :attr:`peer_name`."""

    peer_name: str
    version: str = "001"


@attrs.define(frozen=True)
class MQTTConnectEvent(CommEvent):
    """The link's broker connection was established."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.comm.mqtt.connect"


@attrs.define(frozen=True)
class MQTTConnectFailedEvent(CommEvent):
    """Connecting the link's broker failed."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.comm.mqtt.connect.failed"


@attrs.define(frozen=True)
class MQTTDisconnectEvent(CommEvent):
    """The link's broker connection was lost."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.comm.mqtt.disconnect"


@attrs.define(frozen=True)
class MQTTFullySubscribedEvent(CommEvent):
    """Every subscription of the link was acknowledged by the broker."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.comm.mqtt.fully.subscribed"


@attrs.define(frozen=True)
class ResponseTimeoutEvent(CommEvent):
    """An ack-required message to the peer was not acked in time."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.comm.response.timeout"


@attrs.define(frozen=True)
class PeerActiveEvent(CommEvent):
    """The link became active (broker connected, subscribed, peer heard)."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.comm.peer.active"


@attrs.define(frozen=True)
class DBGPayload(Payload):
    """Debug request: logging ``levels`` by category and an optional ``command``."""

    TYPE_NAME: ClassVar[str] = "gridworks.proactor.dbg"

    levels: dict = attrs.field(factory=dict)
    command: Optional[str] = None


@attrs.define(frozen=True)
class DBGEvent(Event):
    """Records a debug request; ``command`` is the request's JSON object (kept as a dict)."""

    TYPE_NAME: ClassVar[str] = "gridworks.event.proactor.dbg"

    command: Optional[dict] = attrs.field(factory=dict)
    path: str = wire_field(default="", required=True)
    count: int = wire_field(default=0, required=True)
    msg: str = wire_field(default="", required=True)


@attrs.define(frozen=True)
class Hello(Payload):
    """gwproactor-to-gwproactor announcement of optional capabilities, sent when a link becomes active.

    Not acked.  ``capabilities`` lists feature names (``"batch1"``: the peer accepts
    :class:`EventBatch` frames).  gridworks-proactor 4.x peers neither send nor expect it.
    """

    TYPE_NAME: ClassVar[str] = "gwproactor.hello"

    capabilities: list = attrs.field(factory=list)
    version: str = ""


@attrs.define(frozen=True)
class EventBatch(Payload):
    """Many stored events in one frame (only to a peer that announced ``"batch1"``); one ack acks them all.

    ``events`` holds the events' JSON objects as stored; the receiver accepts each one
    (deduplicated, stored or handled) and acks ``batch_id`` when all are accepted.
    """

    TYPE_NAME: ClassVar[str] = "gwproactor.batch"

    batch_id: str = attrs.field(factory=_new_id)
    events: list = attrs.field(factory=list)


#: Communication events by TypeName.
COMM_EVENT_TYPES: Mapping[str, type[CommEvent]] = {
    cls.TYPE_NAME: cls
    for cls in (
        MQTTConnectEvent,
        MQTTConnectFailedEvent,
        MQTTDisconnectEvent,
        MQTTFullySubscribedEvent,
        ResponseTimeoutEvent,
        PeerActiveEvent,
    )
}

#: The registry holding the framework's payload types; applications register theirs here or in a copy.
default_registry = PayloadRegistry(generic_event=GenericEvent)
for _cls in (
    Ack,
    Ping,
    Hello,
    EventBatch,
    StartupEvent,
    ShutdownEvent,
    ProblemEvent,
    DBGPayload,
    DBGEvent,
    *COMM_EVENT_TYPES.values(),
):
    default_registry.register(_cls)
del _cls


def type_name_of(payload: Any) -> str:
    """The ``TypeName`` of a payload instance (its ``type_name`` or its class's ``TYPE_NAME``)."""
    name = getattr(payload, "type_name", None)
    return name if isinstance(name, str) else type(payload).TYPE_NAME


def make_message(
    src: str,
    dst: str,
    payload: Any,
    *,
    ack_required: bool | None = None,
    message_id: str | None = None,
) -> Message:
    """Wrap ``payload`` in an envelope from ``src`` to ``dst``.

    ``Header.MessageId`` is ``message_id``, else the payload's ``message_id``,
    else a new uuid4 when an ack is required, else ``""``.  ``ack_required``
    defaults to True for events and pings, False for acks and other payloads.
    """
    if ack_required is None:
        ack_required = isinstance(payload, (Event, Ping))
    if message_id is None:
        message_id = getattr(payload, "message_id", None)
        if not isinstance(message_id, str):
            message_id = _new_id() if ack_required else ""
    header = Header(src, dst, type_name_of(payload), message_id, ack_required)
    return Message(header, payload)


def make_ack(src: str, dst: str, acked_id: str) -> Message:
    """An ack message for ``acked_id`` (``MessageId`` ``""``, ``AckRequired`` false)."""
    return Message(Header(src, dst, Ack.TYPE_NAME, "", False), Ack(acked_id))
