"""Reusable live test suites that a derived project runs against its own proactor classes.

Subclass a suite and name your classes::

    from gwproactor_test import suites

    class TestMyPair(suites.PairSuites):
        child_cls = MyChild
        parent_cls = MyParent

The same module runs under pytest (with pytest-twisted and the ``gwproactor_test`` plugin) and under
``trial``: imported inside a pytest run the suites are plain test classes run on pytest-twisted's reactor
(a trial ``TestCase`` cannot run there: trial spins the reactor itself); imported anywhere else they are
:class:`twisted.trial.unittest.TestCase` subclasses.  "Inside a pytest run" is decided explicitly: the
``gwproactor_test`` pytest plugin's ``pytest_configure`` says so, which only pytest calls; merely importing
pytest or pytest_twisted (as a test module may) does not turn the suites into classes trial cannot see.
Set ``GWPROACTOR_SUITE_RUNNER=trial|pytest`` to force one.  Import the module (``from gwproactor_test import suites``), not the classes, so trial does not
also collect the base suites.
"""

from __future__ import annotations

import inspect
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, ClassVar

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

from gwproactor.message import ProblemEvent
from gwproactor_test import dummies
from gwproactor_test.live import LivePair, LiveTree
from gwproactor_test.wait import await_for, wait_link_state

__all__ = [
    "AckTimeoutSuite",
    "AwaitingSetupSuite",
    "BasicCommSuite",
    "DeliverySuite",
    "LiveSuite",
    "LivenessSuite",
    "PairSuites",
    "RUNNER",
    "TreeSuite",
]


def _pytest_is_running() -> bool:
    """True when a pytest run configured the ``gwproactor_test`` plugin and pytest-twisted is loaded."""
    plugin = sys.modules.get("gwproactor_test.plugin")
    return bool(getattr(plugin, "CONFIGURED", False)) and "pytest_twisted" in sys.modules


def _runner() -> str:
    forced = os.environ.get("GWPROACTOR_SUITE_RUNNER")
    if forced in ("trial", "pytest"):
        return forced
    return "pytest" if _pytest_is_running() else "trial"


RUNNER = _runner()
"""``"pytest"`` or ``"trial"``: how the suites were built when this module was imported."""


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class _Env:
    """Where a suite test gets brokers and directories, and what it must clean up."""

    def __init__(self, directory: Path, broker: Any, certs: Any, verbose: frozenset[str], verbose_level: Any) -> None:
        self.directory = directory
        self._broker = broker
        self.certs = certs
        self.verbose = verbose
        self.verbose_level = verbose_level
        self.cleanups: list[Callable[[], Any]] = []
        self._count = 0

    def subdir(self, name: str) -> Path:
        self._count += 1
        path = self.directory / f"{name}{self._count}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def new_broker(self) -> Any:
        from gwproactor_test.broker import PrivateBroker

        broker = PrivateBroker(self.subdir("broker"), certs=self.certs, reactor=_reactor())
        await broker.start()
        self.cleanups.append(broker.stop)
        return broker

    async def broker(self) -> Any:
        if self._broker is None:
            self._broker = await self.new_broker()
        return self._broker

    async def run_cleanups(self) -> None:
        while self.cleanups:
            await self.cleanups.pop()()


_trial_certs: Any = None


def _class_value(obj: Any, name: str) -> Any:
    """A class attribute as written (a plain function stays a function, not a bound method)."""
    value = inspect.getattr_static(type(obj), name)
    return value.__func__ if isinstance(value, staticmethod) else value


