"""Tests of gwproactor.certs (generated CAs, server and client certificates) and the gwproactor_test.certs set."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import gwproactor.certs
import gwproactor_test.certs
from gwproactor.certs import CertPair, make_ca, make_cert
from gwproactor_test.certs import TestCerts, make_test_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_test_certs(tmp_path_factory.mktemp("certs"))


def _cert(pair: CertPair) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair.cert_path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_ca_is_self_signed_ca(certs: TestCerts) -> None:
    """make_ca writes a self-signed CA certificate with BasicConstraints ca=True."""
    ca = _cert(certs.ca)
    ca.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert _cn(ca) == "ca"


def test_broker_and_client_chain_to_ca(certs: TestCerts) -> None:
    """The broker and client certificates are signed by the test CA, the other client by the other CA only."""
    ca, other_ca = _cert(certs.ca), _cert(certs.other_ca)
    _cert(certs.broker).verify_directly_issued_by(ca)
    _cert(certs.client).verify_directly_issued_by(ca)
    _cert(certs.other_client).verify_directly_issued_by(other_ca)
    with pytest.raises(ValueError, match="issuer"):  # the other CA's name is not this CA's
        _cert(certs.other_client).verify_directly_issued_by(ca)


def test_chain_verifies_with_policy_builder(certs: TestCerts) -> None:
    """The broker certificate verifies as a server for 127.0.0.1 and localhost against the CA store."""
    from cryptography.x509.verification import PolicyBuilder, Store

    store = Store([_cert(certs.ca)])
    for subject in (x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")):
        verifier = PolicyBuilder().store(store).build_server_verifier(subject)
        chain = verifier.verify(_cert(certs.broker), [])
        assert chain[-1] == _cert(certs.ca)


def test_broker_sans_and_server_eku(certs: TestCerts) -> None:
    """The broker certificate names DNS localhost and IP 127.0.0.1 and has the serverAuth usage."""
    broker = _cert(certs.broker)
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert _eku(broker) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert _cn(broker) == "broker"


def test_client_eku_and_cn(certs: TestCerts) -> None:
    """Client certificates carry the clientAuth usage and CN = their name."""
    for pair, name in ((certs.client, "client"), (certs.other_client, "other_client")):
        cert = _cert(pair)
        assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert _cn(cert) == name
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_keys_are_p256_unencrypted_and_private(certs: TestCerts) -> None:
    """Every key is an unencrypted EC P-256 PEM file readable by its owner only, matching its certificate."""
    for pair in (certs.ca, certs.broker, certs.client, certs.other_ca, certs.other_client):
        assert stat.S_IMODE(pair.key_path.stat().st_mode) == 0o600
        key = serialization.load_pem_private_key(pair.key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert isinstance(key.curve, ec.SECP256R1)
        assert key.public_key() == _cert(pair).public_key()


def test_trust_dir_holds_only_the_ca(certs: TestCerts) -> None:
    """The trust directory holds the CA certificate alone, as ca.pem."""
    assert [p.name for p in certs.trust_dir.iterdir()] == ["ca.pem"]
    assert (certs.trust_dir / "ca.pem").read_bytes() == certs.ca.cert_path.read_bytes()


def test_validity_days(tmp_path: Path) -> None:
    """validity_days sets the lifetime; a leaf never outlives its CA."""
    ca = make_ca(tmp_path, "short_ca", validity_days=2)
    leaf = make_cert(ca, tmp_path, "leaf", server=False, validity_days=30)
    ca_cert, leaf_cert = _cert(ca), _cert(leaf)
    lifetime = ca_cert.not_valid_after_utc - ca_cert.not_valid_before_utc
    assert 2 * 86400 <= lifetime.total_seconds() <= 2 * 86400 + 600
    assert leaf_cert.not_valid_after_utc <= ca_cert.not_valid_after_utc


def test_bad_input_raises(tmp_path: Path) -> None:
    """Bad names, IPs, validity or a server certificate without SANs raise ValueError."""
    ca = make_ca(tmp_path, "ca")
    with pytest.raises(ValueError):
        make_ca(tmp_path, "../escape")
    with pytest.raises(ValueError):
        make_ca(tmp_path, "ca2", validity_days=0)
    with pytest.raises(ValueError):
        make_cert(ca, tmp_path, "s", ips=("not-an-ip",), server=True)
    with pytest.raises(ValueError):
        make_cert(ca, tmp_path, "s", server=True)


def test_regenerating_overwrites(tmp_path: Path) -> None:
    """Generating into the same directory again replaces the files and keeps key permissions."""
    first = make_ca(tmp_path, "ca")
    before = first.cert_path.read_bytes()
    second = make_ca(tmp_path, "ca")
    assert second == first
    assert second.cert_path.read_bytes() != before
    assert stat.S_IMODE(second.key_path.stat().st_mode) == 0o600


def test_gwproactor_test_certs_re_exports_the_library_functions() -> None:
    """The names that moved to gwproactor.certs are still importable, as the same objects, from gwproactor_test.certs."""
    for name in gwproactor.certs.__all__:
        assert getattr(gwproactor_test.certs, name) is getattr(gwproactor.certs, name)
        assert name in gwproactor_test.certs.__all__
