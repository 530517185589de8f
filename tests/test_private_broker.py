"""Live tests of gwproactor_test.broker.PrivateBroker (a real Mosquitto process on free loopback ports)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import protocol
from twisted.internet.endpoints import clientFromString

from gwproactor.errors import GwProactorError
from gwproactor_test.broker import (
    MOSQUITTO_MISSING,
    BrokerStartError,
    PrivateBroker,
    find_mosquitto,
)
from gwproactor_test.certs import TestCerts
from gwproactor_test.plugin import REQUIRE_MOSQUITTO_ENV, require_mosquitto

from gwproactor_test.wait import await_for  # noqa: E402

pytestmark = pytest.mark.live


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds naming ``what``."""
    return await_for(predicate, timeout, describe=f"waiting for {what}")


def _mqtt_string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def mqtt_connect(client_id: str) -> bytes:
    """An MQTT 3.1.1 CONNECT packet (clean session, keepalive 60 s)."""
    body = _mqtt_string("MQTT") + bytes([4, 0x02, 0, 60]) + _mqtt_string(client_id)
    return bytes([0x10, len(body)]) + body


def mqtt_subscribe(packet_id: int, topic: str, qos: int = 1) -> bytes:
    """An MQTT 3.1.1 SUBSCRIBE packet for one topic filter."""
    body = packet_id.to_bytes(2, "big") + _mqtt_string(topic) + bytes([qos])
    return bytes([0x82, len(body)]) + body


class Probe(protocol.Protocol):
    """Collects every byte received and whether the connection was lost."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        self.received += data

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - Twisted API
        self.lost = True


async def connect_probe(description: str) -> Probe:
    """Connect a :class:`Probe` with a Twisted endpoint description string."""
    endpoint = clientFromString(_reactor(), description)
    return await endpoint.connect(protocol.Factory.forProtocol(Probe))


async def mqtt_session(description: str, client_id: str) -> Probe:
    """Connect, send CONNECT and wait for a successful CONNACK."""
    probe = await connect_probe(description)
    probe.transport.write(mqtt_connect(client_id))
    await until(lambda: len(probe.received) >= 4 or probe.lost, what="CONNACK")
    assert probe.received[:4] == b"\x20\x02\x00\x00"
    return probe


def test_find_mosquitto_and_message() -> None:
    """find_mosquitto finds the installed binary; the missing-message says how to install it."""
    found = find_mosquitto()
    assert found is not None and os.access(found, os.X_OK)
    assert "apt-get install mosquitto" in MOSQUITTO_MISSING and "brew install mosquitto" in MOSQUITTO_MISSING


def test_require_mosquitto_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without mosquitto the live fixtures skip, or fail when GWPROACTOR_REQUIRE_MOSQUITTO=1."""
    import gwproactor_test.plugin as plugin

    monkeypatch.setattr(plugin, "find_mosquitto", lambda: None)
    monkeypatch.delenv(REQUIRE_MOSQUITTO_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="mosquitto is not installed"):
        require_mosquitto()
    monkeypatch.setenv(REQUIRE_MOSQUITTO_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="mosquitto is not installed"):
        require_mosquitto()


def test_ports_and_endpoints(tmp_path: Path, test_certs: TestCerts) -> None:
    """A broker picks two distinct free ports at construction and describes them as endpoint strings."""
    broker = PrivateBroker(tmp_path, certs=test_certs, reactor=_reactor())
    assert broker.host == "127.0.0.1"
    assert broker.port != broker.tls_port and 1883 not in (broker.port, broker.tls_port)
    assert broker.endpoint() == f"tcp:host=127.0.0.1:port={broker.port}"
    tls = broker.endpoint(tls=True)
    assert tls.startswith(f"tls:host=127.0.0.1:port={broker.tls_port}:trustRoots=")
    assert f"certificate={test_certs.client.cert_path}" in tls
    assert f"privateKey={test_certs.client.key_path}" in tls
    assert not broker.running


def test_config_has_listeners_and_acl(tmp_path: Path, test_certs: TestCerts) -> None:
    """The generated configuration has both listeners, client-certificate TLS, the ACL file and extra lines."""
    broker = PrivateBroker(
        tmp_path, certs=test_certs, reactor=_reactor(), acl="topic read x\n", extra_config="max_inflight_messages 7"
    )
    config = broker.render_config()
    assert f"listener {broker.port} 127.0.0.1" in config
    assert f"listener {broker.tls_port} 127.0.0.1" in config
    assert "require_certificate true" in config
    assert "per_listener_settings false" in config and "persistence false" in config
    assert f"acl_file {broker.acl_path}" in config
    assert config.rstrip().endswith("max_inflight_messages 7")


