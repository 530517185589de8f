"""Messages, payload registry, codec validation and topic helpers (gwproactor.message)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any, ClassVar, Literal, Optional

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from gwproactor.errors import DecodeError, EncodeError, TopicError, UnknownTypeError
from gwproactor.interfaces import ICodec
from gwproactor.message import (
    COMM_EVENT_TYPES,
    Ack,
    Codec,
    CommEvent,
    DBGEvent,
    DBGPayload,
    DuplicateTypeNameError,
    Event,
    GenericEvent,
    Header,
    Message,
    MQTTConnectEvent,
    MQTTConnectFailedEvent,
    MQTTDisconnectEvent,
    MQTTFullySubscribedEvent,
    Payload,
    PayloadRegistry,
    PeerActiveEvent,
    Ping,
    ProblemEvent,
    RegistryError,
    ResponseTimeoutEvent,
    ShutdownEvent,
    StartupEvent,
    dashed,
    default_registry,
    make_ack,
    make_message,
    parse_topic,
    subscription_filter,
    topic_for,
    wire_field,
)

SRC = "d1.isone.ct.newhaven.orange1.scada"
PARENT = "d1.isone.ct.newhaven.orange1"
BACKENDS = ["json", "orjson"]


@pytest.fixture(params=BACKENDS)
def codec(request: pytest.FixtureRequest) -> Codec:
    """A codec for each JSON backend."""
    return Codec(backend=request.param)


# --- an application's own payload classes -------------------------------------


@attrs.define(frozen=True)
class Reading(Payload):
    """An application payload with assorted field types."""

    TYPE_NAME: ClassVar[str] = "app.reading"

    channel: str
    value: float
    unit: Optional[str] = None
    samples: list = attrs.field(factory=list)
    kind: Literal["raw", "avg"] = "raw"
    about_id: str = wire_field("AboutID", default="")


@attrs.define(frozen=True)
class Plain:
    """An attrs class that does not derive from Payload (no ``extra``)."""

    TYPE_NAME: ClassVar[str] = "app.plain"

    count: int


def _app_codec(backend: str = "json") -> Codec:
    registry = default_registry.copy()
    registry.register(Reading)
    registry.register(Plain)
    return Codec(registry, backend=backend)


def _envelope(payload: dict, **header: Any) -> dict:
    head = {
        "Src": SRC,
        "Dst": "a",
        "MessageType": payload.get("TypeName"),
        "MessageId": payload.get("MessageId", ""),
        "AckRequired": "MessageId" in payload,
        "TypeName": "gridworks.header",
        "Version": "001",
    }
    head.update(header)
    return {"Header": head, "Payload": payload, "TypeName": "gw"}


def _startup_dict(**extra: Any) -> dict:
    payload = {
        "MessageId": "a6b3f1cd-215b-445c-a05d-a32cf4aad190",
        "TimeCreatedMs": 1795731199964,
        "Src": SRC,
        "TypeName": "gridworks.event.startup",
    }
    payload.update(extra)
    return payload


# --- classes and helpers ----------------------------------------------------------


def test_codec_provides_icodec() -> None:
    """Codec provides ICodec."""
    verifyObject(ICodec, Codec())
    verifyObject(ICodec, Codec(backend="json"))


def test_auto_backend_prefers_orjson() -> None:
    """The default backend is orjson when it is importable."""
    assert Codec().backend == "orjson"
    with pytest.raises(ValueError, match="unknown JSON backend"):
        Codec(backend="yaml")


def test_header_defaults() -> None:
    """Header has the 4.x defaults: empty MessageId, no ack, version 001."""
    header = Header(SRC, "a", "gridworks.ack")
    assert (header.message_id, header.ack_required, header.version) == ("", False, "001")
    assert header.TYPE_NAME == "gridworks.header"
    assert header.extra == {}
    assert "extra" not in repr(header)


def test_message_properties() -> None:
    """Message exposes the header's src, dst, type, id and ack flag."""
    ping = Ping("p-1")
    message = make_message(SRC, "a", ping)
    assert (message.src, message.dst, message.message_type) == (SRC, "a", "gridworks.ping")
    assert (message.message_id, message.ack_required) == ("p-1", True)
    assert message.payload is ping
    assert Message.TYPE_NAME == "gw"


