"""Field tables for wire classes and the payload registry.

A *wire class* is an attrs class with a ``TYPE_NAME`` class variable whose
fields map to JSON names.  Its field table is computed once (at registration)
so the codec never introspects attrs on the hot path.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any, Callable, Iterator, Literal, Mapping, Optional, Union

import attrs

from gwproactor.errors import DecodeError, DuplicateTypeNameError, RegistryError, UnknownTypeError

#: attrs metadata key: the field's JSON name (default: snake_case → CamelCase).
JSON_NAME = "gw.json_name"
#: attrs metadata key: whether the field must be present on the wire (see :func:`wire_field`).
WIRE_REQUIRED = "gw.wire_required"

#: Prefix of the event TypeNames that decode as :class:`GenericEvent` when unknown.
EVENT_PREFIX = "gridworks.event."


def wire_field(json_name: str | None = None, *, required: bool | None = None, **kwargs: Any) -> Any:
    """Declare an attrs field with wire options.

    :param json_name: the JSON key (default: the field name in CamelCase).
    :param required: whether decoding requires the key.  By default a field is
        required unless it has a constant default; fields with no default or a
        factory default (ids, timestamps) must be on the wire.
    :param kwargs: passed to :func:`attrs.field`.
    """
    metadata = dict(kwargs.pop("metadata", None) or {})
    if json_name is not None:
        metadata[JSON_NAME] = json_name
    if required is not None:
        metadata[WIRE_REQUIRED] = required
    return attrs.field(metadata=metadata, **kwargs)


def camel(name: str) -> str:
    """``time_created_ms`` → ``TimeCreatedMs``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


_TYPE_LABELS = {str: "str", int: "int", float: "float", bool: "bool", dict: "dict", list: "list", type(None): "None"}


def type_label(value: object) -> str:
    """Short name of a JSON value's type, for error messages."""
    return _TYPE_LABELS.get(type(value), type(value).__name__)


_ANY = (None, None, "any")
_MISSING = object()
_TYPING_NS = {name: getattr(typing, name) for name in ("Any", "Optional", "Union", "Literal", "Mapping", "Sequence")}
_TYPING_NS.update({"Dict": dict, "List": list})


def _allowed(tp: Any) -> tuple[frozenset | None, frozenset | None, str]:
    """Map an annotation to ``(allowed exact types, allowed values, label)``; ``None`` = anything."""
    if isinstance(tp, str):
        try:
            tp = eval(tp, dict(_TYPING_NS), {})  # noqa: S307 - annotation text of a registered class
        except Exception:
            return _ANY
    if tp is Any or tp is object:
        return _ANY
    if tp is None or tp is type(None):
        return frozenset({type(None)}), None, "None"
    if tp is float:
        return frozenset({float, int}), None, "float"
    if tp in (str, int, bool, dict, list):
        return frozenset({tp}), None, _TYPE_LABELS[tp]
    origin = typing.get_origin(tp)
    if origin is Literal:
        literals = frozenset(typing.get_args(tp))
        label = " | ".join(repr(v) for v in typing.get_args(tp))
        return frozenset(type(v) for v in literals), literals, label
    if origin is Union or origin is types.UnionType:
        kinds: set = set()
        values: set = set()
        labels = []
        any_values = False
        for arg in typing.get_args(tp):
            a_types, a_values, a_label = _allowed(arg)
            if a_types is None:
                return _ANY
            if a_values is None:
                any_values = True
            else:
                values.update(a_values)
            kinds.update(a_types)
            labels.append(a_label)
        if any_values and values:
            if kinds - {type(v) for v in values} != {type(None)}:
                return _ANY  # literals mixed with plain types other than None: accept anything
            values.add(None)  # Optional[Literal[...]]
        return frozenset(kinds), (frozenset(values) if values else None), " | ".join(labels)
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping) or tp in (
        collections.abc.Mapping,
        typing.Mapping,
    ):
        return frozenset({dict}), None, "dict"
    if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
        return frozenset({list}), None, "list"
    return _ANY  # nested objects stay plain JSON values


@attrs.define(frozen=True, eq=False)
class FieldSpec:
    """How one attrs field appears on the wire."""

    attr: str
    key: str
    types: Optional[frozenset]
    values: Optional[frozenset]
    required: bool
    label: str
    default: Any = None  # attrs default (constant or Factory) used when an optional field is missing


@attrs.define(frozen=True, eq=False)
class ClassSpec:
    """The precomputed wire table of one class (see :func:`spec_for`)."""

    cls: type
    type_name: Optional[str]  # None: the instance carries its own ``type_name`` (GenericEvent)
    #: the wire fields in JSON order (``TypeName`` goes after the first ``type_name_index``)
    fields: tuple[FieldSpec, ...]
    type_name_index: int
    has_extra: bool
    #: compiled ``to_dict(obj, type_name) -> dict``
    to_dict: Callable[[Any, str], dict] = attrs.field(repr=False)
    #: compiled ``from_dict(data, path, type_name) -> obj``; raises DecodeError
    from_dict: Callable[[dict, str, Optional[str]], Any] = attrs.field(repr=False)


