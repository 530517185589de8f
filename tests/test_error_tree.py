"""The exception tree in gwproactor.errors: one base, and the documented tree matches the classes."""

from __future__ import annotations

import inspect
import re

import pytest

from gwproactor import errors
from gwproactor.errors import GwProactorError

_ENTRY = re.compile(r"^(?P<indent> *)(?P<name>[A-Za-z]+)(?: \(also (?P<also>[A-Za-z]+)\))?$")


def _classes() -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    }


def _documented() -> dict[str, tuple[str | None, str | None]]:
    """Name -> (parent, built-in second base) as the module docstring's tree says."""
    doc = errors.__doc__ or ""
    block = doc.split("The tree", 1)[1].split("::\n", 1)[1]
    tree: dict[str, tuple[str | None, str | None]] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        match = _ENTRY.match(line)
        assert match is not None, f"not a tree entry: {line!r}"
        depth = len(match["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        name = match["name"]
        assert name not in tree, f"{name} is listed twice"
        tree[name] = (stack[-1][1] if stack else None, match["also"])
        stack.append((depth, name))
    return tree


def test_every_error_derives_from_the_one_base() -> None:
    """Every exception class defined in gwproactor.errors is a GwProactorError."""
    strays = [name for name, cls in _classes().items() if not issubclass(cls, GwProactorError)]
    assert strays == []


def test_the_documented_tree_lists_every_class_once() -> None:
    """The tree in the module docstring names exactly the classes the module defines."""
    assert sorted(_documented()) == sorted(_classes())


@pytest.mark.parametrize("name", sorted(_classes()))
def test_the_documented_tree_gives_each_class_its_bases(name: str) -> None:
    """Each class's gwproactor base and built-in second base are the ones the tree shows."""
    cls = _classes()[name]
    parent, also = _documented()[name]
    ours = [base.__name__ for base in cls.__bases__ if base.__module__ == errors.__name__]
    builtins = [base.__name__ for base in cls.__bases__ if base.__module__ == "builtins"]
    if parent is None:
        assert (ours, builtins) == ([], ["Exception"])
    else:
        assert (ours, builtins) == ([parent], [also] if also else [])