def test_relative_directory_made_absolute(
    tmp_path: Path, test_certs: TestCerts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative directory is made absolute (Mosquitto runs with the directory as working directory)."""
    monkeypatch.chdir(tmp_path)
    broker = PrivateBroker("relative", certs=test_certs, reactor=_reactor())
    assert broker.directory == tmp_path / "relative" and broker.directory.is_dir()
    assert str(broker.config_path).startswith(str(tmp_path))


def test_certs_generated_when_not_given(tmp_path: Path) -> None:
    """Without certs, the broker generates its own set under <directory>/certs."""
    broker = PrivateBroker(tmp_path, reactor=_reactor())
    assert broker.certs is not None
    assert broker.certs.ca.cert_path.parent == tmp_path / "certs"


@pytest_twisted.ensureDeferred
async def test_plain_listener_speaks_mqtt(private_broker: PrivateBroker) -> None:
    """The session broker accepts an anonymous MQTT CONNECT on its plain listener."""
    assert private_broker.running
    probe = await mqtt_session(private_broker.endpoint(), "plain-probe")
    probe.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_tls_endpoint_string_connects(private_broker: PrivateBroker) -> None:
    """The tls: endpoint string (trustRoots, certificate, privateKey) completes TLS and MQTT CONNECT."""
    probe = await mqtt_session(private_broker.endpoint(tls=True), "tls-probe")
    probe.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_tls_refuses_client_of_other_ca(private_broker: PrivateBroker, test_certs: TestCerts) -> None:
    """A client certificate from another CA never gets a CONNACK: the broker drops the connection."""
    probe = await connect_probe(private_broker.endpoint(tls=True, client=test_certs.other_client))
    probe.transport.write(mqtt_connect("intruder"))
    await until(lambda: probe.lost, what="the broker to drop the connection")
    assert probe.received == b""


@pytest_twisted.ensureDeferred
async def test_start_stop_restart_keep_ports(fresh_broker: PrivateBroker) -> None:
    """stop/start/restart keep the same ports and the broker serves MQTT after each start."""
    port, tls_port = fresh_broker.port, fresh_broker.tls_port
    await fresh_broker.stop()
    assert not fresh_broker.running
    probe_failed = False
    try:
        await connect_probe(fresh_broker.endpoint())
    except Exception:
        probe_failed = True
    assert probe_failed
    await fresh_broker.start()
    (await mqtt_session(fresh_broker.endpoint(), "after-start")).transport.loseConnection()
    await fresh_broker.restart()
    assert (fresh_broker.port, fresh_broker.tls_port) == (port, tls_port)
    assert fresh_broker.running and fresh_broker.start_count == 3
    (await mqtt_session(fresh_broker.endpoint(tls=True), "after-restart")).transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_restart_retries_while_port_is_busy(fresh_broker: PrivateBroker) -> None:
    """restart() keeps retrying while its port is held by someone else and succeeds once it is free."""
    import socket

    await fresh_broker.stop()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind((fresh_broker.host, fresh_broker.port))
    blocker.listen(1)
    starts_before = fresh_broker.start_count
    _reactor().callLater(1.0, blocker.close)
    try:
        await fresh_broker.restart()
    finally:
        blocker.close()
    assert fresh_broker.start_count > starts_before + 1  # at least one failed attempt, then success
    assert "Address already in use" in fresh_broker.log_path.read_text()
    (await mqtt_session(fresh_broker.endpoint(), "after-busy")).transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_restart_drops_clients(fresh_broker: PrivateBroker) -> None:
    """A restart closes existing client connections; new ones succeed on the same port."""
    probe = await mqtt_session(fresh_broker.endpoint(), "dropped")
    await fresh_broker.restart()
    await until(lambda: probe.lost, what="the old connection to close")
    (await mqtt_session(fresh_broker.endpoint(), "again")).transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_kill(fresh_broker: PrivateBroker) -> None:
    """kill() SIGKILLs the broker and fires once it has exited; a second kill is a no-op."""
    probe = await mqtt_session(fresh_broker.endpoint(), "killed")
    await fresh_broker.kill()
    assert not fresh_broker.running
    await until(lambda: probe.lost, what="the connection to drop")
    await fresh_broker.kill()
    await fresh_broker.stop()


@pytest_twisted.ensureDeferred
async def test_double_start_is_an_error(fresh_broker: PrivateBroker) -> None:
    """start() on a running broker errbacks with BrokerStartError."""
    with pytest.raises(BrokerStartError):
        await fresh_broker.start()
    assert fresh_broker.running


@pytest_twisted.ensureDeferred
async def test_bad_config_reports_log_tail(tmp_path: Path, test_certs: TestCerts) -> None:
    """A configuration Mosquitto rejects errbacks with BrokerStartError quoting the log tail."""
    broker = PrivateBroker(
        tmp_path, certs=test_certs, reactor=_reactor(), extra_config="no_such_option 1", mosquitto=require_mosquitto()
    )
    with pytest.raises(BrokerStartError) as info:
        await broker.start()
    assert isinstance(info.value, GwProactorError)
    assert "no_such_option" in str(info.value)
    assert str(broker.log_path) in str(info.value)
    assert not broker.running


@pytest_twisted.ensureDeferred
async def test_missing_binary(tmp_path: Path, test_certs: TestCerts) -> None:
    """A nonexistent mosquitto path errbacks with BrokerStartError instead of hanging."""
    broker = PrivateBroker(tmp_path, certs=test_certs, reactor=_reactor(), mosquitto=str(tmp_path / "nope"))
    with pytest.raises(BrokerStartError):
        await broker.start()
    assert not broker.running


def mqtt_publish(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 QoS 0 PUBLISH packet (short enough for a one-byte remaining length)."""
    body = _mqtt_string(topic) + payload
    return bytes([0x30, len(body)]) + body


@pytest_twisted.ensureDeferred
async def test_acl_applies_to_anonymous_clients(tmp_path: Path, test_certs: TestCerts) -> None:
    """ACL lines before any 'user' line apply to anonymous clients: a denied topic is never delivered."""
    require_mosquitto()
    broker = PrivateBroker(tmp_path, certs=test_certs, reactor=_reactor(), acl="topic readwrite allowed/#\n")
    await broker.start()
    try:
        probe = await mqtt_session(broker.endpoint(), "acl-probe")
        probe.received = b""
        probe.transport.write(mqtt_subscribe(1, "#", qos=0))
        await until(lambda: len(probe.received) >= 5, what="SUBACK")
        assert probe.received == b"\x90\x03\x00\x01\x00"  # acl_file never refuses a SUBSCRIBE
        probe.received = b""
        probe.transport.write(mqtt_publish("denied/x", b"no"))
        probe.transport.write(mqtt_publish("allowed/x", b"yes"))
        expected = mqtt_publish("allowed/x", b"yes")
        await until(lambda: len(probe.received) >= len(expected), what="the allowed message")
        assert probe.received == expected
        probe.transport.loseConnection()
    finally:
        await broker.stop()


@pytest_twisted.ensureDeferred
async def test_deny_subscribe_gives_suback_failure(tmp_path: Path, test_certs: TestCerts) -> None:
    """deny_subscribe makes the broker answer SUBACK 0x80 for those filters, on both listeners."""
    require_mosquitto()
    broker = PrivateBroker(tmp_path, certs=test_certs, reactor=_reactor(), deny_subscribe=["denied/#"])
    await broker.start()
    try:
        for description in (broker.endpoint(), broker.endpoint(tls=True)):
            probe = await mqtt_session(description, "suback-probe")
            probe.received = b""
            probe.transport.write(mqtt_subscribe(1, "allowed/x"))
            probe.transport.write(mqtt_subscribe(2, "denied/x"))
            await until(lambda probe=probe: len(probe.received) >= 10, what="two SUBACKs")
            assert probe.received == b"\x90\x03\x00\x01\x01" + b"\x90\x03\x00\x02\x80"
            probe.transport.loseConnection()
    finally:
        await broker.stop()


def test_deny_subscribe_excludes_acl(tmp_path: Path, test_certs: TestCerts) -> None:
    """Combining deny_subscribe with acl is refused with BrokerStartError at start."""
    broker = PrivateBroker(tmp_path, certs=test_certs, reactor=_reactor(), acl="", deny_subscribe=["x"])
    failures: list[Any] = []
    broker.start().addErrback(failures.append)
    assert failures and failures[0].check(BrokerStartError)
    assert not broker.running


@pytest_twisted.ensureDeferred
async def test_paho_tls_acceptance(private_broker: PrivateBroker, test_certs: TestCerts) -> None:
    """A plain paho client connects over TLS with the generated client certificate and publishes/receives;
    a client certificate from another CA is refused."""
    import paho.mqtt.client as mqtt

    def paho_client(client_id: str, pair: Any, events: list[Any]) -> Any:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        client.tls_set(ca_certs=str(test_certs.ca.cert_path), certfile=str(pair.cert_path), keyfile=str(pair.key_path))
        client.on_connect = lambda c, u, flags, rc, props: events.append(("connect", rc.is_failure))
        client.on_subscribe = lambda c, u, mid, rcs, props: events.append(("suback", [r.value for r in rcs]))
        client.on_message = lambda c, u, msg: events.append(("message", msg.topic, msg.payload))
        client.on_disconnect = lambda c, u, flags, rc, props: events.append(("disconnect",))
        return client

    good_events: list[Any] = []
    good = paho_client("paho-good", test_certs.client, good_events)
    good.connect_async(private_broker.host, private_broker.tls_port)
    good.loop_start()
    try:
        await until(lambda: ("connect", False) in good_events, what="paho CONNACK")
        good.subscribe("acceptance/#", qos=1)
        await until(lambda: any(e[0] == "suback" for e in good_events), what="paho SUBACK")
        assert ("suback", [1]) in good_events
        good.publish("acceptance/hello", b"over tls", qos=1)
        await until(lambda: any(e[0] == "message" for e in good_events), what="paho message")
        assert ("message", "acceptance/hello", b"over tls") in good_events
    finally:
        good.disconnect()
        good.loop_stop()

    bad_events: list[Any] = []
    bad = paho_client("paho-bad", test_certs.other_client, bad_events)
    bad.connect_async(private_broker.host, private_broker.tls_port)
    bad.loop_start()
    try:
        await until(lambda: ("disconnect",) in bad_events, what="the refused client to be disconnected")
    finally:
        bad.loop_stop()
    assert not any(e[0] == "connect" for e in bad_events)
    await until(lambda: "certificate verify failed" in private_broker.log_path.read_text(), what="broker log")