_SPECS: dict[type, ClassSpec] = {}


def spec_for(cls: type) -> ClassSpec:
    """Return (and cache) the wire table of ``cls``; raise :class:`RegistryError` if it is no wire class."""
    try:
        return _SPECS[cls]
    except KeyError:
        pass
    if not attrs.has(cls):
        raise RegistryError(f"{cls!r} is not an attrs class; payloads must be attrs classes")
    type_name = getattr(cls, "TYPE_NAME", None)
    if not isinstance(type_name, str) or not type_name:
        raise RegistryError(f"{cls.__qualname__} has no TYPE_NAME; declare TYPE_NAME: ClassVar[str] = '...'")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = {}
    generic = bool(getattr(cls, "GENERIC_TYPE_NAME", False))
    skip = {"extra", "type_name"} if generic else {"extra"}
    fields: list[FieldSpec] = []
    for a in attrs.fields(cls):
        if a.name in skip or not a.init:
            continue
        kinds, values, label = _allowed(hints.get(a.name, a.type))
        required = a.metadata.get(WIRE_REQUIRED)
        if required is None:
            required = a.default is attrs.NOTHING or isinstance(a.default, attrs.Factory)  # type: ignore[arg-type]
        key = a.metadata.get(JSON_NAME) or camel(a.name)
        fields.append(FieldSpec(a.name, key, kinds, values, bool(required), label, a.default))
    keys = [f.key for f in fields] + ["TypeName"]
    if len(set(keys)) != len(keys):
        clash = sorted({k for k in keys if keys.count(k) > 1})
        raise RegistryError(f"{cls.__qualname__}: several fields use the JSON name(s) {clash}")
    after_attr = getattr(cls, "TYPE_NAME_AFTER", None)
    split = len(fields)
    if after_attr is not None:
        names = [f.attr for f in fields]
        if after_attr not in names:
            raise RegistryError(f"{cls.__qualname__}.TYPE_NAME_AFTER names no field: {after_attr!r}")
        split = names.index(after_attr) + 1
    has_extra = "extra" in attrs.fields_dict(cls)
    spec = ClassSpec(
        cls=cls,
        type_name=None if generic else type_name,
        fields=tuple(fields),
        type_name_index=split,
        has_extra=has_extra,
        to_dict=_compile_to_dict(cls, fields[:split], fields[split:], has_extra, None if generic else type_name),
        from_dict=_compile_from_dict(cls, fields, has_extra, "type_name" if generic else None),
    )
    _SPECS[cls] = spec
    return spec


# --- compiled converters -------------------------------------------------------
#
# The per-class converters are generated once, as attrs generates ``__init__``:
# straight-line code with no loop over fields and no attrs introspection per call.


