"""pytest plugin of gwproactor_test (registered through the ``pytest11`` entry point).

Fixtures: ``test_certs`` (session), ``private_broker`` (session), ``fresh_broker`` (per test), ``fault_proxy``
(factory, per test), ``pair`` and ``tree`` (live proactors, see :mod:`gwproactor_test.live`), ``clock``,
``v4x_env`` (session: the gridworks-proactor 4.x virtualenv of :mod:`gwproactor_test.interop4x`). Options
``--gwp-verbose-child`` / ``--gwp-verbose-parent`` / ``--gwp-verbose=ROLES`` and ``--gwp-log-level`` echo proactor
logs; a failing test gets each proactor's captured log lines attached to its report. Live fixtures skip when Mosquitto is missing, or fail if ``GWPROACTOR_REQUIRE_MOSQUITTO=1``.
The ``live`` marker labels tests that talk to a real broker.  Every test is checked by the delivery guard
(:mod:`gwproactor_test.guard`): an outbox that sent an event twice without a cause fails it, unless the test is
marked ``gwp_allow_resent_without_cause``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gwproactor_test.broker import MOSQUITTO_MISSING, PrivateBroker, find_mosquitto
from gwproactor_test.certs import TestCerts, make_test_certs
from gwproactor_test.proxy import FaultProxy

if TYPE_CHECKING:  # pragma: no cover - the plugin imports these lazily, when a fixture is used
    from twisted.internet.task import Clock
    from twisted.logger import LogLevel

    from gwproactor_test.interop4x import V4xEnv
    from gwproactor_test.live import LivePair, LiveTree

REQUIRE_MOSQUITTO_ENV = "GWPROACTOR_REQUIRE_MOSQUITTO"
"""Set this environment variable to ``1`` to make a missing Mosquitto fail live tests instead of skipping them."""

FaultProxyFactory = Callable[[str, int], FaultProxy]
"""Type of the ``fault_proxy`` fixture: ``fault_proxy(target_host, target_port)`` returns a started proxy."""


CONFIGURED = False
"""True once pytest configured this plugin: :mod:`gwproactor_test.suites` then builds pytest-style suites."""


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers and start the delivery guard."""
    global CONFIGURED
    from gwproactor_test.guard import start_watching

    CONFIGURED = True

    config.addinivalue_line(
        "markers",
        "live: the test uses real sockets and a private Mosquitto broker (gwproactor_test)",
    )
    config.addinivalue_line(
        "markers",
        "gwp_allow_resent_without_cause: the test provokes resent_without_cause on purpose (gwproactor_test guard)",
    )
    start_watching()


@pytest.fixture(autouse=True)
def _gwp_delivery_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if an outbox built during it sent an event twice without a cause."""
    from gwproactor_test.guard import offenders, take_outboxes

    take_outboxes()
    yield
    bad = offenders(take_outboxes())
    if bad and request.node.get_closest_marker("gwp_allow_resent_without_cause") is None:
        pytest.fail("delivery guard: " + "; ".join(bad), pytrace=False)


def require_mosquitto() -> str:
    """Return the Mosquitto path; skip the test if it is missing (fail if ``GWPROACTOR_REQUIRE_MOSQUITTO=1``)."""
    found = find_mosquitto()
    if found is None:
        if os.environ.get(REQUIRE_MOSQUITTO_ENV) == "1":
            pytest.fail(f"{MOSQUITTO_MISSING} ({REQUIRE_MOSQUITTO_ENV}=1 is set)", pytrace=False)
        pytest.skip(MOSQUITTO_MISSING)
    return found


def _blockon(d: Any) -> Any:
    import pytest_twisted

    return pytest_twisted.blockon(d)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _start_broker(directory: Path, certs: TestCerts) -> PrivateBroker:
    broker = PrivateBroker(directory, certs=certs, reactor=_reactor(), mosquitto=require_mosquitto())
    _blockon(broker.start())
    return broker


@pytest.fixture(scope="session")
def test_certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    """Certificates (CA, broker, client, other CA and its client) generated once per session."""
    return make_test_certs(tmp_path_factory.mktemp("gwproactor_certs"))


@pytest.fixture(scope="session")
def private_broker(
    twisted_greenlet: Any, tmp_path_factory: pytest.TempPathFactory, test_certs: TestCerts
) -> Iterator[PrivateBroker]:
    """A private Mosquitto broker shared by the session; do not stop it (use ``fresh_broker`` for that)."""
    broker = _start_broker(tmp_path_factory.mktemp("gwproactor_broker"), test_certs)
    try:
        yield broker
    finally:
        _blockon(broker.stop())


@pytest.fixture
def fresh_broker(twisted_greenlet: Any, tmp_path: Path, test_certs: TestCerts) -> Iterator[PrivateBroker]:
    """A private Mosquitto broker for this test only, which it may stop, kill or restart."""
    broker = _start_broker(tmp_path / "broker", test_certs)
    try:
        yield broker
    finally:
        _blockon(broker.stop())


@pytest.fixture
def fault_proxy(twisted_greenlet: Any) -> Iterator[FaultProxyFactory]:
    """A factory ``fault_proxy(target_host, target_port)`` of started :class:`FaultProxy`; all stop after the test.

    The factory may be called from the test body too (listening on a loopback port completes at once).
    """
    proxies: list[FaultProxy] = []

    def make(target_host: str, target_port: int) -> FaultProxy:
        proxy = FaultProxy(target_host, target_port, reactor=_reactor())
        started: list[Any] = []
        proxy.start().addBoth(started.append)
        if not started:  # pragma: no cover - listenTCP is synchronous
            raise RuntimeError("the fault proxy did not start listening at once")
        if not isinstance(started[0], type(None)):
            started[0].raiseException()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        _blockon(proxy.stop())


@pytest.fixture(scope="session")
def v4x_env(twisted_greenlet: Any) -> V4xEnv:
    """The gridworks-proactor 4.x virtualenv (:func:`gwproactor_test.interop4x.ensure_v4x_env`, installed in a
    thread on first use); skips when 4.x cannot be installed here, fails instead if ``GWPROACTOR_REQUIRE_4X=1``."""
    from twisted.internet import threads

    from gwproactor_test.interop4x import REQUIRE_4X_ENV, V4xUnavailable, ensure_v4x_env

    try:
        return _blockon(threads.deferToThread(ensure_v4x_env))
    except V4xUnavailable as e:
        if os.environ.get(REQUIRE_4X_ENV) == "1":
            pytest.fail(f"{e} ({REQUIRE_4X_ENV}=1 is set)", pytrace=False)
        pytest.skip(f"gridworks-proactor 4.x cannot be installed here: {e}")


# --- live pairs and trees (gwproactor_test.live) ---------------------------------------------------------

_ALL_ROLES = ("child", "parent", "scada2", "scada1", "atn")
_LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options for verbose proactor logs in live tests."""
    group = parser.getgroup("gwproactor", "gwproactor live tests")
    group.addoption("--gwp-verbose-child", action="store_true", default=False,
                    help="echo the child's log lines (pairs) to stderr as they happen")
    group.addoption("--gwp-verbose-parent", action="store_true", default=False,
                    help="echo the parent's log lines (pairs) to stderr as they happen")
    group.addoption("--gwp-verbose", action="append", default=[], metavar="ROLES",
                    help="echo the log lines of these roles (comma separated: child, parent, scada2, scada1, atn, all)")
    group.addoption("--gwp-log-level", default="info", choices=_LOG_LEVELS,
                    help="lowest level echoed by the --gwp-verbose* options (default: info)")