def test_event_defaults() -> None:
    """Events get a uuid4 MessageId and an integer ms creation time by default."""
    before = time.time() * 1000
    event = StartupEvent(src=SRC)
    assert uuid.UUID(event.message_id).version == 4
    assert isinstance(event.time_created_ms, int)
    assert before - 1 <= event.time_created_ms <= before + 60_000
    assert StartupEvent(src=SRC).message_id != event.message_id
    assert event.type_name == "gridworks.event.startup"


def test_event_type_names() -> None:
    """Framework payloads carry the 4.x TypeNames."""
    assert Ack.TYPE_NAME == "gridworks.ack"
    assert Ping.TYPE_NAME == "gridworks.ping"
    assert ShutdownEvent.TYPE_NAME == "gridworks.event.shutdown"
    assert ProblemEvent.TYPE_NAME == "gridworks.event.problem"
    assert DBGPayload.TYPE_NAME == "gridworks.proactor.dbg"
    assert DBGEvent.TYPE_NAME == "gridworks.event.proactor.dbg"
    assert COMM_EVENT_TYPES == {
        "gridworks.event.comm.mqtt.connect": MQTTConnectEvent,
        "gridworks.event.comm.mqtt.connect.failed": MQTTConnectFailedEvent,
        "gridworks.event.comm.mqtt.disconnect": MQTTDisconnectEvent,
        "gridworks.event.comm.mqtt.fully.subscribed": MQTTFullySubscribedEvent,
        "gridworks.event.comm.response.timeout": ResponseTimeoutEvent,
        "gridworks.event.comm.peer.active": PeerActiveEvent,
    }
    for cls in COMM_EVENT_TYPES.values():
        assert cls("parent", src=SRC).version == "001"


def test_problem_event_checks_problem_type() -> None:
    """ProblemEvent accepts only 'error' or 'warning'."""
    assert ProblemEvent("warning", "low disk", src=SRC).details == ""
    with pytest.raises(ValueError):
        ProblemEvent("fatal", "x", src=SRC)


def test_make_message_defaults() -> None:
    """make_message: events and pings need acks and reuse their id; acks and others do not."""
    event = ShutdownEvent(reason="bye", src=SRC)
    m = make_message(SRC, "a", event)
    assert (m.message_type, m.message_id, m.ack_required) == ("gridworks.event.shutdown", event.message_id, True)
    m = make_message(SRC, "a", Ack("x"))
    assert (m.message_id, m.ack_required) == ("", False)
    m = make_message(SRC, "a", Reading("t1", 1.5))
    assert (m.message_id, m.ack_required) == ("", False)
    m = make_message(SRC, "a", Reading("t1", 1.5), ack_required=True)
    assert m.ack_required is True and uuid.UUID(m.message_id)
    m = make_message(SRC, "a", event, ack_required=False, message_id="m-7")
    assert (m.message_id, m.ack_required) == ("m-7", False)


def test_make_ack() -> None:
    """make_ack builds the 4.x ack envelope."""
    m = make_ack(PARENT, "s", "id-1")
    assert m.payload == Ack("id-1")
    assert m.header == Header(PARENT, "s", "gridworks.ack", "", False)
    assert json.loads(Codec().encode(m)) == {
        "Header": {
            "Src": PARENT,
            "Dst": "s",
            "MessageType": "gridworks.ack",
            "MessageId": "",
            "AckRequired": False,
            "TypeName": "gridworks.header",
            "Version": "001",
        },
        "Payload": {"AckMessageID": "id-1", "TypeName": "gridworks.ack"},
        "TypeName": "gw",
    }


# --- registry ---------------------------------------------------------------------


def test_registry_register_and_lookup() -> None:
    """An application class registers (as a decorator too) and is looked up by TypeName."""
    registry = PayloadRegistry()

    @registry.register
    @attrs.define(frozen=True)
    class Local(Payload):
        TYPE_NAME: ClassVar[str] = "app.local"
        n: int = 0

    assert registry.lookup("app.local") is Local
    assert registry.get("app.local") is Local
    assert "app.local" in registry and len(registry) == 1
    assert list(registry) == ["app.local"]
    assert dict(registry.classes()) == {"app.local": Local}
    assert registry.register(Local) is Local  # same class again: no-op
    with pytest.raises(UnknownTypeError, match=r"app\.other"):
        registry.lookup("app.other")
    assert registry.get("app.other") is None


