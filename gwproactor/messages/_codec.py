"""JSON codec for gridworks envelopes: compact UTF-8 JSON, typed and validated decoding."""

from __future__ import annotations

import json
from typing import Any, Callable

import attrs
from zope.interface import implementer

from gwproactor.errors import DecodeError, EncodeError
from gwproactor.interfaces import ICodec
from gwproactor.messages._payloads import Header, Message, default_registry
from gwproactor.messages._schema import PayloadRegistry, shorten, spec_for, type_label

_HEADER_SPEC = spec_for(Header)
_HEADER_TYPE = Header.TYPE_NAME
_HEADER_FROM_DICT = _HEADER_SPEC.from_dict
_ENVELOPE_KEYS = frozenset(("Header", "Payload", "TypeName"))


def _envelope_error(obj: dict) -> DecodeError:
    """The error for an envelope that failed the fast checks of :meth:`Codec.message_from_dict`."""
    if "TypeName" not in obj:
        return DecodeError("TypeName: missing field (expected 'gw')")
    if obj["TypeName"] != "gw":
        return DecodeError(f"TypeName: expected 'gw', got {shorten(obj['TypeName'])}")
    for part in ("Header", "Payload"):
        if part not in obj:
            return DecodeError(f"{part}: missing field")
        if type(obj[part]) is not dict:
            return DecodeError(f"{part}: expected a JSON object, got {type_label(obj[part])}")
    header_type = obj["Header"].get("TypeName")
    if "TypeName" not in obj["Header"]:
        return DecodeError("Header.TypeName: missing field")
    return DecodeError(f"Header.TypeName: expected {_HEADER_TYPE!r}, got {shorten(header_type)}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _stdlib_backend() -> tuple[Callable[[Any], bytes], Callable[[Any], Any]]:
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    encode, decode = encoder.encode, decoder.decode

    def dumps(obj: Any) -> bytes:
        return encode(obj).encode("utf-8")

    def loads(data: Any) -> Any:
        if not isinstance(data, str):
            data = bytes(data).decode("utf-8")
        return decode(data)

    return dumps, loads


def _orjson_backend() -> tuple[Callable[[Any], bytes], Callable[[Any], Any]]:
    import orjson

    return orjson.dumps, orjson.loads


def json_backend(name: str = "auto") -> tuple[str, Callable[[Any], bytes], Callable[[Any], Any]]:
    """Return ``(name, dumps, loads)`` for ``"orjson"``, ``"json"`` or ``"auto"`` (orjson if importable)."""
    if name in ("auto", "orjson"):
        try:
            return ("orjson", *_orjson_backend())
        except ImportError:
            if name == "orjson":
                raise
    elif name != "json":
        raise ValueError(f"unknown JSON backend {name!r}; use 'auto', 'orjson' or 'json'")
    return ("json", *_stdlib_backend())


@implementer(ICodec)
@attrs.define(frozen=True, eq=False)
class Codec:
    """Encodes :class:`Message` objects as gridworks JSON and decodes them back.

    :param registry: payload classes by TypeName (default: :data:`default_registry`).
    :param backend: ``"auto"`` (orjson when importable), ``"orjson"`` or ``"json"``.
    """

    registry: PayloadRegistry = default_registry
    backend: str = "auto"
    _dumps: Callable[[Any], bytes] = attrs.field(init=False, repr=False)
    _loads: Callable[[Any], Any] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        name, dumps, loads = json_backend(self.backend)
        object.__setattr__(self, "backend", name)
        object.__setattr__(self, "_dumps", dumps)
        object.__setattr__(self, "_loads", loads)

    # --- dicts -------------------------------------------------------------

    def payload_to_dict(self, payload: Any) -> dict:
        """The JSON object (as a dict) of ``payload``."""
        try:
            spec = spec_for(type(payload))
        except Exception as e:
            raise EncodeError(f"cannot encode {type(payload).__qualname__}: {e}") from e
        name = spec.type_name
        return spec.to_dict(payload, payload.type_name if name is None else name)

    def payload_from_dict(self, data: Any, path: str = "Payload") -> Any:
        """The payload instance for a JSON object; raise :class:`~gwproactor.errors.DecodeError`."""
        if type(data) is not dict:
            raise DecodeError(f"{path}: expected a JSON object, got {type_label(data)}")
        type_name = data.get("TypeName")
        if type(type_name) is not str:
            if type_name is None and "TypeName" not in data:
                raise DecodeError(f"{path}.TypeName: missing field")
            raise DecodeError(f"{path}.TypeName: expected str, got {type_label(type_name)}")
        return self.registry.spec(type_name).from_dict(data, path, type_name)

    def message_to_dict(self, message: Message) -> dict:
        """The JSON object (as a dict) of ``message``."""
        header = message.header
        payload = self.payload_to_dict(message.payload)
        if header.message_type != payload["TypeName"]:
            raise EncodeError(
                f"Header.MessageType {header.message_type!r} does not match Payload.TypeName {payload['TypeName']!r}"
            )
        out = {"Header": _HEADER_SPEC.to_dict(header, _HEADER_TYPE), "Payload": payload, "TypeName": "gw"}
        if message.extra:
            for key, value in message.extra.items():
                if key not in out:
                    out[key] = value
        return out

    def message_from_dict(self, obj: Any) -> Message:
        """The :class:`Message` for a decoded JSON object; raise :class:`~gwproactor.errors.DecodeError`."""
        if type(obj) is not dict:
            raise DecodeError(f"expected a JSON object, got {type_label(obj)}")
        get = obj.get
        header_data = get("Header")
        payload_data = get("Payload")
        if (
            get("TypeName") != "gw"
            or type(header_data) is not dict
            or header_data.get("TypeName") != _HEADER_TYPE
            or type(payload_data) is not dict
        ):
            raise _envelope_error(obj)
        header = _HEADER_FROM_DICT(header_data, "Header", _HEADER_TYPE)
        payload_type = payload_data.get("TypeName")
        if payload_type != header.message_type:
            if type(payload_type) is not str:
                self.payload_from_dict(payload_data)  # raises the missing / wrong type error
            raise DecodeError(
                f"Header.MessageType: {shorten(header.message_type)} does not match Payload.TypeName "
                f"{shorten(payload_type)}"
            )
        payload = self.registry.spec(payload_type).from_dict(payload_data, "Payload", payload_type)
        if len(obj) != 3:
            return Message(header, payload, extra={k: v for k, v in obj.items() if k not in _ENVELOPE_KEYS})
        return Message(header, payload)

    # --- bytes -------------------------------------------------------------

    def _load(self, data: bytes | str) -> Any:
        try:
            return self._loads(data)
        except UnicodeDecodeError as e:
            raise DecodeError(f"not UTF-8: {e}") from e
        except (ValueError, TypeError) as e:  # orjson.JSONDecodeError and json.JSONDecodeError are ValueErrors
            if not isinstance(data, (str, bytes, bytearray, memoryview)):
                raise DecodeError(f"expected bytes or str, got {type(data).__name__}") from e
            if not isinstance(data, str):
                try:
                    bytes(data).decode("utf-8")
                except UnicodeDecodeError as utf8_error:
                    raise DecodeError(f"not UTF-8: {utf8_error}") from e
            raise DecodeError(f"not JSON: {e}") from e

    def _dump(self, obj: Any) -> bytes:
        try:
            return self._dumps(obj)
        except (TypeError, ValueError, UnicodeError) as e:  # orjson.JSONEncodeError is a TypeError
            raise EncodeError(f"cannot encode as JSON: {e}") from e

    def encode(self, message: Message) -> bytes:
        """The compact UTF-8 JSON of ``message``; raise :class:`~gwproactor.errors.EncodeError`."""
        return self._dump(self.message_to_dict(message))

    def decode(self, data: bytes | str) -> Message:
        """The :class:`Message` in ``data``; raise :class:`~gwproactor.errors.DecodeError`."""
        return self.message_from_dict(self._load(data))

    def encode_payload(self, payload: Any) -> bytes:
        """The compact UTF-8 JSON of a bare payload."""
        return self._dump(self.payload_to_dict(payload))

    def decode_payload(self, data: bytes | str) -> Any:
        """The payload in ``data`` (a bare payload object, no envelope)."""
        return self.payload_from_dict(self._load(data))
