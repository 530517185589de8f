"""Certificate authorities and server/client certificates for MQTT over TLS (``gwproactor certs`` and the tests).

Keys are EC P-256, written as unencrypted PEM with mode 0600; certificates are PEM.  The live-test certificate
set (:func:`gwproactor_test.certs.make_test_certs`) is built from these functions.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEFAULT_VALIDITY_DAYS",
    "CertPair",
    "make_ca",
    "make_cert",
    "write_trust_dir",
]

DEFAULT_VALIDITY_DAYS = 3650
"""Validity of generated certificates, in days, unless told otherwise."""

_BACKDATE = datetime.timedelta(minutes=5)


@attrs.frozen
class CertPair:
    """A PEM certificate file and the PEM file of its private key.

    :ivar cert_path: path of the PEM certificate.
    :ivar key_path: path of the unencrypted PEM private key (mode 0600).
    """

    cert_path: Path
    key_path: Path

    def load_cert(self) -> x509.Certificate:
        """Read and parse the certificate."""
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    if days <= 0:
        raise ValueError(f"validity_days must be positive, got {days!r}")
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - _BACKDATE, now + datetime.timedelta(days=days)


def _paths(directory: Path, name: str) -> CertPair:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"certificate name must be a plain file stem, got {name!r}")
    return CertPair(cert_path=directory / f"{name}.crt", key_path=directory / f"{name}.key")


def make_ca(
    directory: Path,
    name: str,
    *,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
) -> CertPair:
    """Create a self-signed certificate authority.

    Writes ``<directory>/<name>.crt`` and ``<directory>/<name>.key`` (creating ``directory`` if needed).

    :param directory: where to write the files.
    :param name: file stem and certificate common name.
    :param validity_days: how long the certificate is valid.
    :return: the paths of the written files.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pair = _paths(directory, name)
    key = _new_key()
    not_before, not_after = _validity(validity_days)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key, pair.key_path)
    _write_cert(cert, pair.cert_path)
    return pair


def make_cert(
    ca: CertPair,
    directory: Path,
    name: str,
    *,
    dns: Iterable[str] = (),
    ips: Iterable[str] = (),
    server: bool,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
) -> CertPair:
    """Create a certificate signed by ``ca``.

    Writes ``<directory>/<name>.crt`` and ``<directory>/<name>.key``. The common name is ``name``.

    :param ca: the signing authority (as returned by :func:`make_ca`).
    :param directory: where to write the files.
    :param name: file stem and common name.
    :param dns: DNS names for the SubjectAltName extension.
    :param ips: IP addresses (strings) for the SubjectAltName extension.
    :param server: ``True`` for a server certificate (extended key usage serverAuth),
        ``False`` for a client certificate (clientAuth).
    :param validity_days: how long the certificate is valid.
    :return: the paths of the written files.
    :raises ValueError: if an entry of ``ips`` is not an IP address, or a server certificate has no SAN.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pair = _paths(directory, name)
    ca_cert = ca.load_cert()
    ca_key = serialization.load_pem_private_key(ca.key_path.read_bytes(), password=None)
    alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if server and not alt_names:
        raise ValueError("a server certificate needs at least one DNS name or IP address")
    key = _new_key()
    not_before, not_after = _validity(validity_days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_after, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    _write_key(key, pair.key_path)
    _write_cert(cert, pair.cert_path)
    return pair


def write_trust_dir(ca: CertPair, directory: Path) -> Path:
    """Copy ``ca``'s certificate to ``<directory>/ca.pem`` and return ``directory``.

    Twisted's ``tls:`` client endpoint loads every ``*.pem`` file of its ``trustRoots=`` directory, so that
    directory must hold certificates only.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca.cert_path, directory / "ca.pem")
    return directory