class _SuiteMixin:
    """The machinery shared by every suite: classes, builders, waits."""

    child_cls: Any = dummies.DummyChild
    """The child class (or a factory ``(settings, reactor=...)``)."""
    parent_cls: Any = dummies.DummyParent
    child_settings: Any = dummies.child_settings
    """``(broker_endpoint, store_dir, **link_overrides) -> ProactorSettings`` for the child."""
    parent_settings: Any = dummies.parent_settings
    child_link: str = "parent"
    """The child's link to the parent."""
    parent_link: str = "child"
    """The parent's link to the child."""
    scada2_cls: Any = dummies.DummyScada2
    scada1_cls: Any = dummies.DummyScada1
    atn_cls: Any = dummies.DummyAtn
    scada2_settings: Any = dummies.scada2_settings
    scada1_settings: Any = dummies.scada1_settings
    atn_settings: Any = dummies.atn_settings
    tls: bool = False
    """Connect through the broker's mutual-TLS listener."""
    wait_s: float = 20.0
    """Deadline of every "eventually" wait (generous; outcomes are asserted exactly)."""

    _gwp_env: _Env | None = None

    # --- environment ---------------------------------------------------------------

    async def _env(self) -> _Env:
        raise NotImplementedError

    def make_event(self, proactor: Any, n: int) -> Any:
        """The n-th application event a suite generates on ``proactor`` (override for your own event type)."""
        return ProblemEvent(src=proactor.name, problem_type="warning", summary=f"suite event {n}", details="")

    async def make_pair(self, *, fresh_broker: bool = False, **kwargs: Any) -> LivePair:
        """A :class:`LivePair` of this suite's classes (not started), stopped after the test."""
        env = await self._env()
        broker = await env.new_broker() if fresh_broker else await env.broker()
        options: dict[str, Any] = dict(
            child_cls=self.child_cls,
            parent_cls=self.parent_cls,
            child_settings=_class_value(self, "child_settings"),
            parent_settings=_class_value(self, "parent_settings"),
            child_link=self.child_link,
            parent_link=self.parent_link,
            tls=self.tls,
            verbose=env.verbose,
            verbose_level=env.verbose_level,
        )
        options.update(kwargs)
        pair = LivePair(broker, env.subdir("pair"), **options)
        env.cleanups.append(pair.stop)
        return pair

    async def make_tree(self, **kwargs: Any) -> LiveTree:
        """A :class:`LiveTree` of this suite's classes (not started), stopped after the test."""
        env = await self._env()
        options: dict[str, Any] = dict(
            scada2_cls=self.scada2_cls,
            scada1_cls=self.scada1_cls,
            atn_cls=self.atn_cls,
            scada2_settings=_class_value(self, "scada2_settings"),
            scada1_settings=_class_value(self, "scada1_settings"),
            atn_settings=_class_value(self, "atn_settings"),
            tls=self.tls,
            verbose=env.verbose,
            verbose_level=env.verbose_level,
        )
        options.update(kwargs)
        tree = LiveTree(await env.broker(), env.subdir("tree"), **options)
        env.cleanups.append(tree.stop)
        return tree

    async def active_pair(self, **kwargs: Any) -> LivePair:
        """A started pair whose links are active."""
        pair = await self.make_pair(**kwargs)
        await pair.start()
        await pair.wait_active(self.wait_s)
        return pair

    async def generate(self, proactor: Any, count: int, start: int = 0) -> list[str]:
        """Generate ``count`` events on ``proactor``; returns their ids once durable."""
        return [await proactor.generate_event(self.make_event(proactor, n)) for n in range(start, start + count)]

    async def wait_handled(self, proactor: Any, ids: list[str], others: tuple[Any, ...] = ()) -> None:
        """Wait until ``proactor``'s application has accepted every id in ``ids``."""
        from gwproactor_test.wait import describe_proactors

        wanted = set(ids)

        def all_handled() -> bool:
            return wanted <= set(proactor.handled_ids)

        all_handled.__name__ = f"{len(wanted)} events handled by {proactor.name}"
        await await_for(
            all_handled,
            self.wait_s,
            lambda: f"missing {len(wanted - set(proactor.handled_ids))}\n" + describe_proactors(proactor, *others),
        )

    async def assert_delivered_once(self, nodes: Any, proactor: Any, ids: list[str], others: tuple[Any, ...]) -> None:
        """``ids`` reach ``proactor``'s application, ``nodes`` (a pair or tree) settle, and each id arrived once."""
        await self.wait_handled(proactor, ids, others)
        await nodes.wait_quiescent(self.wait_s)
        self.assert_once(proactor, ids)

    def assert_once(self, proactor: Any, ids: list[str]) -> None:
        """Each id in ``ids`` reached ``proactor``'s application exactly once."""
        counts = Counter(i for i in proactor.handled_ids if i in set(ids))
        repeated = {i: n for i, n in counts.items() if n != 1}
        missing = set(ids) - set(counts)
        assert not repeated and not missing, f"not exactly once: repeated {repeated}, missing {missing}"


