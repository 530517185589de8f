"""The error policy: one exception tree, documented as the classes are; what the router counts as a failure."""

from __future__ import annotations

import inspect
import re
from typing import Any, ClassVar

import attrs
import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from gwproactor import errors
from gwproactor.actors import Actor, Router
from gwproactor.errors import GwProactorError
from gwproactor.message import make_message

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



# --- the router: an actor's exception is its failure; KeyboardInterrupt and SystemExit are not ----------------


@attrs.frozen
class _Poke:
    TYPE_NAME: ClassVar[str] = "test.error_tree.poke"


class _Raising(Actor):
    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(name)
        self.error = error

    def receive(self, message: Any) -> None:
        raise self.error


def _router_with(actor: Actor) -> tuple[Router, Clock, list[Failure]]:
    clock = Clock()
    failures: list[Failure] = []
    router = Router(clock=clock, on_failure=lambda actor, message, failure: failures.append(failure))
    router.add(actor)
    router.start()
    router.send(make_message("tester", actor.name, _Poke()))
    return router, clock, failures


def test_router_counts_an_exception_as_the_actor_failure() -> None:
    """An Exception from receive is logged, counted and handed to on_failure; delivery goes on."""
    router, clock, failures = _router_with(_Raising("a", RuntimeError("boom")))
    clock.advance(0)
    assert [f.type for f in failures] == [RuntimeError]
    assert router.stats.failures == 1


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3)])
def test_router_lets_process_exits_through(error: BaseException) -> None:
    """KeyboardInterrupt and SystemExit from receive propagate: they are not counted as actor failures."""
    router, clock, failures = _router_with(_Raising("a", error))
    with pytest.raises(type(error)):
        clock.advance(0)
    assert failures == []
    assert router.stats.failures == 0


# --- application hooks: an Exception is logged and the caller goes on; KeyboardInterrupt and SystemExit are not --


class _Log:
    def __init__(self) -> None:
        self.failures: list[Failure] = []

    def failure(self, format: str, failure: Failure | None = None, **kwargs: Any) -> None:
        self.failures.append(failure if failure is not None else Failure())


def test_a_failing_hook_is_logged_not_raised() -> None:
    """An Exception raised by a hook, or failing its Deferred, is logged; call_hook returns normally."""
    from twisted.internet.defer import fail

    from gwproactor._proactor_links import call_hook

    def raises() -> None:
        raise RuntimeError("boom")

    log = _Log()
    call_hook(log, raises)
    call_hook(log, lambda: fail(ValueError("later")))
    assert [f.type for f in log.failures] == [RuntimeError, ValueError]


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3)])
def test_a_hook_lets_process_exits_through(error: BaseException) -> None:
    """KeyboardInterrupt and SystemExit from a hook propagate, unlogged."""
    from gwproactor._proactor_links import call_hook

    def raises() -> None:
        raise error

    log = _Log()
    with pytest.raises(type(error)):
        call_hook(log, raises)
    assert log.failures == []
