"""pytest plugin of gwproactor_test (registered through the ``pytest11`` entry point).

Fixtures: ``test_certs`` (session), ``private_broker`` (session), ``fresh_broker`` (per test), ``fault_proxy``
(factory, per test). Live fixtures skip when Mosquitto is missing, or fail if ``GWPROACTOR_REQUIRE_MOSQUITTO=1``.
The ``live`` marker labels tests that talk to a real broker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gwproactor_test.broker import MOSQUITTO_MISSING, PrivateBroker, find_mosquitto
from gwproactor_test.certs import TestCerts, make_test_certs
from gwproactor_test.proxy import FaultProxy

REQUIRE_MOSQUITTO_ENV = "GWPROACTOR_REQUIRE_MOSQUITTO"
"""Set this environment variable to ``1`` to make a missing Mosquitto fail live tests instead of skipping them."""

FaultProxyFactory = Callable[[str, int], FaultProxy]
"""Type of the ``fault_proxy`` fixture: ``fault_proxy(target_host, target_port)`` returns a started proxy."""


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``live`` marker."""
    config.addinivalue_line(
        "markers",
        "live: the test uses real sockets and a private Mosquitto broker (gwproactor_test)",
    )


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