if RUNNER == "pytest":
    import pytest

    class LiveSuite(_SuiteMixin):
        """Base of the suites under pytest: plain classes; ``async def test_*`` methods run on pytest-twisted.

        Every suite test carries the ``live`` marker (``pytest -m live`` selects them, ``-m "not live"`` skips them).
        """

        pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.live]

        def __init_subclass__(cls, **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)
            for name, value in list(vars(cls).items()):
                if name.startswith("test") and inspect.iscoroutinefunction(value):
                    setattr(cls, name, _pytest_method(value))

        @pytest.fixture(autouse=True)
        def _gwp_suite_env(self, request: Any, private_broker: Any, tmp_path: Path, test_certs: Any) -> None:
            from gwproactor_test.plugin import verbose_roles, verbose_level

            self._gwp_env = _Env(tmp_path, private_broker, test_certs, verbose_roles(request.config),
                                 verbose_level(request.config))

        async def _env(self) -> _Env:
            assert self._gwp_env is not None, "the gwproactor_test pytest plugin is not active"
            return self._gwp_env

    def _pytest_method(f: Callable[..., Any]) -> Callable[..., Deferred]:
        import functools

        @functools.wraps(f)
        def run(self: Any) -> Deferred:
            async def body() -> None:
                env = await self._env()
                try:
                    await f(self)
                finally:
                    await env.run_cleanups()

            return Deferred.fromCoroutine(body())

        return run

else:
    from twisted.trial import unittest

    class LiveSuite(_SuiteMixin, unittest.TestCase):  # type: ignore[no-redef]
        """Base of the suites under trial: a TestCase with a private broker per test (trial needs a clean reactor)."""

        async def _env(self) -> _Env:
            if self._gwp_env is None:
                from gwproactor_test.broker import find_mosquitto, MOSQUITTO_MISSING
                from gwproactor_test.certs import make_test_certs

                if find_mosquitto() is None:
                    raise unittest.SkipTest(MOSQUITTO_MISSING)
                global _trial_certs
                if _trial_certs is None:
                    _trial_certs = make_test_certs(Path(tempfile.mkdtemp(prefix="gwproactor_certs_")))
                from gwproactor_test.live import forget_live

                forget_live()
                directory = Path(self.mktemp())
                directory.mkdir(parents=True)
                roles = os.environ.get("GWPROACTOR_VERBOSE", "")
                env = _Env(directory, None, _trial_certs, frozenset(r for r in roles.split(",") if r), None)
                self._gwp_env = env
                self.addCleanup(lambda: Deferred.fromCoroutine(env.run_cleanups()))
            return self._gwp_env


# --- the suites ------------------------------------------------------------------------------------


class BasicCommSuite(LiveSuite):
    """A pair comes up and delivers events."""

    async def test_pair_becomes_active(self) -> None:
        """Both links of a pair reach active, and the child's startup event reaches the parent once."""
        pair = await self.active_pair()
        assert pair.child_upstream.is_active and pair.parent_downstream.is_active
        await pair.wait_quiescent(self.wait_s)
        assert pair.parent.counts.handled[self.parent_link]["gridworks.event.startup"] == 1

    async def test_events_delivered_once(self) -> None:
        """Events generated on the child reach the parent's application exactly once and leave the child's store."""
        pair = await self.active_pair()
        ids = await self.generate(pair.child, 25)
        await self.assert_delivered_once(pair, pair.parent, ids, (pair.child,))
        assert pair.child.store.pending_ids() == []
        assert pair.child.counts.acked[self.child_link][ProblemEvent.TYPE_NAME] >= 25


