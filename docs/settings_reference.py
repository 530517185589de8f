"""Write ``docs/settings.rst``, the settings reference, from the settings classes of :mod:`gwproactor.config`.

Every environment variable (``GWP_...``, the prefix of ``gwproactor run``), its type, default and description
comes from the code: the fields' annotations and defaults, and the ``#:`` comment above each field.  Run
``python docs/settings_reference.py`` after changing a setting; ``tests/test_config.py`` fails while the
committed page differs from what this script writes.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import attrs

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gwproactor import config  # noqa: E402
from gwproactor._settings_fields import BYTES, SECRET  # noqa: E402

PREFIX = "GWP"
OUTPUT = HERE / "settings.rst"

# (class, how a variable of one of its fields starts, the section title, a note on the names)
SECTIONS: list[tuple[type, str, str, str]] = [
    (config.ProactorSettings, "", "The proactor", ""),
    (config.BrokerSettings, "BROKERS__<NAME>__", "Brokers",
     "``<NAME>`` is the broker's entry name (``default`` unless set); a link names its broker with ``BROKER``."),
    (config.TLSSettings, "BROKERS__<NAME>__TLS__", "TLS of a broker",
     "``GWP_BROKERS__<NAME>__TLS=true`` turns TLS on with the system trust store; any variable below turns it "
     "on too."),
    (config.LinkSettings, "LINKS__<NAME>__", "Links",
     "``<NAME>`` is the link's name (the name the application uses, e.g. ``parent``)."),
    (config.StoreSettings, "STORE__", "The event store", ""),
    (config.LoggingSettings, "LOGGING__", "Logging", ""),
    (config.HTTPSettings, "HTTP__", "The HTTP server", ""),
]


def field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comment lines directly above each field of ``cls``, joined, by field name."""
    lines, _ = inspect.getsourcelines(cls)
    source = inspect.cleandoc("".join(lines)) if not lines[0].startswith(" ") else "".join(lines)
    tree = ast.parse(source)
    body = tree.body[0].body  # type: ignore[attr-defined]
    source_lines = source.splitlines()
    found: dict[str, str] = {}
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            comment: list[str] = []
            i = node.lineno - 2
            while i >= 0 and source_lines[i].strip().startswith("#:"):
                comment.insert(0, source_lines[i].strip()[2:].strip())
                i -= 1
            found[node.target.id] = " ".join(comment)
    return found


def type_text(tp: Any, field: attrs.Attribute) -> str:
    """How a value of annotation ``tp`` is written in a variable."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and attrs.has(args[0]):
            return "boolean (``true``/``false``), or the settings of its section"
        inner = type_text(args[0], field) if len(args) == 1 else " or ".join(type_text(a, field) for a in args)
        return f"{inner}, or empty for none"
    if origin is Literal:
        return "one of " + ", ".join(f"``{a}``" for a in typing.get_args(tp))
    if origin is dict:
        return "a table of entries (see below)" if attrs.has(typing.get_args(tp)[1]) else (
            f"``key=value,...`` (value: {type_text(typing.get_args(tp)[1], field)})")
    if attrs.has(tp):
        return "settings (see below)"
    if tp is int and field.metadata.get(BYTES):
        return "byte size (``65536``, ``64KiB``, ``512MiB``, ``1GB``)"
    names = {str: "text", int: "integer", float: "number", bool: "boolean (``true``/``false``)", Path: "path"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def default_text(field: attrs.Attribute) -> str:
    """The default of ``field`` as it reads in the reference."""
    if field.default is attrs.NOTHING:
        return "required"
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()  # type: ignore[union-attr]
    if default is None:
        return "none"
    if attrs.has(type(default)):
        return "the defaults below"
    if isinstance(default, dict):
        return ", ".join(f"``{k}``" for k in default) + " (defaults)" if default else "none"
    if field.metadata.get(BYTES) and isinstance(default, int):
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if default % size == 0:
                return f"``{default // size}{unit}``"
    if isinstance(default, bool):
        return f"``{str(default).lower()}``"
    return f"``{default}``"


def _nested(tp: Any) -> bool:
    """A field whose variables are listed in a section of their own (settings, or a table of settings)."""
    if attrs.has(tp):
        return True
    return typing.get_origin(tp) is dict and attrs.has(typing.get_args(tp)[1])


def _cell(text: str) -> str:
    return text if text else "\\ "


def section(cls: type, start: str, title: str, note: str) -> list[str]:
    """The reST of one settings class: a title, a note, and one row per variable."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    out = [title, "-" * len(title), ""]
    doc = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " ")
    out += [textwrap.fill(f"{doc}  (:class:`~gwproactor.config.{cls.__name__}`)", width=110), ""]
    if note:
        out += [textwrap.fill(note, width=110), ""]
    out += [".. list-table::", "   :header-rows: 1", "   :widths: 30 20 12 38", "",
            "   * - Variable", "     - Type", "     - Default", "     - Description"]
    for field in attrs.fields(cls):
        tp = hints[field.name]
        if not field.init or _nested(tp):
            continue  # its own section lists its variables
        name = f"{PREFIX}_{start}{field.alias.upper()}"
        description = comments.get(field.name, "")
        if field.metadata.get(SECRET):
            description = (description + " Secret: shown as ``***``.").strip()
        out += [f"   * - ``{name}``", f"     - {_cell(type_text(tp, field))}", f"     - {_cell(default_text(field))}",
                f"     - {_cell(description)}"]
        if typing.get_origin(tp) is dict and not attrs.has(typing.get_args(tp)[1]):
            out += [f"   * - ``{name}__<KEY>``", f"     - {_cell(type_text(typing.get_args(tp)[1], field))}",
                    "     - \\ ", "     - One entry of the table."]
    return out + [""]


def render() -> str:
    """The whole page."""
    missing = [(cls.__name__, name) for cls, *_ in SECTIONS for name, text in field_comments(cls).items()
               if not text]
    if missing:
        raise SystemExit(f"settings without a '#:' description: {missing}")
    intro = textwrap.fill(
        f"Every setting of a proactor, as the environment variable ``gwproactor run`` and ``twist gwproactor`` read "
        f"(prefix ``{PREFIX}``; ``--env-prefix`` changes it, and :func:`~gwproactor.config.load_settings` takes "
        "any prefix).  Names after the prefix are case-insensitive; nested settings are joined with ``__``.  The "
        "same names work in a ``.env`` file (``--dotenv``); the environment wins over the file.  Every variable "
        "that starts with the prefix must name a setting: a typo is an error, as is a value that does not "
        "convert, and ``gwproactor check`` lists them all.", width=110)
    out = [
        ".. This page is generated by docs/settings_reference.py from gwproactor/config.py: do not edit it;",
        "   run ``python docs/settings_reference.py`` after changing a setting (tests/test_config.py checks it).",
        "",
        "Settings reference",
        "==================",
        "",
        intro,
        "",
    ]
    for cls, start, title, note in SECTIONS:
        out += section(cls, start, title, note)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
