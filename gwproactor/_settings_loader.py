"""Loading attrs classes from ``<PREFIX>_...`` environment variables and ``.env`` files.

The naming scheme and conversions are described in :mod:`gwproactor.config`, which re-exports
:func:`parse_dotenv` and builds :func:`gwproactor.config.load_settings` on :func:`load_attrs`.  This module knows
nothing of the settings classes: it reads their fields' types and the metadata keys of
:mod:`gwproactor._settings_fields`.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Union

import attrs

from gwproactor._settings_fields import BYTES as _BYTES
from gwproactor._settings_fields import FILE as _FILE
from gwproactor._settings_fields import LOWER as _LOWER
from gwproactor._settings_fields import SECRET as _SECRET
from gwproactor.errors import InvalidSettings

__all__ = ["load_attrs", "parse_dotenv"]


# --- .env files ----------------------------------------------------------------------

_DOTENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _dotenv_value(rest: str) -> str:
    if rest[:1] in ("'", '"'):
        quote, out, i = rest[0], [], 1
        while i < len(rest):
            c = rest[i]
            if quote == '"' and c == "\\" and i + 1 < len(rest):
                out.append(_ESCAPES.get(rest[i + 1], "\\" + rest[i + 1]))
                i += 2
                continue
            if c == quote:
                tail = rest[i + 1 :].strip()
                if tail and not tail.startswith("#"):
                    raise ValueError(f"unexpected text after the closing quote: {tail!r}")
                return "".join(out)
            out.append(c)
            i += 1
        raise ValueError(f"unterminated {quote} quote (a value must fit on one line)")
    comment = re.search(r"\s#", rest)
    return (rest[: comment.start()] if comment else rest).strip()


def _parse_dotenv(text: str, source: str) -> tuple[list[tuple[str, str, int]], list[str]]:
    entries: list[tuple[str, str, int]] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if re.match(r"export\s", stripped):
            stripped = stripped[6:].lstrip()
        key, sep, rest = stripped.partition("=")
        key = key.strip()
        if not sep or not _DOTENV_KEY.match(key):
            problems.append(f"{source} line {lineno}: expected KEY=VALUE, got {line.strip()[:60]!r}")
            continue
        try:
            entries.append((key, _dotenv_value(rest.strip()), lineno))
        except ValueError as e:
            problems.append(f"{source} line {lineno}: {key}: {e}")
    return entries, problems


def parse_dotenv(text: str, source: str = "<string>") -> dict[str, str]:
    """Parse ``.env`` text: ``KEY=VALUE`` lines, ``#`` comments, an optional ``export`` prefix, single quotes
    (literal) or double quotes (``\\n \\t \\" \\\\`` escapes); an unquoted value ends at `` #``.

    :raises InvalidSettings: naming ``source`` and the line of every malformed line.
    """
    entries, problems = _parse_dotenv(text, source)
    if problems:
        raise InvalidSettings(problems)
    return {key: value for key, value, _ in entries}


# --- the loader ---------------------------------------------------------------------------


@attrs.frozen
class _Leaf:
    name: str  # the variable as written
    raw: str
    source: str | None  # "<file> line <n>" for .env values


@attrs.define(eq=False)
class _Node:
    leaf: _Leaf | None = None
    children: dict[str, _Node] = attrs.Factory(dict)

    def leaves(self) -> Iterator[_Leaf]:
        if self.leaf is not None:
            yield self.leaf
        for child in self.children.values():
            yield from child.leaves()


_FAILED: Any = object()
_OMIT: Any = object()
_OVERRIDE: Any = object()


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _default(field: attrs.Attribute) -> Any:
    default: Any = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return _OMIT if default.takes_self else default.factory()
    return default


def _convert_text(tp: Any, field: attrs.Attribute, raw: str) -> Any:
    """Convert one raw value by annotation; raise ValueError with what was expected."""
    text = raw.strip()
    if tp is bool:
        word = text.lower()
        if word in ("true", "1", "yes", "on"):
            return True
        if word in ("false", "0", "no", "off"):
            return False
        raise ValueError("expected a boolean (true/false, yes/no, on/off, 1/0)")
    if tp is int and field.metadata.get(_BYTES):
        m = re.fullmatch(r"(\d[\d_]*)\s*(?:([KMGT])(i?B)?)?", text, re.IGNORECASE)
        if not m:
            raise ValueError("expected a byte count such as 4096, 64KiB, 512MiB or 1GB")
        power = " KMGT".index(m.group(2).upper()) if m.group(2) else 0
        step = 1000 if m.group(3) and m.group(3).upper() == "B" else 1024
        return int(m.group(1)) * step**power
    if tp is int:
        try:
            return int(text, 10)
        except ValueError:
            raise ValueError("expected an integer") from None
    if tp is float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return value
    if tp is str:
        return raw.lower() if field.metadata.get(_LOWER) else raw
    if tp is Path:
        if not text:
            raise ValueError("expected a path")
        path = Path(text).expanduser()
        if field.metadata.get(_FILE) and not path.is_file():
            raise ValueError(f"no such file: {str(path)!r}")
        return path
    if typing.get_origin(tp) is Literal:
        for choice in typing.get_args(tp):
            if str(choice).lower() == text.lower():
                return choice
        raise ValueError("expected one of " + ", ".join(repr(c) for c in typing.get_args(tp)))
    raise TypeError(f"the settings loader cannot convert {tp!r} (field {field.name!r})")


@attrs.define(eq=False)
class _Loader:
    prefix: str
    strict: bool
    problems: list[str] = attrs.Factory(list)

    def var(self, path: tuple[str, ...]) -> str:
        return f"{self.prefix}_" + "__".join(p.upper() for p in path)

    def show(self, leaf: _Leaf, field: attrs.Attribute | None) -> str:
        shown = "'***'" if field is not None and field.metadata.get(_SECRET) else repr(leaf.raw)
        return f"{leaf.name}={shown}" + (f" ({leaf.source})" if leaf.source else "")

    def unknown(self, node: _Node, path: tuple[str, ...], why: str, known: typing.Iterable[str] = ()) -> None:
        if not self.strict:
            return
        close = difflib.get_close_matches(path[-1], list(known), n=1)
        hint = f"; did you mean {self.var(path[:-1] + (close[0],))}?" if close else ""
        for leaf in node.leaves():  # no value shown: a mistyped name may hold a secret
            source = f" ({leaf.source})" if leaf.source else ""
            self.problems.append(f"{leaf.name}{source}: {why}{hint}")

    def build(
        self, cls: type, node: _Node, path: tuple[str, ...], base: Any, overrides: Mapping[str, Any] | None = None
    ) -> Any:
        overrides = overrides or {}
        hints = _hints(cls)
        fields = {f.alias: f for f in attrs.fields(cls) if f.init}
        ok = True
        if node.leaf is not None:
            example = self.var(path + (next(iter(fields), "field"),))
            why = f"{cls.__name__} is set through its fields, e.g. {example}"
            self.problems.append(f"{self.show(node.leaf, None)}: {why}")
            ok = False
        for key, unknown in node.children.items():
            if key not in fields:
                self.unknown(unknown, path + (key,), f"no such setting in {cls.__name__}", fields)
        values: dict[str, Any] = {}
        for alias, field in fields.items():
            child = node.children.get(alias)
            base_value = getattr(base, field.name) if base is not None else _default(field)
            if child is not None:
                value = self.convert(hints[field.name], field, child, path + (alias,), base_value)
                if value is _FAILED:
                    ok = False
                    continue
            elif base_value is attrs.NOTHING and alias not in overrides:
                self.problems.append(f"{self.var(path + (alias,))}: required, not set")
                ok = False
                continue
            else:
                value = base_value
            if value is not _OMIT:
                values[alias] = value
        values.update(overrides)
        if ok:
            try:
                with attrs.validators.disabled():
                    target: Any = cls(**values)
            except (ValueError, TypeError) as e:
                self.problems.append(f"{self.var(path) if path else self.prefix}: {e}")
                return _FAILED
        else:
            # Still check what did convert, so one run reports every problem; validators that need a
            # field which failed (AttributeError) are skipped.
            target = types.SimpleNamespace(**{fields[a].name: v for a, v in values.items()})
        for alias, field in fields.items():
            if field.validator is None or not hasattr(target, field.name):
                continue
            try:
                field.validator(target, field, getattr(target, field.name))
            except AttributeError:
                continue
            except (ValueError, TypeError) as e:
                child = node.children.get(alias)
                if alias in overrides:
                    where = f"{self.var(path + (alias,))} (override)"
                elif child is not None and child.leaf is not None:
                    where = self.show(child.leaf, field)
                else:
                    where = self.var(path + (alias,))
                self.problems.append(f"{where}: {e}")
                ok = False
        return target if ok else _FAILED

    def convert(self, tp: Any, field: attrs.Attribute, node: _Node, path: tuple[str, ...], base: Any) -> Any:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (Union, types.UnionType) and type(None) in args:
            (inner,) = [a for a in args if a is not type(None)]
            if attrs.has(inner):
                if node.leaf is not None:
                    try:
                        enabled = _convert_text(bool, field, node.leaf.raw)
                    except ValueError as e:
                        fields_hint = f"or set its fields as {self.var(path)}__<FIELD>"
                        self.problems.append(f"{self.show(node.leaf, field)}: {e}, {fields_hint}")
                        return _FAILED
                    if not enabled:
                        if node.children:
                            for leaf in _Node(children=node.children).leaves():
                                self.problems.append(f"{self.show(leaf, None)}: conflicts with {node.leaf.name}=false")
                            return _FAILED
                        return None
                    node = _Node(children=node.children)
                return self.build(inner, node, path, base if isinstance(base, inner) else None)
            if node.leaf is not None and not node.children and node.leaf.raw.strip() == "":
                return None
            tp, origin, args = inner, typing.get_origin(inner), typing.get_args(inner)
        if attrs.has(tp):
            return self.build(tp, node, path, base if isinstance(base, tp) else None)
        if origin in (dict, Mapping):
            return self.convert_dict(args[1], field, node, path, base)
        if node.children:
            for key, child in node.children.items():
                self.unknown(child, path + (key,), f"{self.var(path)} is a single value, not a group")
            return _FAILED
        assert node.leaf is not None
        try:
            return _convert_text(tp, field, node.leaf.raw)
        except ValueError as e:
            self.problems.append(f"{self.show(node.leaf, field)}: {e}")
            return _FAILED

    def convert_dict(self, value_tp: Any, field: attrs.Attribute, node: _Node, path: tuple[str, ...], base: Any) -> Any:
        result = dict(base) if isinstance(base, Mapping) else {}
        ok = True
        if attrs.has(value_tp):
            if node.leaf is not None:
                example = self.var(path + ("<name>", "<field>"))
                self.problems.append(f"{self.show(node.leaf, field)}: set entries as {example}")
                ok = False
            for key, child in node.children.items():
                entry = self.build(value_tp, child, path + (key,), result.get(key))
                if entry is _FAILED:
                    ok = False
                else:
                    result[key] = entry
            return result if ok else _FAILED
        if node.leaf is not None:
            result = {}
            for item in filter(None, (part.strip() for part in node.leaf.raw.split(","))):
                key, sep, text = item.partition("=")
                try:
                    if not sep or not key.strip():
                        raise ValueError("expected key=value pairs separated by ','")
                    result[key.strip().lower()] = _convert_text(value_tp, field, text)
                except ValueError as e:
                    self.problems.append(f"{self.show(node.leaf, field)}: entry {item!r}: {e}")
                    ok = False
        for key, child in node.children.items():
            value = self.convert(value_tp, field, child, path + (key,), None)
            if value is _FAILED:
                ok = False
            else:
                result[key] = value
        return result if ok else _FAILED


def load_attrs(
    cls: type,
    *,
    prefix: str,
    env: Mapping[str, str] | None = None,
    dotenv: Path | str | None = None,
    strict: bool = True,
    **overrides: Any,
) -> Any:
    """Load ``cls`` (an attrs class) from ``<PREFIX>_...`` variables; :func:`gwproactor.config.load_settings`
    documents the parameters (it calls this, then fills unset directories).

    :raises InvalidSettings: listing every problem, each naming its variable.
    """
    normalized = prefix.strip().upper().rstrip("_")
    if not re.match(r"[A-Z][A-Z0-9_]*\Z", normalized):
        raise ValueError(f"prefix {prefix!r} must be letters, digits and '_', starting with a letter")
    init_names = {f.alias for f in attrs.fields(cls) if f.init}
    unknown_overrides = sorted(set(overrides) - init_names)
    if unknown_overrides:
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown_overrides)}")
    environ = os.environ if env is None else env
    loader = _Loader(prefix=normalized, strict=strict)
    leaves: dict[str, _Leaf] = {}
    if dotenv is not None:
        path = Path(dotenv)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            loader.problems.append(f"dotenv file not found: {str(path)!r}")
        except (OSError, UnicodeDecodeError) as e:
            loader.problems.append(f"dotenv file {str(path)!r} cannot be read: {e}")
        else:
            entries, problems = _parse_dotenv(text, str(path))
            loader.problems.extend(problems)
            for key, value, lineno in entries:
                leaves[key] = _Leaf(key, value, f"{path} line {lineno}")
    for key, value in environ.items():
        leaves[key] = _Leaf(key, value, None)
    root = _Node()
    start = normalized + "_"
    for key, leaf in leaves.items():
        if not key.startswith(start):
            continue
        segments = key[len(start) :].split("__")
        if not all(segments):
            if strict:
                loader.problems.append(f"{key}: malformed name (an empty part between '__')")
            continue
        node = root
        for segment in segments:
            node = node.children.setdefault(segment.lower(), _Node())
        node.leaf = leaf
    instance = loader.build(cls, root, (), None, overrides)
    if loader.problems:
        raise InvalidSettings(loader.problems)
    return instance
