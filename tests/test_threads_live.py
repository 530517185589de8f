"""Which threads a running proactor has (what the README claims), and where certificate files are read."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from gwproactor.mqtt import BrokerConnection
from gwproactor_test.process import ProactorProcess
from gwproactor_test.wait import await_for

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[1]


def _broker_env(broker: Any, how: str) -> dict[str, str]:
    if how == "tls_ip_string":
        return {"GWP_BROKERS__DEFAULT__ENDPOINT": broker.endpoint(tls=True)}
    if how == "tcp_ip_string":
        return {"GWP_BROKERS__DEFAULT__ENDPOINT": broker.endpoint()}
    if how == "tcp_name_string":
        return {"GWP_BROKERS__DEFAULT__ENDPOINT": f"tcp:host=localhost:port={broker.port}"}
    host = "127.0.0.1" if how == "host_field_ip" else "localhost"
    return {"GWP_BROKERS__DEFAULT__HOST": host, "GWP_BROKERS__DEFAULT__PORT": str(broker.port)}


@pytest.mark.parametrize(
    "how, upstream, expected",
    [
        ("tls_ip_string", False, {"MainThread"}),
        ("tcp_ip_string", False, {"MainThread"}),
        ("host_field_ip", False, {"MainThread"}),
        ("tls_ip_string", True, {"MainThread", "gwproactor-fsync"}),
        ("tcp_name_string", False, {"MainThread", "PoolThread-twisted.internet.reactor-*"}),
        ("host_field_name", False, {"MainThread", "PoolThread-twisted.internet.reactor-*"}),
    ],
)
@pytest_twisted.ensureDeferred
async def test_threads_of_a_connected_process(private_broker: Any, tmp_path: Path, how: str, upstream: bool,
                                              expected: set[str]) -> None:
    """A connected `gwproactor run` has the reactor thread, +fsync with an upstream link, +pool only for host names."""
    from twisted.internet import reactor

    threads_file = tmp_path / "threads.json"
    env = {
        "GWP_LONG_NAME": "d1.threads.child",
        "GWP_SHORT_NAME": "c",
        "GWP_LINKS__PARENT__PEER_LONG_NAME": "d1.threads",
        "GWP_LINKS__PARENT__PEER_SHORT_NAME": "p",
        "GWP_LINKS__PARENT__UPSTREAM": "true" if upstream else "false",
        "GWP_STORE__DIRECTORY": str(tmp_path / "store"),
        "GWPT_THREADS_FILE": str(threads_file),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
        **_broker_env(private_broker, how),
    }
    proc = ProactorProcess("tests.runner_apps:ThreadReporter", env, tmp_path / "proc", reactor=reactor)
    try:
        await proc.start()
        await await_for(threads_file.exists, 20, describe=proc.log_tail)
        names = json.loads(threads_file.read_text())
        assert await proc.terminate() == 0, proc.log_tail()
    finally:
        await proc.close()
    shown = {("PoolThread-twisted.internet.reactor-*" if n.startswith("PoolThread-twisted.internet.reactor-") else n)
             for n in names}
    assert shown == expected, names


@pytest_twisted.ensureDeferred
async def test_tls_endpoint_not_prepared_is_built_in_a_thread(private_broker: Any) -> None:
    """Unprepared on a running reactor, TLS files are read in a pool thread; prepared, where prepare_endpoint ran."""
    from twisted.internet import reactor

    built_in: dict[str, list[str]] = {"late": [], "prepared": []}
    conns = {}
    for kind in ("late", "prepared"):
        conn = BrokerConnection(f"threads-{kind}", reactor, endpoint=private_broker.endpoint(tls=True))
        make = conn._make_endpoint

        def recording(make: Any = make, kind: str = kind) -> Any:
            built_in[kind].append(threading.current_thread().name)
            return make()

        conn._make_endpoint = recording  # type: ignore[method-assign]
        conns[kind] = conn
    conns["prepared"].prepare_endpoint()
    try:
        for conn in conns.values():
            conn.startService()
        for conn in conns.values():
            await conn.when_connected().addTimeout(15, reactor)
    finally:
        for conn in conns.values():
            await conn.stopService()
    main = threading.current_thread().name
    assert len(built_in["late"]) == 1 and built_in["late"][0] != main, built_in
    assert built_in["prepared"] == [main], built_in