def test_registry_duplicate_type_name_raises() -> None:
    """Registering a different class under a taken TypeName raises DuplicateTypeNameError."""

    @attrs.define(frozen=True)
    class FakeAck(Payload):
        TYPE_NAME: ClassVar[str] = "gridworks.ack"
        ack_message_id: str = ""

    with pytest.raises(DuplicateTypeNameError, match=r"gridworks\.ack"):
        default_registry.copy().register(FakeAck)


def test_registry_rejects_bad_classes() -> None:
    """Non-attrs classes, classes without TYPE_NAME and envelope TypeNames are refused."""

    class NotAttrs:
        TYPE_NAME = "app.x"

    @attrs.define
    class NoType:
        x: int = 0

    @attrs.define
    class Envelope:
        TYPE_NAME: ClassVar[str] = "gw"

    registry = PayloadRegistry()
    for cls in (NotAttrs, NoType, Envelope, CommEvent, Payload):
        with pytest.raises(RegistryError):
            registry.register(cls)


def test_registry_rejects_json_name_clashes() -> None:
    """Two fields with one JSON name, or a field named TypeName, are refused."""

    @attrs.define(frozen=True)
    class Twice(Payload):
        TYPE_NAME: ClassVar[str] = "app.twice"
        a_b: str = ""
        other: str = wire_field("AB", default="")

    @attrs.define(frozen=True)
    class Typed(Payload):
        TYPE_NAME: ClassVar[str] = "app.typed"
        type_name_: str = wire_field("TypeName", default="")

    for cls in (Twice, Typed):
        with pytest.raises(RegistryError, match="JSON name"):
            PayloadRegistry().register(cls)


def test_wire_field_required_override(codec: Codec) -> None:
    """wire_field(required=...) overrides the default rule in both directions."""

    @attrs.define(frozen=True)
    class Opts(Payload):
        TYPE_NAME: ClassVar[str] = "app.opts"
        must: str = wire_field(default="", required=True)  # noqa: RUF009 -- an attrs field specifier, not a default
        may: list = wire_field(factory=list, required=False)  # noqa: RUF009 -- as above

    registry = PayloadRegistry()
    registry.register(Opts)
    app = Codec(registry, backend=codec.backend)
    assert app.decode_payload(b'{"Must":"x","TypeName":"app.opts"}') == Opts("x", [])
    with pytest.raises(DecodeError, match=r"Payload\.Must: missing field"):
        app.decode_payload(b'{"May":[],"TypeName":"app.opts"}')


def test_message_module_reexports() -> None:
    """gwproactor.message re-exports the whole gwproactor.messages API."""
    import gwproactor.message
    import gwproactor.messages

    assert gwproactor.message.__all__ == gwproactor.messages.__all__
    for name in gwproactor.messages.__all__:
        assert getattr(gwproactor.message, name) is getattr(gwproactor.messages, name)


def test_registry_copy_is_independent() -> None:
    """A copy can be extended without changing the original (the default registry stays clean)."""
    copy = default_registry.copy()
    copy.register(Reading)
    assert copy.lookup("app.reading") is Reading
    assert "app.reading" not in default_registry
    assert copy.lookup("gridworks.ack") is Ack


def test_registry_generic_events() -> None:
    """Unknown gridworks.event.* TypeNames look up as GenericEvent; other unknown names raise."""
    assert default_registry.lookup("gridworks.event.something.new") is GenericEvent
    with pytest.raises(UnknownTypeError):
        default_registry.lookup("gridworks.something")
    with pytest.raises(UnknownTypeError):
        PayloadRegistry().lookup("gridworks.event.x")


# --- lossless decoding ------------------------------------------------------------


def test_application_payload_round_trip(codec: Codec) -> None:
    """A registered application payload encodes with its JSON names and decodes back equal."""
    app = _app_codec(codec.backend)
    reading = Reading("t1", 21, unit="C", samples=[1, 2.5], kind="avg", about_id="x")
    message = make_message(SRC, "a", reading)
    data = app.encode(message)
    assert json.loads(data)["Payload"] == {
        "Channel": "t1",
        "Value": 21,
        "Unit": "C",
        "Samples": [1, 2.5],
        "Kind": "avg",
        "AboutID": "x",
        "TypeName": "app.reading",
    }
    assert app.decode(data) == message
    plain = make_message(SRC, "a", Plain(3))
    assert app.decode(app.encode(plain)) == plain