class AwaitingSetupSuite(LiveSuite):
    """SUBACKs decide between awaiting_setup_and_peer, awaiting_setup and active."""

    async def test_held_subacks(self) -> None:
        """With SUBACKs held the child waits in awaiting_setup_and_peer, then awaiting_setup once the parent speaks,
        and becomes active when they are released."""
        pair = await self.make_pair()
        pair.child.hold_subacks(self.child_link)
        await pair.start_child()
        link = pair.child_upstream
        await wait_link_state(pair.child, self.child_link, "awaiting_setup_and_peer", self.wait_s)
        await pair.start_parent()
        await wait_link_state(pair.child, self.child_link, "awaiting_setup", self.wait_s, others=(pair.parent,))
        assert pair.child.faults(self.child_link).held_subacks
        assert pair.child.release_subacks(self.child_link) >= 1
        await wait_link_state(pair.child, self.child_link, "active", self.wait_s, others=(pair.parent,))
        states = [new for _t, _input, new in link.recent_transitions]
        assert states.index("awaiting_setup_and_peer") < states.index("awaiting_setup") < states.index("active")
        await pair.wait_quiescent(self.wait_s)


class AckTimeoutSuite(LiveSuite):
    """Held acks: response timeout, awaiting_peer, recovery, nothing lost or doubled."""

    async def test_held_acks_time_out_then_recover(self) -> None:
        """Acks held by the parent make the child time out into awaiting_peer; released, the child is active again and
        every event reached the parent's application exactly once."""
        pair = await self.active_pair()
        pair.parent.hold_acks(self.parent_link)
        ids = await self.generate(pair.child, 5)
        await wait_link_state(pair.child, self.child_link, "awaiting_peer", self.wait_s, others=(pair.parent,))
        link = pair.child_upstream
        assert link.last_down_reason == "ack_timeout"
        assert link.stats.comm_events["gridworks.event.comm.response.timeout"] >= 1
        pair.parent.hold_acks(self.parent_link, False)
        pair.parent.release_acks(self.parent_link)
        await wait_link_state(pair.child, self.child_link, "active", self.wait_s, others=(pair.parent,))
        await self.assert_delivered_once(pair, pair.parent, ids, (pair.child,))


