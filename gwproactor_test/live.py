"""Live pairs and trees of proactors linked through a private Mosquitto broker, for pytest-twisted and trial.

:class:`LivePair` builds a child and a parent (the dummies, or a derived project's classes);
:class:`LiveTree` builds scada2 → scada1 → atn.  Each proactor gets its own store directory and
test settings; every lifecycle method returns a Deferred.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, maybeDeferred, succeed

from gwproactor_test import dummies
from gwproactor_test.instrumented import InstrumentedMixin, instrumented
from gwproactor_test.wait import describe_proactors, wait_link_active, wait_quiescent

__all__ = ["LIVE", "LiveNodes", "LivePair", "LiveTree", "NodeSpec"]

SettingsFactory = Callable[..., Any]
"""``factory(broker_endpoint, store_dir, **link_overrides) -> ProactorSettings``."""

ProactorFactory = Callable[..., Any]
"""``factory(settings, reactor=reactor) -> Proactor`` (a class is such a factory)."""

LIVE: list[LiveNodes] = []
"""Every pair/tree built since :func:`forget_live` (the pytest plugin reads it to attach logs to failure reports)."""


def forget_live() -> None:
    """Forget the pairs/trees recorded in :data:`LIVE` (called by the pytest plugin before each test)."""
    del LIVE[:]


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@attrs.define(eq=False)
class NodeSpec:
    """How to build one proactor of a pair/tree.

    :param role: its name in the pair/tree (``child``, ``parent``, ``scada1`` ...).
    :param cls: the proactor class or factory; combined with :class:`InstrumentedMixin`
        when it is a class (factories must return instrumented proactors themselves, see
        :func:`~gwproactor_test.instrumented.instrumented`).
    :param settings: the settings factory.
    :param links: the link names the proactor must have (checked when built).
    """

    role: str
    cls: ProactorFactory
    settings: SettingsFactory
    links: tuple[str, ...] = ()


@attrs.define(eq=False)
class LiveNodes:
    """Proactors by role, built on demand, linked through ``broker``.

    :param broker: a started :class:`~gwproactor_test.broker.PrivateBroker`.
    :param directory: where each role gets its store directory (``<directory>/<role>``).
    :param specs: the :class:`NodeSpec` of each role.
    :param tls: connect through the broker's mutual-TLS listener.
    :param endpoints: a broker endpoint string per role, overriding the broker's (e.g. a
        :class:`~gwproactor_test.proxy.FaultProxy` endpoint between one proactor and the broker).
    :param link_overrides: :class:`~gwproactor.config.LinkSettings` fields for every link.
    :param verbose: roles whose log lines are echoed to stderr as they happen.
    :param reactor: the reactor (the global one when ``None``).
    """

    broker: Any
    directory: Path = attrs.field(converter=Path)
    specs: dict[str, NodeSpec] = attrs.field(factory=dict)
    tls: bool = False
    endpoints: dict[str, str] = attrs.field(factory=dict)
    link_overrides: dict[str, Any] = attrs.field(factory=dict)
    verbose: frozenset[str] = attrs.field(factory=frozenset, converter=frozenset)
    verbose_level: Any = None
    reactor: Any = None
    nodes: dict[str, Any] = attrs.field(init=False, factory=dict)
    """The current proactor of each role that was built."""
    history: list[tuple[str, Any]] = attrs.field(init=False, factory=list)
    """``(role, proactor)`` for every proactor built (restarts included), for logs."""

    def __attrs_post_init__(self) -> None:
        if self.reactor is None:
            self.reactor = _default_reactor()
        LIVE.append(self)

    # --- building -------------------------------------------------------------------

    def endpoint_for(self, role: str) -> str:
        """The broker endpoint string ``role`` connects to."""
        if role in self.endpoints:
            return self.endpoints[role]
        return self.broker.endpoint(tls=self.tls)

    def store_dir(self, role: str) -> Path:
        """The store directory of ``role`` (kept across restarts)."""
        return self.directory / role

    def settings_for(self, role: str) -> Any:
        """Fresh settings for ``role``."""
        spec = self.specs[role]
        return spec.settings(self.endpoint_for(role), self.store_dir(role), **self.link_overrides)

    def build(self, role: str) -> Any:
        """Build (without starting) the proactor of ``role``; replaces a stopped one."""
        current = self.nodes.get(role)
        if current is not None and current.running:
            raise RuntimeError(f"{role} is running; stop it before building it again")
        spec = self.specs[role]
        factory = instrumented(spec.cls) if isinstance(spec.cls, type) else spec.cls
        proactor = factory(self.settings_for(role), reactor=self.reactor)
        missing = [name for name in spec.links if name not in proactor.links]
        if missing:
            raise RuntimeError(f"{role} ({proactor!r}) lacks links {missing}; its settings factory must create them")
        if isinstance(proactor, InstrumentedMixin):
            proactor.log_capture.label = role
            if role in self.verbose:
                from twisted.logger import LogLevel

                proactor.log_capture.echo = sys.stderr
                proactor.log_capture.echo_level = self.verbose_level or LogLevel.info
        self.nodes[role] = proactor
        self.history.append((role, proactor))
        return proactor

    def get(self, role: str) -> Any:
        """The current proactor of ``role`` (built if needed)."""
        proactor = self.nodes.get(role)
        return proactor if proactor is not None else self.build(role)

    # --- lifecycle ------------------------------------------------------------------------

    def start_node(self, role: str) -> Deferred:
        """Start ``role`` (building it, or building it anew if it was stopped); fires with the proactor."""
        proactor = self.nodes.get(role)
        if proactor is None or (not proactor.running and getattr(proactor, "_gwp_stopped", False)):
            proactor = self.build(role)
        if not proactor.running:
            proactor.startService()
        return succeed(proactor)

    def stop_node(self, role: str) -> Deferred:
        """Stop ``role`` (a no-op if it is not running); fires when it has stopped and closed its store."""
        proactor = self.nodes.get(role)
        if proactor is None or not proactor.running:
            return succeed(None)
        proactor._gwp_stopped = True
        return maybeDeferred(proactor.stopService)

    def restart_node(self, role: str) -> Deferred:
        """Stop ``role``, then build it anew on the same store directory and start it; fires with the new proactor."""

        async def restart() -> Any:
            await self.stop_node(role)
            self.build(role)
            return await self.start_node(role)

        return Deferred.fromCoroutine(restart())

    def start(self) -> Deferred:
        """Start every role, in spec order."""

        async def start() -> None:
            for role in self.specs:
                await self.start_node(role)

        return Deferred.fromCoroutine(start())

    def stop(self) -> Deferred:
        """Stop every running proactor (reverse spec order); safe to call more than once."""

        async def stop() -> None:
            for role in reversed(list(self.specs)):
                await self.stop_node(role)
            for _role, proactor in self.history:
                if isinstance(proactor, InstrumentedMixin):
                    proactor.log_capture.stop()

        return Deferred.fromCoroutine(stop())

    # --- waiting and reporting --------------------------------------------------------------

    def proactors(self) -> list[Any]:
        """The current proactors, in spec order."""
        return [self.nodes[r] for r in self.specs if r in self.nodes]

    def describe(self) -> str:
        """Summary of every current proactor (for failure messages)."""
        return describe_proactors(*self.proactors())

    def wait_active(self, timeout: float = 15.0) -> Deferred:
        """Wait until every link of every current proactor is active."""

        async def wait() -> None:
            for proactor in self.proactors():
                for name in proactor.links:
                    await wait_link_active(proactor, name, timeout, reactor=self.reactor,
                                           others=tuple(p for p in self.proactors() if p is not proactor))

        return Deferred.fromCoroutine(wait())

    def wait_quiescent(self, timeout: float = 15.0) -> Deferred:
        """Wait until nothing is pending or in flight anywhere (see :func:`~gwproactor_test.wait.wait_quiescent`)."""
        return wait_quiescent(*self.proactors(), timeout=timeout, reactor=self.reactor)

    def log_text(self) -> dict[str, str]:
        """Captured log lines by role (``role#n`` for the n-th rebuild)."""
        out: dict[str, str] = {}
        seen: dict[str, int] = {}
        for role, proactor in self.history:
            n = seen.get(role, 0)
            seen[role] = n + 1
            capture = getattr(proactor, "log_capture", None)
            if capture is not None:
                out[role if n == 0 else f"{role}#{n}"] = capture.text()
        return out


def _pair_specs(child_cls: Any, parent_cls: Any, child_settings: Any, parent_settings: Any,
                child_link: str, parent_link: str) -> dict[str, NodeSpec]:
    return {
        "child": NodeSpec("child", child_cls, child_settings, (child_link,)),
        "parent": NodeSpec("parent", parent_cls, parent_settings, (parent_link,)),
    }


@attrs.define(eq=False, init=False)
class LivePair(LiveNodes):
    """A child with an upstream link to a parent, through a private broker.

    :param broker: a started :class:`~gwproactor_test.broker.PrivateBroker`.
    :param directory: parent directory of the two store directories.
    :param child_cls: the child's class (or factory); default :class:`~gwproactor_test.dummies.DummyChild`.
    :param parent_cls: the parent's class (or factory); default :class:`~gwproactor_test.dummies.DummyParent`.
    :param child_settings: ``(broker_endpoint, store_dir, **link_overrides) -> ProactorSettings``.
    :param parent_settings: idem for the parent.
    :param child_link: the child's link to the parent (default ``"parent"``).
    :param parent_link: the parent's link to the child (default ``"child"``).

    Other keywords go to :class:`LiveNodes` (``tls``, ``endpoints``, ``link_overrides``, ``verbose``, ``reactor``).
    """

    child_link: str = "parent"
    parent_link: str = "child"

    def __init__(
        self,
        broker: Any,
        directory: Path | str,
        *,
        child_cls: Any = None,
        parent_cls: Any = None,
        child_settings: SettingsFactory | None = None,
        parent_settings: SettingsFactory | None = None,
        child_link: str = "parent",
        parent_link: str = "child",
        **kwargs: Any,
    ) -> None:
        specs = _pair_specs(
            child_cls or dummies.DummyChild,
            parent_cls or dummies.DummyParent,
            child_settings or dummies.child_settings,
            parent_settings or dummies.parent_settings,
            child_link,
            parent_link,
        )
        self.__attrs_init__(broker, Path(directory), specs, child_link=child_link, parent_link=parent_link,
                            **kwargs)

    @property
    def child(self) -> Any:
        """The current child proactor (built if needed)."""
        return self.get("child")

    @property
    def parent(self) -> Any:
        """The current parent proactor (built if needed)."""
        return self.get("parent")

    def start_child(self) -> Deferred:
        """Start the child (fires with it)."""
        return self.start_node("child")

    def start_parent(self) -> Deferred:
        """Start the parent (fires with it)."""
        return self.start_node("parent")

    def stop_child(self) -> Deferred:
        """Stop the child."""
        return self.stop_node("child")

    def stop_parent(self) -> Deferred:
        """Stop the parent."""
        return self.stop_node("parent")

    def restart_child(self) -> Deferred:
        """Stop the child and start a new one on the same store (fires with it)."""
        return self.restart_node("child")

    def restart_parent(self) -> Deferred:
        """Stop the parent and start a new one on the same store (fires with it)."""
        return self.restart_node("parent")

    @property
    def child_upstream(self) -> Any:
        """The child's link to the parent."""
        return self.child.get_link(self.child_link)

    @property
    def parent_downstream(self) -> Any:
        """The parent's link to the child."""
        return self.parent.get_link(self.parent_link)


@attrs.define(eq=False, init=False)
class LiveTree(LiveNodes):
    """scada2 → scada1 → atn through a private broker; scada1 forwards scada2's events to atn.

    Roles ``scada2``, ``scada1``, ``atn`` (defaults: the dummies and their settings factories).
    Keywords ``scada2_cls`` / ``scada1_cls`` / ``atn_cls`` and ``*_settings`` replace them;
    other keywords go to :class:`LiveNodes`.
    """

    def __init__(
        self,
        broker: Any,
        directory: Path | str,
        *,
        scada2_cls: Any = None,
        scada1_cls: Any = None,
        atn_cls: Any = None,
        scada2_settings: SettingsFactory | None = None,
        scada1_settings: SettingsFactory | None = None,
        atn_settings: SettingsFactory | None = None,
        **kwargs: Any,
    ) -> None:
        specs = {
            "atn": NodeSpec("atn", atn_cls or dummies.DummyAtn, atn_settings or dummies.atn_settings, ("scada1",)),
            "scada1": NodeSpec("scada1", scada1_cls or dummies.DummyScada1,
                               scada1_settings or dummies.scada1_settings, ("atn", "scada2")),
            "scada2": NodeSpec("scada2", scada2_cls or dummies.DummyScada2,
                               scada2_settings or dummies.scada2_settings, ("scada1",)),
        }
        self.__attrs_init__(broker, Path(directory), specs, **kwargs)

    @property
    def atn(self) -> Any:
        """The current atn (built if needed)."""
        return self.get("atn")

    @property
    def scada1(self) -> Any:
        """The current scada1 (built if needed)."""
        return self.get("scada1")

    @property
    def scada2(self) -> Any:
        """The current scada2 (built if needed)."""
        return self.get("scada2")