def test_constant_defaults_may_be_omitted(codec: Codec) -> None:
    """Fields with a constant default may be missing on the wire; factory defaults may not."""
    app = _app_codec(codec.backend)
    reading = app.decode_payload(b'{"Channel":"t","Value":1.0,"Samples":[],"TypeName":"app.reading"}')
    assert reading == Reading("t", 1.0)
    with pytest.raises(DecodeError, match=r"Payload\.Samples: missing field"):
        app.decode_payload(b'{"Channel":"t","Value":1.0,"TypeName":"app.reading"}')


def test_unknown_fields_survive(codec: Codec) -> None:
    """Unknown payload, header and envelope fields are kept and re-encoded after the known ones."""
    obj = _envelope(_startup_dict(Zone="north", Nested={"a": [1, None]}), Priority=3)
    obj["Trace"] = "t-1"
    message = codec.decode(json.dumps(obj))
    assert message.payload.extra == {"Zone": "north", "Nested": {"a": [1, None]}}
    assert message.header.extra == {"Priority": 3}
    assert message.extra == {"Trace": "t-1"}
    out = codec.encode(message)
    assert json.loads(out) == obj
    assert list(json.loads(out)["Payload"])[-2:] == ["Zone", "Nested"]
    assert codec.decode(out) == message


def test_generic_event_round_trip(codec: Codec) -> None:
    """An unknown gridworks.event.* decodes as GenericEvent and re-encodes losslessly."""
    payload = {
        "MessageId": "e-1",
        "TimeCreatedMs": 5,
        "Src": SRC,
        "TypeName": "gridworks.event.relay.flipped",
        "Relay": 3,
        "State": {"On": True},
    }
    message = codec.decode(json.dumps(_envelope(payload)).encode())
    assert isinstance(message.payload, GenericEvent)
    assert isinstance(message.payload, Event)
    assert message.payload.type_name == "gridworks.event.relay.flipped"
    assert message.payload.extra == {"Relay": 3, "State": {"On": True}}
    raw = json.dumps(_envelope(payload), separators=(",", ":")).encode()
    assert codec.encode(message) == raw
    made = make_message(SRC, "a", message.payload)
    assert (made.message_type, made.message_id, made.ack_required) == ("gridworks.event.relay.flipped", "e-1", True)


def test_generic_event_needs_event_fields(codec: Codec) -> None:
    """An unknown event without the common event fields is rejected."""
    payload = {"TypeName": "gridworks.event.relay.flipped", "Relay": 3}
    with pytest.raises(DecodeError, match=r"Payload\.MessageId: missing field"):
        codec.decode(json.dumps(_envelope(payload)))


def test_payload_helpers(codec: Codec) -> None:
    """encode_payload/decode_payload and the dict helpers handle bare payloads."""
    dbg = DBGPayload({"io_loop": 20}, None)
    expected = {"Levels": {"io_loop": 20}, "Command": None, "TypeName": "gridworks.proactor.dbg"}
    assert codec.payload_to_dict(dbg) == expected
    assert codec.encode_payload(dbg) == b'{"Levels":{"io_loop":20},"Command":null,"TypeName":"gridworks.proactor.dbg"}'
    assert codec.decode_payload(codec.encode_payload(dbg)) == dbg
    assert codec.payload_from_dict(codec.payload_to_dict(dbg)) == dbg
    event = DBGEvent(codec.payload_to_dict(dbg), path="p", count=2, msg="m", src=SRC)
    assert codec.decode_payload(codec.encode_payload(event)) == event


def test_encoding_is_compact_utf8(codec: Codec) -> None:
    """Output is compact JSON with non-ASCII text as raw UTF-8."""
    event = ProblemEvent("error", "Température ☃", details="x\ny", src=SRC, message_id="m", time_created_ms=1)
    data = codec.encode_payload(event)
    assert b" " not in data.replace("Température ☃".encode(), b"")
    assert "Température ☃".encode() in data
    assert data.startswith(b'{"MessageId":"m","TimeCreatedMs":1,"Src":"' + SRC.encode() + b'","TypeName":')
    assert codec.decode_payload(data) == event


