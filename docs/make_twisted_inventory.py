"""Write Sphinx intersphinx inventories for Twisted and for part of the Python standard library, offline.

The docs build has no network, so ``conf.py`` points intersphinx at the files this script writes into
``docs/_inventories/``: ``twisted.inv`` from the installed Twisted (URIs in the pydoctor layout of
docs.twisted.org: one page per module or class, members as anchors on their parent's page) and ``python.inv``
from a short list of standard modules (URIs in the layout of docs.python.org). Re-run it after upgrading Twisted::

    python docs/make_twisted_inventory.py

The files use the Sphinx inventory format version 2 (four header lines, then zlib-compressed lines of
``name domain:role priority uri dispname``).
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import inspect
import pkgutil
import sys
import warnings
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "_inventories"

TWISTED_ROOTS = (
    "twisted.internet",
    "twisted.application",
    "twisted.logger",
    "twisted.web",
    "twisted.python.failure",
    "twisted.python.filepath",
    "twisted.trial",
    "twisted.plugin",
)
"""Packages and modules whose public API goes into ``twisted.inv`` (packages are walked recursively)."""

_TWISTED_SKIP = ("twisted.internet.reactor",)  # importing it installs the global reactor

PYTHON_MODULES = (
    "argparse",
    "collections.abc",
    "datetime",
    "enum",
    "ipaddress",
    "json",
    "os",
    "os.path",
    "pathlib",
    "time",
    "typing",
    "uuid",
    "zlib",
)
"""Standard modules whose public names go into ``python.inv`` (builtins are always included)."""

_BUILTIN_TYPES_ON_STDTYPES = {
    "str", "bytes", "bytearray", "memoryview", "list", "tuple", "dict", "set", "frozenset", "range",
}
_BUILTIN_CONSTANTS = ("None", "True", "False", "NotImplemented", "Ellipsis")

Entry = tuple[str, str, str]
"""(name, domain:role, uri relative to the documentation root)."""


def _public(name: str) -> bool:
    return not name.startswith("_")


def _is_exception(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseException)


def _is_interface(obj: object) -> bool:
    try:
        from zope.interface.interface import InterfaceClass
    except ImportError:  # pragma: no cover - Twisted depends on zope.interface
        return False
    return isinstance(obj, InterfaceClass)


def _module_names(module: object) -> list[str]:
    """Public names a module documents: ``__all__`` if present, else names defined in it."""
    declared = getattr(module, "__all__", None)
    if declared is not None:
        return [n for n in declared if isinstance(n, str) and _public(n) and hasattr(module, n)]
    names = []
    for name, obj in vars(module).items():
        if not _public(name) or inspect.ismodule(obj):
            continue
        if getattr(obj, "__module__", None) == module.__name__ or _is_interface(obj):
            if _is_interface(obj) and getattr(obj, "__module__", None) != module.__name__:
                continue
            names.append(name)
    return names


def _class_members(cls: object) -> Iterator[tuple[str, str]]:
    """(member name, role) for the public members a class or interface defines itself."""
    if _is_interface(cls):
        from zope.interface.interface import Method

        for name in cls.names(all=False):  # type: ignore[attr-defined]
            if _public(name):
                yield name, "method" if isinstance(cls[name], Method) else "attribute"  # type: ignore[index]
        return
    for name, obj in vars(cls).items():
        if not _public(name):
            continue
        if isinstance(obj, (staticmethod, classmethod)) or inspect.isfunction(obj):
            yield name, "method"
        elif isinstance(obj, property):
            yield name, "attribute"
        elif inspect.isclass(obj):
            continue  # nested classes are rare in the public API and have their own pages
        else:
            yield name, "attribute"


def _import(name: str) -> object | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - platform-specific modules (win32, gi, cf...) fail to import here
        return None


def _walk(root: str) -> Iterator[object]:
    module = _import(root)
    if module is None:
        return
    yield module
    path = getattr(module, "__path__", None)
    if path is None:
        return
    for info in pkgutil.walk_packages(path, prefix=root + ".", onerror=lambda _name: None):
        parts = info.name.split(".")
        if any(p.startswith("_") or p == "test" for p in parts) or info.name in _TWISTED_SKIP:
            continue
        sub = _import(info.name)
        if sub is not None:
            yield sub


def twisted_entries(roots: Iterable[str] = TWISTED_ROOTS) -> list[Entry]:
    """Entries for the public API of ``roots``, with pydoctor URIs under ``api/``."""
    entries: dict[tuple[str, str], str] = {}
    seen: set[str] = set()
    for root in roots:
        for module in _walk(root):
            modname = module.__name__  # type: ignore[attr-defined]
            if modname in seen:
                continue
            seen.add(modname)
            page = f"api/{modname}.html"
            entries[(modname, "py:module")] = page
            for name in _module_names(module):
                obj = getattr(module, name)
                fqn = f"{modname}.{name}"
                if inspect.isclass(obj) or _is_interface(obj):
                    role = "py:exception" if _is_exception(obj) else "py:class"
                    cls_page = f"api/{fqn}.html"
                    entries[(fqn, role)] = cls_page
                    for member, member_role in _class_members(obj):
                        entries[(f"{fqn}.{member}", f"py:{member_role}")] = f"{cls_page}#{member}"
                elif inspect.isfunction(obj) or inspect.isbuiltin(obj) or callable(obj):
                    entries[(fqn, "py:function")] = f"{page}#{name}"
                else:
                    entries[(fqn, "py:data")] = f"{page}#{name}"
    return sorted((name, role, uri) for (name, role), uri in entries.items())


def python_entries(modules: Iterable[str] = PYTHON_MODULES) -> list[Entry]:
    """Entries for builtins and ``modules``, with docs.python.org URIs under ``library/``."""
    entries: dict[tuple[str, str], str] = {}
    for name, obj in vars(builtins).items():
        if not _public(name):
            continue
        if _is_exception(obj):
            entries[(name, "py:exception")] = f"library/exceptions.html#{name}"
        elif inspect.isclass(obj):
            page = "stdtypes" if name in _BUILTIN_TYPES_ON_STDTYPES else "functions"
            entries[(name, "py:class")] = f"library/{page}.html#{name}"
        elif callable(obj):
            entries[(name, "py:function")] = f"library/functions.html#{name}"
    for name in _BUILTIN_CONSTANTS:
        entries[(name, "py:data")] = f"library/constants.html#{name}"
    for modname in modules:
        module = _import(modname)
        if module is None:
            continue
        page = f"library/{modname}.html"
        entries[(modname, "py:module")] = f"{page}#module-{modname}"
        for name in _module_names(module) or [n for n in getattr(module, "__all__", [])]:
            obj = getattr(module, name)
            fqn = f"{modname}.{name}"
            if inspect.isclass(obj):
                entries[(fqn, "py:exception" if _is_exception(obj) else "py:class")] = f"{page}#{fqn}"
                for member, role in _class_members(obj):
                    entries[(f"{fqn}.{member}", f"py:{role}")] = f"{page}#{fqn}.{member}"
            elif callable(obj):
                entries[(fqn, "py:function")] = f"{page}#{fqn}"
            else:
                entries[(fqn, "py:data")] = f"{page}#{fqn}"
    return sorted((name, role, uri) for (name, role), uri in entries.items())


def write_inventory(path: Path, project: str, version: str, entries: Iterable[Entry]) -> int:
    """Write ``entries`` as a Sphinx inventory (format version 2) to ``path``; return the entry count."""
    lines = []
    for name, role, uri in entries:
        if uri.endswith(name) and uri != name:
            uri = uri[: -len(name)] + "$"  # the format's shorthand for "the name again"
        priority = "0" if role == "py:module" else "1"
        lines.append(f"{name} {role} {priority} {uri} -")
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + zlib.compress(("\n".join(lines) + "\n").encode(), 9))
    return len(lines)


def main(argv: list[str] | None = None) -> int:
    """Write ``twisted.inv`` and ``python.inv`` into the output directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output directory (default {OUT_DIR})")
    args = parser.parse_args(argv)
    import twisted

    warnings.simplefilter("ignore", DeprecationWarning)  # touching deprecated names warns; they still belong
    n = write_inventory(args.out / "twisted.inv", "Twisted", twisted.__version__, twisted_entries())
    print(f"{args.out / 'twisted.inv'}: {n} entries (Twisted {twisted.__version__})")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    n = write_inventory(args.out / "python.inv", "Python", version, python_entries())
    print(f"{args.out / 'python.inv'}: {n} entries (Python {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
