"""The package's layers point one way: the library never imports its test package, has no import circles, and
never imports its own package root from inside.

The imports are read from the source with :mod:`ast` (nothing is imported), so a violation anywhere in the
tree — also inside a function — fails here, whether or not a test happens to run that code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = "gwproactor"
TEST_PACKAGE = "gwproactor_test"


@attrs.define(frozen=True)
class Import:
    """One imported module name, where it is imported, and whether at module level."""

    module: str
    line: int
    module_level: bool


def module_name(path: Path, root: Path = ROOT) -> str:
    """``gwproactor/links/link.py`` → ``gwproactor.links.link``; a package's ``__init__.py`` → the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def library_modules(root: Path = ROOT, package: str = LIBRARY) -> dict[str, Path]:
    """Every module of ``package`` under ``root``, by dotted name."""
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imports_of(source: str, module: str, is_package: bool = False) -> Iterator[Import]:
    """Every name ``source`` imports, fully qualified (``from a import b`` yields ``a.b``), with its line.

    ``a.b`` may be a module or a name defined in ``a``; :func:`import_graph` resolves it to the longest
    module prefix.  Imports inside a function or class body, or under ``if TYPE_CHECKING:``, are marked as
    not module-level: they do not run at import time, so they cannot make an import circle.
    """
    tree = ast.parse(source)

    def walk(node: ast.AST, module_level: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            nested = module_level and not isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
            ) and not _is_type_checking(child)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(alias.name, child.lineno, module_level)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(module, child, is_package)
                for alias in child.names:
                    name = base if alias.name == "*" else f"{base}.{alias.name}"
                    yield Import(name, child.lineno, module_level)
            yield from walk(child, nested)

    yield from walk(tree, True)


def _is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations_test_package(modules: dict[str, Path]) -> list[str]:
    """``module:line imports gwproactor_test...`` for every import of the test package from the library."""
    found = []
    for name, path in modules.items():
        for imp in imports_of(path.read_text(), name, path.name == "__init__.py"):
            if _is_within(imp.module, TEST_PACKAGE):
                found.append(f"{name}:{imp.line} imports {imp.module}")
    return sorted(set(found))


def violations_package_root(modules: dict[str, Path]) -> list[str]:
    """Every ``import gwproactor`` / ``from gwproactor import x`` inside the library, where ``x`` is not a
    submodule (the root's own ``from gwproactor.x import y`` lines are fine: they name a submodule)."""
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                if any(alias.name == LIBRARY for alias in node.names):
                    found.append(f"{name}:{node.lineno} imports the package root")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == LIBRARY:
                if name == LIBRARY and all(f"{LIBRARY}.{a.name}" in modules for a in node.names):
                    continue  # the root importing its own submodules
                found.append(f"{name}:{node.lineno} imports from the package root")
            elif isinstance(node, ast.ImportFrom) and node.level and _absolute(
                name, node, path.name == "__init__.py"
            ) == LIBRARY and name != LIBRARY:
                found.append(f"{name}:{node.lineno} imports from the package root (relative)")
    return sorted(found)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module-level imports between library modules: an edge to the longest module prefix of each imported name.

    The implicit "importing ``a.b`` runs ``a/__init__`` first" is not an edge (Python runs a parent package's
    ``__init__`` before its submodules, and a partly initialised parent is fine); ``from a import name`` where
    ``name`` is defined in ``a/__init__`` is.
    """
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imp in imports_of(path.read_text(), name, path.name == "__init__.py"):
            if not imp.module_level or not _is_within(imp.module, LIBRARY):
                continue
            target = imp.module
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted: the import circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def strong(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(cycles)


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    found = library_modules()
    assert "gwproactor.proactor" in found and "gwproactor.cli" in found
    return found


def test_library_never_imports_the_test_package(modules: dict[str, Path]) -> None:
    """No module of ``gwproactor`` imports ``gwproactor_test``, not even inside a function."""
    assert violations_test_package(modules) == []


def test_library_never_imports_its_package_root(modules: dict[str, Path]) -> None:
    """Inside ``gwproactor`` nothing imports ``gwproactor`` itself (only the root imports its submodules)."""
    assert violations_package_root(modules) == []


def test_library_has_no_import_circles(modules: dict[str, Path]) -> None:
    """The module-level imports among ``gwproactor`` modules form no circle."""
    assert import_cycles(import_graph(modules)) == []


def test_the_twisted_plugin_dropin_imports_only_the_library() -> None:
    """``dropin/twisted/plugins/gwproactor_plugin.py`` imports the library, never the test package."""
    dropin = ROOT / "dropin" / "twisted" / "plugins" / "gwproactor_plugin.py"
    found = [imp.module for imp in imports_of(dropin.read_text(), "twisted.plugins.gwproactor_plugin")]
    assert found and not [m for m in found if _is_within(m, TEST_PACKAGE)]


# The checker itself is checked on small sources, so an empty result above means "no violation", not
# "the walk found nothing".


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return library_modules(tmp_path)


def test_checker_finds_a_function_level_import_of_the_test_package(tmp_path: Path) -> None:
    """An import of gwproactor_test inside a function body is a violation."""
    modules = _tree(tmp_path, {
        "gwproactor/__init__.py": "",
        "gwproactor/a.py": "def f():\n    from gwproactor_test.broker import PrivateBroker\n",
    })
    assert violations_test_package(modules) == ["gwproactor.a:2 imports gwproactor_test.broker.PrivateBroker"]


def test_checker_finds_an_import_circle(tmp_path: Path) -> None:
    """Two modules importing each other at module level are a circle; a function-level import is not."""
    modules = _tree(tmp_path, {
        "gwproactor/__init__.py": "",
        "gwproactor/a.py": "from gwproactor.b import x\n",
        "gwproactor/b.py": "from gwproactor import a\nx = 1\n",
        "gwproactor/c.py": "from gwproactor.d import y\n",
        "gwproactor/d.py": "def f():\n    import gwproactor.c\ny = 1\n",
    })
    assert import_cycles(import_graph(modules)) == [["gwproactor.a", "gwproactor.b"]]


def test_checker_finds_imports_of_the_package_root(tmp_path: Path) -> None:
    """``from gwproactor import __version__`` inside the library is a violation; the root's submodule imports
    are not."""
    modules = _tree(tmp_path, {
        "gwproactor/__init__.py": "from gwproactor import a\nfrom gwproactor.a import x\n",
        "gwproactor/a.py": "x = 1\ndef f():\n    from gwproactor import __version__\n",
        "gwproactor/b.py": "import gwproactor\nfrom . import a\n",
    })
    assert violations_package_root(modules) == [
        "gwproactor.a:3 imports from the package root",
        "gwproactor.b:1 imports the package root",
        "gwproactor.b:2 imports from the package root (relative)",
    ]