class LivenessSuite(LiveSuite):
    """A silent or half-open peer is noticed within the receive deadline, even while we publish."""

    async def _publishing(self, pair: LivePair, ids: list[str]) -> LoopingCall:
        child = pair.child
        counter = iter(range(10_000))

        def one() -> None:
            child.generate_event(self.make_event(child, next(counter))).addCallback(ids.append)

        loop = LoopingCall(one)
        loop.clock = _reactor()
        loop.start(0.1)
        return loop

    async def test_silent_parent_deadline_while_publishing(self) -> None:
        """A parent that stops sending takes the child out of active on the receive deadline while the child streams
        events; when the parent speaks again everything is delivered once."""
        pair = await self.active_pair(link_overrides={"ack_timeout_s": 30.0})
        deadline = pair.child.settings.links[self.child_link].receive_deadline_s
        ids: list[str] = []
        loop = await self._publishing(pair, ids)
        try:
            await await_for(lambda: len(ids) >= 3, self.wait_s, pair.describe)
            reactor = _reactor()
            pair.parent.hold_outgoing(self.parent_link)
            t0 = reactor.seconds()
            link = pair.child_upstream
            await await_for(lambda: not link.is_active, deadline + 5.0, pair.describe)
            elapsed = reactor.seconds() - t0
            assert link.last_down_reason == "receive_deadline_expired", pair.describe()
            assert elapsed <= deadline + 1.5, f"left active {elapsed:.2f} s after the parent went silent"
            pair.parent.hold_outgoing(self.parent_link, False)
            pair.parent.release_outgoing(self.parent_link)
            await wait_link_state(pair.child, self.child_link, "active", self.wait_s, others=(pair.parent,))
        finally:
            loop.stop()
        await self.assert_delivered_once(pair, pair.parent, ids, (pair.child,))

    async def test_half_open_parent_detected(self) -> None:
        """A parent whose connection goes half-open (fault proxy) takes the child out of active within the receive
        deadline while the child streams; after the proxy resumes, everything is delivered once."""
        from gwproactor_test.proxy import FaultProxy

        env = await self._env()
        broker = await env.broker()
        proxy = FaultProxy(broker.host, broker.port, reactor=_reactor())
        await proxy.start()
        env.cleanups.append(proxy.stop)
        pair = await self.active_pair(endpoints={"parent": proxy.endpoint()}, tls=False)
        deadline = pair.child.settings.links[self.child_link].receive_deadline_s
        ids: list[str] = []
        loop = await self._publishing(pair, ids)
        try:
            await await_for(lambda: len(ids) >= 3, self.wait_s, pair.describe)
            reactor = _reactor()
            proxy.half_open()
            t0 = reactor.seconds()
            link = pair.child_upstream
            await await_for(lambda: not link.is_active, deadline + 5.0, pair.describe)
            elapsed = reactor.seconds() - t0
            assert elapsed <= deadline + 1.5, f"left active {elapsed:.2f} s after the parent went half-open"
            proxy.resume()
            await wait_link_state(pair.child, self.child_link, "active", self.wait_s, others=(pair.parent,))
        finally:
            loop.stop()
        await self.assert_delivered_once(pair, pair.parent, ids, (pair.child,))


class DeliverySuite(LiveSuite):
    """Events survive outages of the parent, the child and the broker, and arrive exactly once."""

    async def test_parent_down_then_up(self) -> None:
        """Events generated while the parent is down wait in the child's store and all reach the restarted parent."""
        pair = await self.active_pair()
        await pair.stop_parent()
        ids = await self.generate(pair.child, 30)
        assert set(ids) <= set(pair.child.store.pending_ids())
        await pair.start_parent()
        await self.assert_delivered_once(pair, pair.parent, ids, (pair.child,))

    async def test_child_restart_keeps_backlog(self) -> None:
        """A child restarted on the same store still delivers what it stored while the parent was away."""
        pair = await self.active_pair()
        await pair.stop_parent()
        ids = await self.generate(pair.child, 10)
        await pair.restart_child()
        assert set(ids) <= set(pair.child.store.pending_ids())
        await pair.start_parent()
        await self.assert_delivered_once(pair, pair.parent, ids, (pair.child,))

    async def test_broker_restart_mid_stream(self) -> None:
        """Events streamed across a broker restart all reach the parent's application exactly once."""
        pair = await self.active_pair(fresh_broker=True)
        ids: list[str] = await self.generate(pair.child, 10)
        restarted = pair.broker.restart()
        ids += await self.generate(pair.child, 10, start=10)
        await restarted
        ids += await self.generate(pair.child, 10, start=20)
        await pair.wait_active(self.wait_s)
        await self.assert_delivered_once(pair, pair.parent, ids, (pair.child,))


class TreeSuite(LiveSuite):
    """scada2 → scada1 → atn: forwarding keeps Src and delivers once."""

    async def test_tree_forwarding(self) -> None:
        """Events of scada2 reach atn's application exactly once through scada1, which stores them on the way."""
        tree = await self.make_tree()
        await tree.start()
        await tree.wait_active(self.wait_s)
        ids = await self.generate(tree.scada2, 15)
        await self.assert_delivered_once(tree, tree.atn, ids, (tree.scada1, tree.scada2))
        assert tree.scada1.counts.stored["scada2"][ProblemEvent.TYPE_NAME] >= 15


class PairSuites(BasicCommSuite, AwaitingSetupSuite, AckTimeoutSuite, LivenessSuite, DeliverySuite):
    """Every pair suite in one class."""
