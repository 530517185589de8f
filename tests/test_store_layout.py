"""The shape of ``gwproactor/store/``: small modules composed by the file store, import paths users rely on."""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.internet.task import Clock

import gwproactor.store

STORE = Path(gwproactor.store.__file__).parent
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(STORE.glob("*.py"))


def test_no_store_module_over_the_size_limit():
    """Every module of gwproactor/store/ stays within about 600 lines."""
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()}
    assert sizes and all(n <= MAX_LINES for n in sizes.values()), sizes


def test_no_object_reads_another_objects_private_attributes():
    """Inside gwproactor/store/ an underscore attribute is only ever read on ``self`` or ``cls``."""
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def _defined_by(cls: ast.ClassDef) -> set[str]:
    """Names a class defines itself: methods, class-level and attrs fields, attributes it assigns on self."""
    names = set()
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in ast.walk(cls):
        if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            names.add(node.attr)
    return names


def test_no_class_uses_private_state_it_does_not_define():
    """No mixin: each class in gwproactor/store/ reads only the private attributes it defines itself."""
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            defined = _defined_by(cls)
            for node in ast.walk(cls):
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id in ("self", "cls") and node.attr.startswith("_")
                        and not node.attr.endswith("__") and node.attr not in defined):
                    found.append(f"{path.name}:{node.lineno}: {cls.name} uses {node.attr}")
    assert found == []


def test_import_paths_stay():
    """The names users import from gwproactor.store and gwproactor.store.file are still there."""
    from gwproactor.store import file

    for name in ("FileEventStore", "FsyncThread", "PackedIndex", "StoreLocked", "StoreWriteError",
                 "DEFAULT_SEGMENT_BYTES", "DEFAULT_GROUP_MS"):
        assert hasattr(file, name), name
    for name in gwproactor.store.__all__:
        assert hasattr(gwproactor.store, name), name
    assert gwproactor.store.FileEventStore is file.FileEventStore
    assert gwproactor.store.FsyncThread is file.FsyncThread


def test_constructing_a_file_store_touches_no_file(tmp_path):
    """``FileEventStore(...)`` only stores settings: no directory, lock or descriptor until ``open``."""
    directory = tmp_path / "not-yet"
    store = gwproactor.store.FileEventStore(directory=str(directory), clock=Clock())
    assert not directory.exists()
    assert store.stats()["pending"] == 0 and store.stats()["segments"] == 0