def shorten(value: object, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters (and saying how long it was): for error messages about input."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def _missing_field(path: str, key: str) -> DecodeError:
    return DecodeError(f"{path}.{key}: missing field")


def _wrong_type(path: str, key: str, label: str, value: object) -> DecodeError:
    return DecodeError(f"{path}.{key}: expected {label}, got {type_label(value)}")


def _wrong_value(path: str, key: str, label: str, value: object) -> DecodeError:
    return DecodeError(f"{path}.{key}: expected {label}, got {shorten(value)}")


def _compile(name: str, source: str, namespace: dict[str, Any], cls: type) -> Callable:
    filename = f"<gwproactor wire {name} {cls.__module__}.{cls.__qualname__}>"
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - generated from field tables only
    return namespace[name]


def _compile_to_dict(
    cls: type, before: list[FieldSpec], after: list[FieldSpec], has_extra: bool, type_name: Optional[str]
) -> Callable[[Any, str], dict]:
    items = [f"{f.key!r}: obj.{f.attr}" for f in before]
    items.append("'TypeName': type_name" if type_name is None else f"'TypeName': {type_name!r}")
    items += [f"{f.key!r}: obj.{f.attr}" for f in after]
    lines = ["def to_dict(obj, type_name):", f"    out = {{{', '.join(items)}}}"]
    if has_extra:
        lines += [
            "    extra = obj.extra",
            "    if extra:",
            "        for key, value in extra.items():",
            "            if key not in out:",
            "                out[key] = value",
        ]
    lines.append("    return out")
    return _compile("to_dict", "\n".join(lines) + "\n", {}, cls)


def _compile_from_dict(
    cls: type, fields: list[FieldSpec], has_extra: bool, generic_attr: Optional[str]
) -> Callable[[dict, str, Optional[str]], Any]:
    ns: dict[str, Any] = {
        "cls": cls,
        "MISSING": _MISSING,
        "DecodeError": DecodeError,
        "missing_field": _missing_field,
        "wrong_type": _wrong_type,
        "wrong_value": _wrong_value,
    }
    n_required = sum(1 for f in fields if f.required)
    lines = ["def from_dict(data, path, type_name):", "    get = data.get", f"    found = {1 + n_required}"]
    kwargs = []
    for i, f in enumerate(fields):
        v = f"v{i}"
        ns[f"K{i}"], ns[f"V{i}"], ns[f"L{i}"], ns[f"D{i}"] = f.types, f.values, f.label, f.default
        lines.append(f"    {v} = get({f.key!r}, MISSING)")
        lines.append(f"    if {v} is MISSING:")
        if f.required:
            lines.append(f"        raise missing_field(path, {f.key!r})")
        elif isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
            lines.append(f"        {v} = D{i}.factory()")
        else:
            lines.append(f"        {v} = D{i}")
        checks = []
        if f.types is not None:
            if len(f.types) == 1:
                (only,) = f.types
                ns[f"T{i}"] = only
                checks.append((f"type({v}) is not T{i}", f"raise wrong_type(path, {f.key!r}, L{i}, {v})"))
            else:
                checks.append((f"type({v}) not in K{i}", f"raise wrong_type(path, {f.key!r}, L{i}, {v})"))
        if f.values is not None:
            checks.append((f"{v} not in V{i}", f"raise wrong_value(path, {f.key!r}, L{i}, {v})"))
        lines.append("    else:")
        lines.append("        found += 1" if not f.required else "        pass")
        for cond, action in checks:
            lines.append(f"        if {cond}:")
            lines.append(f"            {action}")
        kwargs.append(f"{f.attr}={v}")
    if generic_attr is not None:
        kwargs.append(f"{generic_attr}=type_name")
    call = f"cls({', '.join(kwargs)}{{extra}})"
    if has_extra:
        ns["KEYS"] = frozenset([f.key for f in fields] + ["TypeName"])
        lines += [
            "    if found != len(data):",
            "        extra = {k: v for k, v in data.items() if k not in KEYS}",
            "    else:",
            "        extra = {}",
        ]
        call = call.format(extra=(", " if kwargs else "") + "extra=extra")
    else:
        call = call.format(extra="")
    lines += [
        "    try:",
        f"        return {call}",
        "    except (TypeError, ValueError) as e:",
        "        raise DecodeError(f'{path}: {e}') from e",
    ]
    return _compile("from_dict", "\n".join(lines) + "\n", ns, cls)


class PayloadRegistry:
    """Maps payload ``TypeName`` strings to attrs classes.

    :meth:`register` works as a class decorator.  Unknown ``gridworks.event.*``
    TypeNames look up as the generic event class (if one is registered via
    ``generic_event``).
    """

    def __init__(self, generic_event: type | None = None) -> None:
        self._classes: dict[str, type] = {}
        self._specs: dict[str, ClassSpec] = {}
        self.generic_event = generic_event
        self._generic_spec = spec_for(generic_event) if generic_event is not None else None

    def register(self, cls: type) -> type:
        """Register ``cls`` under its ``TYPE_NAME`` and return it.

        Registering the same class again is a no-op; another class with the same
        TypeName raises :class:`DuplicateTypeNameError`.
        """
        spec = spec_for(cls)
        type_name = cls.TYPE_NAME  # type: ignore[attr-defined]
        if "TYPE_NAME" not in vars(cls):
            raise RegistryError(
                f"{cls.__qualname__} inherits TYPE_NAME {type_name!r}; declare its own TYPE_NAME: ClassVar[str]"
            )
        if type_name in ("gw", "gridworks.header"):
            raise RegistryError(f"{cls.__qualname__}: TypeName {type_name!r} is reserved for the envelope")
        known = self._classes.get(type_name)
        if known is not None and known is not cls:
            raise DuplicateTypeNameError(
                f"TypeName {type_name!r} is already registered to {known.__module__}.{known.__qualname__};"
                f" cannot register {cls.__module__}.{cls.__qualname__}"
            )
        self._classes[type_name] = cls
        self._specs[type_name] = spec
        return cls

    def get(self, type_name: str) -> type | None:
        """The class registered under exactly ``type_name``, or None."""
        return self._classes.get(type_name)

    def lookup(self, type_name: str) -> type:
        """The class for ``type_name`` (generic event for unknown ``gridworks.event.*``).

        :raises UnknownTypeError: for any other unknown TypeName.
        """
        return self.spec(type_name).cls

    def spec(self, type_name: str) -> ClassSpec:
        """The field table used to decode ``type_name`` (see :meth:`lookup`)."""
        spec = self._specs.get(type_name)
        if spec is not None:
            return spec
        if self._generic_spec is not None and type_name.startswith(EVENT_PREFIX):
            return self._generic_spec
        raise UnknownTypeError(
            f"Payload.TypeName: unknown type {shorten(type_name)}; register its class with the codec's PayloadRegistry"
        )

    def copy(self) -> PayloadRegistry:
        """A new registry with the same registrations (extend it without touching this one)."""
        new = PayloadRegistry(self.generic_event)
        new._classes = dict(self._classes)
        new._specs = dict(self._specs)
        return new

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def classes(self) -> Mapping[str, type]:
        """A read-only view of the registrations (TypeName → class)."""
        return types.MappingProxyType(self._classes)