# --- malformed input --------------------------------------------------------------


def _bad(codec: Codec, obj: Any) -> str:
    data = obj if isinstance(obj, (bytes, str, int)) else json.dumps(obj)
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    return str(info.value)


def test_decode_rejects_non_utf8(codec: Codec) -> None:
    """Bytes that are not UTF-8 raise DecodeError saying so."""
    for data in (b'{"TypeName":"gw","Note":"\xe9"}', b"\xff\xfe{}"):
        assert _bad(codec, data).startswith("not UTF-8: ")


def test_decode_rejects_non_bytes(codec: Codec) -> None:
    """Input that is neither bytes nor str raises DecodeError."""
    assert "expected bytes or str" in _bad(codec, 42)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [b"", b"{", b"nope", b'{"Header": }', b"NaN", b'{"a": NaN}'])
def test_decode_rejects_non_json(codec: Codec, data: bytes) -> None:
    """Text that is not (strict) JSON raises DecodeError naming the problem."""
    assert "not JSON" in _bad(codec, data)


@pytest.mark.parametrize("data", [b"[]", b"3", b'"gw"', b"null"])
def test_decode_rejects_non_objects(codec: Codec, data: bytes) -> None:
    """JSON that is not an object raises DecodeError."""
    assert "expected a JSON object" in _bad(codec, data)


def test_decode_rejects_bad_envelope(codec: Codec) -> None:
    """Missing or wrong envelope parts raise DecodeError with the field path."""
    good = _envelope(_startup_dict())
    assert _bad(codec, {**good, "TypeName": "gx"}) == "TypeName: expected 'gw', got 'gx'"
    assert "TypeName: missing" in _bad(codec, {k: v for k, v in good.items() if k != "TypeName"})
    assert _bad(codec, {k: v for k, v in good.items() if k != "Header"}) == "Header: missing field"
    assert _bad(codec, {**good, "Header": []}) == "Header: expected a JSON object, got list"
    assert _bad(codec, {k: v for k, v in good.items() if k != "Payload"}) == "Payload: missing field"
    assert _bad(codec, {**good, "Payload": "x"}) == "Payload: expected a JSON object, got str"
    assert "Header.TypeName" in _bad(codec, _envelope(_startup_dict(), TypeName="gridworks.head"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"AckRequired": "true"}, "Header.AckRequired: expected bool, got str"),
        ({"AckRequired": 1}, "Header.AckRequired: expected bool, got int"),
        ({"Src": None}, "Header.Src: expected str, got None"),
        ({"MessageId": 7}, "Header.MessageId: expected str, got int"),
        ({"Version": 1}, "Header.Version: expected str, got int"),
    ],
)
def test_decode_rejects_bad_header_types(codec: Codec, header: dict, expected: str) -> None:
    """Header fields of the wrong JSON type raise DecodeError naming field and types."""
    assert _bad(codec, _envelope(_startup_dict(), **header)) == expected


@pytest.mark.parametrize("field", ["Src", "Dst", "MessageType", "MessageId", "AckRequired"])
def test_decode_rejects_missing_header_fields(codec: Codec, field: str) -> None:
    """A header without a required field raises DecodeError naming it."""
    obj = _envelope(_startup_dict())
    del obj["Header"][field]
    assert _bad(codec, obj) == f"Header.{field}: missing field"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"TimeCreatedMs": 1.5}, "Payload.TimeCreatedMs: expected int, got float"),
        ({"TimeCreatedMs": True}, "Payload.TimeCreatedMs: expected int, got bool"),
        ({"TimeCreatedMs": "1"}, "Payload.TimeCreatedMs: expected int, got str"),
        ({"MessageId": ["x"]}, "Payload.MessageId: expected str, got list"),
        ({"TypeName": 3}, "Payload.TypeName: expected str, got int"),
    ],
)
def test_decode_rejects_bad_payload_types(codec: Codec, payload: dict, expected: str) -> None:
    """Payload fields of the wrong JSON type raise DecodeError naming field and types."""
    obj = _envelope(_startup_dict())
    obj["Payload"].update(payload)
    assert _bad(codec, obj) == expected


