"""Tests of the ``gwproactor`` command line and its ``certs`` subcommand."""

from __future__ import annotations

import ipaddress
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString

from gwproactor.certs_cli import CertLayout, client_endpoint, mosquitto_tls_snippet
from gwproactor.cli import main
from gwproactor_test.broker import free_port
from gwproactor_test.plugin import require_mosquitto

# MQTT 3.1.1 CONNECT, clean session, keepalive 60 s, client id "cli-test"; CONNACK "accepted".
_CONNECT = b"\x10\x14\x00\x04MQTT\x04\x02\x00\x3c\x00\x08cli-test"
_CONNACK_ACCEPTED = b"\x20\x02\x00\x00"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _snippet(out: str) -> str:
    start = re.search(r"^listener ", out, flags=re.MULTILINE)
    assert start is not None, out
    return "\n".join(out[start.start():].splitlines()[:6])


def _endpoints(out: str) -> list[str]:
    return re.findall(r"^tls:\S+$", out, flags=re.MULTILINE)


@pytest.fixture
def issued(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[CertLayout, str]:
    code, out, err = _run(capsys, "certs", "all", str(tmp_path / "pki"), "--dns", "localhost", "--ip",
                          "127.0.0.1", "--client", "alice", "--client", "bob")
    assert (code, err) == (0, "")
    return CertLayout(tmp_path / "pki"), out


def test_all_writes_the_layout(issued: tuple[CertLayout, str]) -> None:
    """`certs all` writes CA, trust dir, broker and client files in the documented layout, keys mode 0600."""
    layout, _ = issued
    d = layout.directory
    files = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
    assert files == [
        "broker/broker.crt", "broker/broker.key", "ca/ca.crt", "ca/ca.key",
        "clients/alice/alice.crt", "clients/alice/alice.key", "clients/bob/bob.crt", "clients/bob/bob.key",
        "trust/ca.pem",
    ]
    for key in d.rglob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert (d / "trust/ca.pem").read_bytes() == (d / "ca/ca.crt").read_bytes()


def test_all_chains_verify(issued: tuple[CertLayout, str]) -> None:
    """The broker certificate verifies as a server for localhost and 127.0.0.1, each client as a client."""
    layout, _ = issued
    ca = _load(layout.ca.cert_path)
    assert _cn(ca) == "gwproactor-ca"
    builder = PolicyBuilder().store(Store([ca]))
    broker = _load(layout.broker.cert_path)
    for name in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        chain = builder.build_server_verifier(name).verify(broker, [])
        assert chain[-1] == ca
    for client in ("alice", "bob"):
        cert = _load(layout.client(client).cert_path)
        assert _cn(cert) == client
        # (cryptography's client verifier insists on a SubjectAltName, which OpenSSL/Mosquitto do not need)
        cert.verify_directly_issued_by(ca)
        assert cert.not_valid_after_utc <= ca.not_valid_after_utc
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_all_prints_snippet_and_endpoints(issued: tuple[CertLayout, str]) -> None:
    """`certs all` prints the mosquitto TLS listener and one tls: endpoint per client, with absolute paths."""
    layout, out = issued
    assert _snippet(out) == "\n".join([
        "listener 8883",
        f"cafile {layout.ca.cert_path}",
        f"certfile {layout.broker.cert_path}",
        f"keyfile {layout.broker.key_path}",
        "require_certificate true",
        "use_identity_as_username true",
    ])
    assert _snippet(out) == mosquitto_tls_snippet(layout)
    assert _endpoints(out) == [
        f"tls:host=localhost:port=8883:trustRoots={layout.trust_dir}"
        f":certificate={layout.client('alice').cert_path}:privateKey={layout.client('alice').key_path}",
        client_endpoint(layout, "bob", host="localhost"),
    ]
    assert str(layout.ca.cert_path) in out and layout.directory.is_absolute()


def test_all_reuses_the_ca(issued: tuple[CertLayout, str], capsys: pytest.CaptureFixture[str]) -> None:
    """A second `certs all` in the same directory keeps the CA and signs the new client with it."""
    layout, _ = issued
    before = layout.ca.cert_path.read_bytes()
    code, out, err = _run(capsys, "certs", "all", str(layout.directory), "--client", "carol", "--force")
    assert (code, err) == (0, "")
    assert "(reused)" in out
    assert layout.ca.cert_path.read_bytes() == before
    _load(layout.client("carol").cert_path).verify_directly_issued_by(_load(layout.ca.cert_path))


def test_all_refuses_to_overwrite(issued: tuple[CertLayout, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Without --force, `certs all` over existing broker/client files fails with status 1 and changes nothing."""
    layout, _ = issued
    snapshot = {p: p.read_bytes() for p in layout.directory.rglob("*") if p.is_file()}
    code, _, err = _run(capsys, "certs", "all", str(layout.directory), "--client", "dave")
    assert code == 1
    assert "already exists" in err and "--force" in err
    assert {p: p.read_bytes() for p in layout.directory.rglob("*") if p.is_file()} == snapshot


def test_step_by_step_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`certs ca`, `certs broker` and `certs client` build the same layout one piece at a time."""
    d = tmp_path / "pki"
    code, out, _ = _run(capsys, "certs", "ca", str(d), "--name", "Site CA")
    assert code == 0
    layout = CertLayout(d)
    assert _cn(_load(layout.ca.cert_path)) == "Site CA"
    code, out, _ = _run(capsys, "certs", "broker", str(d), "--dns", "mqtt.example", "--ip", "10.0.0.5",
                        "--port", "9883")
    assert code == 0
    assert _snippet(out) == mosquitto_tls_snippet(layout, port=9883)
    san = _load(layout.broker.cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mqtt.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    code, out, _ = _run(capsys, "certs", "client", str(d), "scada1", "--host", "mqtt.example", "--port", "9883")
    assert code == 0
    assert _endpoints(out) == [client_endpoint(layout, "scada1", host="mqtt.example", port=9883)]
    _load(layout.client("scada1").cert_path).verify_directly_issued_by(_load(layout.ca.cert_path))


def test_ca_refuses_existing_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`certs ca` refuses to replace an existing CA (status 1) and replaces it with --force."""
    d = str(tmp_path / "pki")
    assert _run(capsys, "certs", "ca", d)[0] == 0
    first = CertLayout(d).ca.cert_path.read_bytes()
    code, _, err = _run(capsys, "certs", "ca", d)
    assert code == 1 and "already exists" in err
    assert CertLayout(d).ca.cert_path.read_bytes() == first
    assert _run(capsys, "certs", "ca", d, "--force")[0] == 0
    assert CertLayout(d).ca.cert_path.read_bytes() != first
    assert CertLayout(d).trust_dir.joinpath("ca.pem").read_bytes() == CertLayout(d).ca.cert_path.read_bytes()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["certs", "broker", "{d}", "--dns", "localhost"], "no CA"),
        (["certs", "client", "{d}", "alice"], "no CA"),
        (["certs", "all", "{d}", "--client", "../evil"], "plain file name"),
        (["certs", "all", "{d}", "--client", "a", "--client", "a"], "given twice"),
        (["certs", "all", "{d}", "--ip", "not-an-ip"], "does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_errors_exit_1_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Bad requests exit with status 1 and a message on stderr naming the problem."""
    code, _, err = _run(capsys, *[a.format(d=tmp_path / "pki") for a in argv])
    assert code == 1
    assert err.startswith("gwproactor certs: error: ") and message in err


def test_broker_needs_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`certs broker` without --dns or --ip exits 1 and says what to pass."""
    d = str(tmp_path / "pki")
    _run(capsys, "certs", "ca", d)
    code, _, err = _run(capsys, "certs", "broker", d)
    assert code == 1 and "--dns NAME or --ip ADDRESS" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse usage errors (unknown command, bad --days) exit with status 2."""
    for argv in (["nonsense"], ["certs"], ["certs", "ca", "x", "--days", "0"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    capsys.readouterr()


def test_version_and_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    """`version` prints the package version; `demo` and `run` are wired (their --help exits 0)."""
    from gwproactor import __version__

    assert _run(capsys, "version") == (0, f"gwproactor {__version__}\n", "")
    for name in ("demo", "run"):
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert name in capsys.readouterr().out


def test_run_without_app_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`gwproactor run` without --app is a usage error (exit 2) naming the option."""
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2
    assert "--app" in capsys.readouterr().err


def test_store_subcommand_is_wired(capsys: pytest.CaptureFixture[str]) -> None:
    """`gwproactor store --help` reaches the store tools' parser."""
    pytest.importorskip("gwproactor.store.cli")
    with pytest.raises(SystemExit) as info:
        main(["store", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "inspect" in out and "verify" in out and "export" in out


def test_console_script_module(tmp_path: Path) -> None:
    """`python -m gwproactor.cli certs all` works as a separate process."""
    result = subprocess.run(
        [sys.executable, "-m", "gwproactor.cli", "certs", "all", str(tmp_path / "pki"), "--client", "x"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "use_identity_as_username true" in result.stdout


# --------------------------------------------------------------------------- live: a real Mosquitto


class _MQTTConnect(protocol.Protocol):
    """Sends an MQTT CONNECT; ``done`` fires with the bytes received when 4 arrived or the connection ended."""

    def __init__(self) -> None:
        self.done: Deferred[bytes] = Deferred()
        self.data = b""

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        self.transport.write(_CONNECT)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        self.data += data
        if len(self.data) >= 4 and not self.done.called:
            self.done.callback(self.data)
            self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 - Twisted API
        if not self.done.called:
            self.done.callback(self.data)


async def _try_connect(reactor: Any, endpoint: str) -> bytes:
    proto = _MQTTConnect()
    try:
        await clientFromString(reactor, endpoint).connect(protocol.Factory.forProtocol(lambda: proto))
    except Exception:
        return b""
    return await proto.done.addTimeout(30, reactor)


class _Mosquitto(protocol.ProcessProtocol):
    """A Mosquitto process whose output is kept in ``log``; ``ended`` fires when it exits."""

    def __init__(self) -> None:
        self.log = b""
        self.ended: Deferred[None] = Deferred()

    def childDataReceived(self, childFD: int, data: bytes) -> None:  # noqa: N802, N803 - Twisted API
        self.log += data

    def processEnded(self, reason: Any) -> None:  # noqa: N802 - Twisted API
        self.ended.callback(None)


async def _wait_for(reactor: Any, condition: Any, timeout: float = 30.0) -> bool:
    from twisted.internet import task

    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() >= deadline:
            return False
        await task.deferLater(reactor, 0.05, lambda: None)
    return True


@pytest.mark.live
@pytest_twisted.ensureDeferred
async def test_mosquitto_accepts_printed_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mosquitto running only the printed listener accepts the printed endpoint's client, refuses another CA's."""
    import os

    from twisted.internet import reactor

    mosquitto = require_mosquitto()
    port = free_port()
    code, out, _ = _run(capsys, "certs", "all", str(tmp_path / "pki"), "--dns", "localhost", "--ip", "127.0.0.1",
                        "--client", "alice", "--port", str(port), "--host", "127.0.0.1")
    assert code == 0
    assert _run(capsys, "certs", "all", str(tmp_path / "other"), "--client", "mallory")[0] == 0
    config = [
        _snippet(out).replace(f"listener {port}", f"listener {port} 127.0.0.1"),
        "log_dest stderr",
        "log_type all",
        "connection_messages true",
        "persistence false",
    ]
    if os.geteuid() == 0:
        config.append("user root")  # stay root so the 0600 broker key stays readable
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("\n".join(config) + "\n")
    proc = _Mosquitto()
    transport = reactor.spawnProcess(proc, mosquitto, [mosquitto, "-c", str(conf)], env=dict(os.environ),
                                     path=str(tmp_path), childFDs={0: "w", 1: "r", 2: "r"})
    try:
        assert await _wait_for(reactor, lambda: b" running" in proc.log or proc.ended.called), proc.log
        assert not proc.ended.called, proc.log
        [endpoint] = _endpoints(out)
        assert await _try_connect(reactor, endpoint) == _CONNACK_ACCEPTED, proc.log
        assert await _wait_for(reactor, lambda: b"u'alice'" in proc.log), proc.log
        # A certificate from another CA: the client trusts our broker, but the broker must refuse the client.
        layout, other = CertLayout(tmp_path / "pki"), CertLayout(tmp_path / "other")
        foreign = endpoint.replace(str(layout.client("alice").cert_path), str(other.client("mallory").cert_path))
        foreign = foreign.replace(str(layout.client("alice").key_path), str(other.client("mallory").key_path))
        assert "mallory" in foreign
        assert await _try_connect(reactor, foreign) != _CONNACK_ACCEPTED
        assert b"mallory" not in proc.log
    finally:
        if not proc.ended.called:
            transport.signalProcess("TERM")
            await proc.ended.addTimeout(30, reactor)