def verbose_roles(config: pytest.Config) -> frozenset[str]:
    """The roles whose log lines are echoed, from the command-line options."""
    roles: set[str] = set()
    if config.getoption("--gwp-verbose-child", default=False):
        roles.add("child")
    if config.getoption("--gwp-verbose-parent", default=False):
        roles.add("parent")
    for value in config.getoption("--gwp-verbose", default=[]) or []:
        for role in value.split(","):
            role = role.strip()
            if role == "all":
                roles.update(_ALL_ROLES)
            elif role:
                roles.add(role)
    return frozenset(roles)


def verbose_level(config: pytest.Config) -> LogLevel:
    """The :class:`~twisted.logger.LogLevel` from ``--gwp-log-level``."""
    from twisted.logger import LogLevel

    return LogLevel.levelWithName(config.getoption("--gwp-log-level", default="info") or "info")


@pytest.fixture
def clock() -> Clock:
    """A fresh :class:`twisted.internet.task.Clock` for unit tests."""
    from twisted.internet.task import Clock

    return Clock()


@pytest.fixture
def pair(
    twisted_greenlet: Any, private_broker: PrivateBroker, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[LivePair]:
    """A :class:`~gwproactor_test.live.LivePair` of the dummy classes on the session broker (not started).

    Start it with ``await pair.start()`` (or ``start_child()`` / ``start_parent()``); it is stopped after the test.
    """
    from gwproactor_test.live import LivePair

    live = LivePair(private_broker, tmp_path / "pair", verbose=verbose_roles(request.config),
                    verbose_level=verbose_level(request.config), reactor=_reactor())
    yield live
    _blockon(live.stop())


@pytest.fixture
def tree(
    twisted_greenlet: Any, private_broker: PrivateBroker, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[LiveTree]:
    """A :class:`~gwproactor_test.live.LiveTree` (scada2 → scada1 → atn) of the dummies (not started); stopped after."""
    from gwproactor_test.live import LiveTree

    live = LiveTree(private_broker, tmp_path / "tree", verbose=verbose_roles(request.config),
                    verbose_level=verbose_level(request.config), reactor=_reactor())
    yield live
    _blockon(live.stop())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Forget the pairs/trees of the previous test."""
    from gwproactor_test.live import forget_live

    forget_live()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """On a failed setup or call, attach the captured log lines of every proactor the test built."""
    outcome = yield
    report = outcome.get_result()
    if report.when in ("setup", "call") and report.failed:
        from gwproactor_test.live import LIVE

        for number, live in enumerate(LIVE):
            prefix = f"{type(live).__name__}{'' if len(LIVE) == 1 else f' {number}'}"
            for role, text in live.log_text().items():
                report.sections.append((f"gwproactor log: {prefix} {role}", text or "(nothing logged)"))