def test_decode_rejects_missing_payload_fields(codec: Codec) -> None:
    """A payload without a required field (or TypeName) raises DecodeError naming it."""
    for field in ("MessageId", "TimeCreatedMs", "Src", "TypeName"):
        obj = _envelope(_startup_dict())
        del obj["Payload"][field]
        assert _bad(codec, obj) == f"Payload.{field}: missing field"
    ack = _envelope({"TypeName": "gridworks.ack"})
    assert _bad(codec, ack) == "Payload.AckMessageID: missing field"


def test_decode_rejects_literal_values(codec: Codec) -> None:
    """A ProblemType other than error/warning raises DecodeError."""
    payload = _startup_dict(TypeName="gridworks.event.problem", ProblemType="fatal", Summary="s", Details="")
    assert _bad(codec, _envelope(payload)) == "Payload.ProblemType: expected 'error' | 'warning', got 'fatal'"


def test_decode_rejects_unknown_type_name(codec: Codec) -> None:
    """An unregistered TypeName that is not gridworks.event.* raises UnknownTypeError."""
    obj = _envelope({"TypeName": "app.reading", "Channel": "x", "Value": 1})
    with pytest.raises(UnknownTypeError, match=r"app\.reading"):
        codec.decode(json.dumps(obj))


def test_decode_rejects_type_mismatch(codec: Codec) -> None:
    """Header.MessageType different from Payload.TypeName raises DecodeError."""
    obj = _envelope(_startup_dict(), MessageType="gridworks.event.shutdown")
    assert "Header.MessageType: 'gridworks.event.shutdown' does not match" in _bad(codec, obj)


def test_decode_app_field_types(codec: Codec) -> None:
    """Annotated application fields are checked: float accepts int, Optional accepts null, list must be list."""
    app = _app_codec(codec.backend)
    base = {"Channel": "c", "Value": 2, "Unit": None, "Samples": [], "TypeName": "app.reading"}
    assert app.decode_payload(json.dumps(base)).value == 2
    for field, value, expected in [
        ("Value", "2", "expected float, got str"),
        ("Value", False, "expected float, got bool"),
        ("Unit", 3, "expected str | None, got int"),
        ("Samples", {}, "expected list, got dict"),
        ("Kind", "max", "expected 'raw' | 'avg', got 'max'"),
    ]:
        with pytest.raises(DecodeError, match=f"Payload.{field}: {expected}"):
            app.decode_payload(json.dumps({**base, field: value}))


def test_encode_errors(codec: Codec) -> None:
    """Unencodable messages raise EncodeError."""
    event = StartupEvent(src=SRC)
    wrong = Message(Header(SRC, "a", "gridworks.ping", event.message_id, True), event)
    with pytest.raises(EncodeError, match="does not match"):
        codec.encode(wrong)
    odd = StartupEvent(src=SRC, extra={"Bad": object()})
    with pytest.raises(EncodeError):
        codec.encode(make_message(SRC, "a", odd))
    with pytest.raises(EncodeError):
        codec.encode_payload(object())
    with pytest.raises(EncodeError):
        codec.encode(make_message(SRC, "a", StartupEvent(src="\ud800")))  # lone surrogate: not UTF-8


def test_unregistered_classes_encode_but_do_not_decode(codec: Codec) -> None:
    """Any wire class encodes; decoding it needs its class in the codec's registry."""
    data = codec.encode(make_message(SRC, "a", Reading("x", 1.0)))
    with pytest.raises(UnknownTypeError, match=r"app\.reading"):
        codec.decode(data)
    assert _app_codec(codec.backend).decode(data).payload == Reading("x", 1.0)


# --- topics -----------------------------------------------------------------------


def test_topic_helpers() -> None:
    """Topics dash every dot; subscription filters cover a peer's messages to us."""
    assert dashed("a.b.c") == "a-b-c"
    assert topic_for(SRC, "a", "gridworks.event.comm.peer.active") == (
        "gw/d1-isone-ct-newhaven-orange1-scada/to/a/gridworks-event-comm-peer-active"
    )
    assert subscription_filter(PARENT, "s") == "gw/d1-isone-ct-newhaven-orange1/to/s/#"
    assert parse_topic("gw/x-y/to/s/gridworks-ack") == ("x-y", "s", "gridworks-ack")


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "gw",
        "gw/a/to/b",
        "gw/a/to/b/c/d",
        "gx/a/to/b/c",
        "gw/a/from/b/c",
        "gw//to/b/c",
        "gw/a/to//c",
        "gw/a/to/b/",
        "gw/a.b/to/c/d",
        "gw/a/to/+/d",
        "gw/a/to/b/#",
    ],
)
def test_parse_topic_rejects_malformed(topic: str) -> None:
    """Malformed topics raise TopicError (a DecodeError)."""
    with pytest.raises(TopicError):
        parse_topic(topic)
    assert issubclass(TopicError, DecodeError)


# --- properties -------------------------------------------------------------------

_text = st.text(max_size=20)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_extra_keys = st.text(min_size=1, max_size=8).map(lambda s: "X" + s)
_extras = st.dictionaries(_extra_keys, _json, max_size=3)
_common = {
    "message_id": _text,
    "time_created_ms": st.integers(0, 2**53),
    "src": _text,
    "extra": _extras,
}
_events = st.one_of(
    st.builds(StartupEvent, **_common),
    st.builds(ShutdownEvent, reason=_text, version=_text, **_common),
    st.builds(ProblemEvent, st.sampled_from(["error", "warning"]), _text, details=_text, **_common),
    *[st.builds(cls, _text, **_common) for cls in COMM_EVENT_TYPES.values()],
    st.builds(
        DBGEvent,
        command=st.dictionaries(_text, _json, max_size=3),
        path=_text,
        count=st.integers(-(2**31), 2**31),
        msg=_text,
        **_common,
    ),
    st.builds(
        GenericEvent,
        type_name=st.text(min_size=1, max_size=10).map(lambda s: "gridworks.event.x" + s),
        **_common,
    ),
)


@settings(max_examples=300, deadline=None)
@given(event=_events, src=_text, dst=_text)
def test_random_events_round_trip(event: Event, src: str, dst: str) -> None:
    """Random events (with unknown fields) survive encode/decode with both backends, which agree on the JSON."""
    message = make_message(src, dst, event)
    stdlib, fast = Codec(backend="json"), Codec(backend="orjson")
    data = stdlib.encode(message)
    # Same JSON; bytes may differ only in float spelling (orjson writes 1e-7 where json writes 1e-07).
    assert json.loads(fast.encode(message)) == json.loads(data)
    assert stdlib.decode(data) == message
    assert fast.decode(data) == message
    assert stdlib.encode(fast.decode(data)) == data


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64) | _json.map(lambda v: json.dumps(v).encode()))
def test_garbage_raises_only_decode_error(data: bytes) -> None:
    """Arbitrary input decodes or raises DecodeError, nothing else."""
    for codec in (Codec(backend="json"), Codec(backend="orjson")):
        try:
            assert isinstance(codec.decode(data), Message)
        except DecodeError:
            pass


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(["MessageId", "TimeCreatedMs", "Src", "TypeName", "PeerName", "Version"]), value=_json)
def test_mutated_fields_decode_or_raise_decode_error(field: str, value: Any) -> None:
    """Replacing a frame field with any JSON value either decodes or raises DecodeError."""
    payload = _startup_dict(TypeName="gridworks.event.comm.peer.active", PeerName="parent", Version="001")
    payload[field] = value
    obj = _envelope(payload)
    obj["Header"]["MessageType"] = "gridworks.event.comm.peer.active"
    for codec in (Codec(backend="json"), Codec(backend="orjson")):
        try:
            message = codec.decode(json.dumps(obj))
        except DecodeError:
            continue
        assert json.loads(codec.encode(message)) == obj


def test_stdlib_fallback_without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without orjson the codec falls back to stdlib json and produces the same bytes for the frames' content."""
    from gwproactor.messages import json_backend

    monkeypatch.setitem(sys.modules, "orjson", None)
    assert json_backend("auto")[0] == "json"
    with pytest.raises(ImportError):
        json_backend("orjson")
    codec = Codec()
    assert codec.backend == "json"
    message = make_message(SRC, "a", PeerActiveEvent("parent", src=SRC, message_id="m", time_created_ms=3))
    assert codec.decode(codec.encode(message)) == message
