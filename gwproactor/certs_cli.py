"""``gwproactor certs``: create a certificate authority, a broker certificate and client certificates for MQTT over TLS.

The files go into one directory with a fixed layout (see :class:`CertLayout`); the command prints where they are,
a matching Mosquitto TLS listener and the Twisted ``tls:`` endpoint string a client uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from gwproactor.certs import DEFAULT_VALIDITY_DAYS, CertPair, make_ca, make_cert, write_trust_dir
from gwproactor.errors import CertsError  # noqa: F401 (re-exported)

__all__ = [
    "DEFAULT_CA_NAME",
    "DEFAULT_TLS_PORT",
    "CertLayout",
    "CertsError",
    "add_certs_subcommands",
    "client_endpoint",
    "issue_broker",
    "issue_client",
    "main",
    "mosquitto_tls_snippet",
    "open_or_create_ca",
]

DEFAULT_TLS_PORT = 8883
"""The port of the printed Mosquitto TLS listener and endpoint strings, unless told otherwise."""

_DESCRIPTION = (
    "Create a certificate authority, a broker certificate and client certificates for MQTT over TLS, "
    "and print a matching mosquitto.conf listener and Twisted tls: endpoint strings."
)

DEFAULT_CA_NAME = "gwproactor-ca"
"""Common name of a new certificate authority, unless told otherwise."""


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(path).absolute()


@attrs.frozen
class CertLayout:
    """Where ``gwproactor certs`` puts each file under one directory.

    ::

        DIR/ca/ca.crt, DIR/ca/ca.key                 the certificate authority
        DIR/trust/ca.pem                             copy of the CA certificate (Twisted ``trustRoots=``)
        DIR/broker/broker.crt, DIR/broker/broker.key the broker (server) certificate
        DIR/clients/NAME/NAME.crt, .../NAME.key      one directory per client certificate

    :ivar directory: the top directory (absolute).
    """

    directory: Path = attrs.field(converter=_absolute)

    @property
    def ca_dir(self) -> Path:
        """Directory of the CA certificate and key."""
        return self.directory / "ca"

    @property
    def ca(self) -> CertPair:
        """The CA certificate and key."""
        return CertPair(cert_path=self.ca_dir / "ca.crt", key_path=self.ca_dir / "ca.key")

    @property
    def trust_dir(self) -> Path:
        """Directory holding only the CA certificate as ``ca.pem``."""
        return self.directory / "trust"

    @property
    def broker_dir(self) -> Path:
        """Directory of the broker certificate and key."""
        return self.directory / "broker"

    @property
    def broker(self) -> CertPair:
        """The broker certificate and key."""
        return CertPair(cert_path=self.broker_dir / "broker.crt", key_path=self.broker_dir / "broker.key")

    def client_dir(self, name: str) -> Path:
        """Directory of the client certificate ``name``."""
        return self.directory / "clients" / name

    def client(self, name: str) -> CertPair:
        """The certificate and key of client ``name``."""
        d = self.client_dir(name)
        return CertPair(cert_path=d / f"{name}.crt", key_path=d / f"{name}.key")


def _exists(pair: CertPair) -> bool:
    return pair.cert_path.exists() or pair.key_path.exists()


def _check_name(name: str, what: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith(".") or name.strip() != name:
        raise CertsError(f"{what} name must be a plain file name without '/' or a leading '.', got {name!r}")


def _replace(pair: CertPair, target: CertPair) -> CertPair:
    if pair != target:
        pair.key_path.replace(target.key_path)
        pair.cert_path.replace(target.cert_path)
    return target


def open_or_create_ca(
    layout: CertLayout,
    *,
    name: str = DEFAULT_CA_NAME,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
    force: bool = False,
) -> tuple[CertPair, bool]:
    """Return the CA of ``layout``, creating it (and the trust directory) if it does not exist.

    :param layout: where the files live.
    :param name: common name of a new CA (ignored when an existing CA is reused).
    :param validity_days: validity of a new CA.
    :param force: create a new CA even if one exists (certificates signed by the old one stop being trusted).
    :return: the CA files and ``True`` if they were created, ``False`` if reused.
    :raises CertsError: if only one of the CA certificate and key exists.
    """
    _check_name(name, "CA")
    target = layout.ca
    if not force and target.cert_path.exists() and target.key_path.exists():
        write_trust_dir(target, layout.trust_dir)
        return target, False
    if not force and _exists(target):
        raise CertsError(
            f"{target.cert_path} or {target.key_path} is missing while the other exists; "
            "restore it, or pass --force to create a new CA"
        )
    layout.ca_dir.mkdir(parents=True, exist_ok=True)
    for path in (target.cert_path, target.key_path):
        path.unlink(missing_ok=True)
    pair = _replace(make_ca(layout.ca_dir, name, validity_days=validity_days), target)
    write_trust_dir(pair, layout.trust_dir)
    return pair, True


def _require_ca(layout: CertLayout) -> CertPair:
    ca = layout.ca
    if not (ca.cert_path.exists() and ca.key_path.exists()):
        raise CertsError(
            f"no CA in {layout.ca_dir}: create one first with `gwproactor certs ca {layout.directory}` "
            f"(or use `gwproactor certs all`)"
        )
    return ca


def issue_broker(
    layout: CertLayout,
    *,
    dns: Iterable[str] = (),
    ips: Iterable[str] = (),
    name: str = "broker",
    validity_days: int = DEFAULT_VALIDITY_DAYS,
    force: bool = False,
) -> CertPair:
    """Issue the broker (server) certificate, signed by the layout's CA.

    :param dns: DNS names the broker is reached by (SubjectAltName); clients check the host they dial against them.
    :param ips: IP addresses the broker is reached by (SubjectAltName).
    :param name: the certificate's common name.
    :param force: replace an existing broker certificate.
    :raises CertsError: if there is no CA, the certificate exists and ``force`` is false, no DNS name or IP was
        given, or an IP address is malformed.
    """
    _check_name(name, "broker")
    dns, ips = list(dns), list(ips)
    if not dns and not ips:
        raise CertsError("a broker certificate needs at least one --dns NAME or --ip ADDRESS")
    ca = _require_ca(layout)
    target = layout.broker
    if _exists(target) and not force:
        raise CertsError(f"{target.cert_path} already exists; pass --force to replace it")
    layout.broker_dir.mkdir(parents=True, exist_ok=True)
    try:
        pair = make_cert(ca, layout.broker_dir, name, dns=dns, ips=ips, server=True, validity_days=validity_days)
    except ValueError as e:
        raise CertsError(str(e)) from e
    return _replace(pair, target)


def issue_client(
    layout: CertLayout,
    name: str,
    *,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
    force: bool = False,
) -> CertPair:
    """Issue a client certificate with common name ``name``, signed by the layout's CA.

    With Mosquitto's ``use_identity_as_username true`` the common name is the client's MQTT user name.

    :raises CertsError: if there is no CA, the name is not a plain file name, or the certificate exists and
        ``force`` is false.
    """
    _check_name(name, "client")
    ca = _require_ca(layout)
    target = layout.client(name)
    if _exists(target) and not force:
        raise CertsError(f"{target.cert_path} already exists; pass --force to replace it")
    directory = layout.client_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return make_cert(ca, directory, name, server=False, validity_days=validity_days)
    except ValueError as e:
        raise CertsError(str(e)) from e


def mosquitto_tls_snippet(layout: CertLayout, *, port: int = DEFAULT_TLS_PORT) -> str:
    """Return a ``mosquitto.conf`` TLS listener that requires client certificates signed by the layout's CA.

    Each client's certificate common name becomes its MQTT user name (``use_identity_as_username``).
    """
    return "\n".join(
        [
            f"listener {port}",
            f"cafile {layout.ca.cert_path}",
            f"certfile {layout.broker.cert_path}",
            f"keyfile {layout.broker.key_path}",
            "require_certificate true",
            "use_identity_as_username true",
        ]
    )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def client_endpoint(layout: CertLayout, client: str, *, host: str, port: int = DEFAULT_TLS_PORT) -> str:
    """Return the Twisted ``tls:`` client endpoint string for client ``client`` dialing ``host:port``.

    ``host`` must be one of the broker certificate's DNS names or IP addresses: Twisted checks it.
    """
    pair = layout.client(client)
    return (
        f"tls:host={_escape(host)}:port={port}"
        f":trustRoots={_escape(str(layout.trust_dir))}"
        f":certificate={_escape(str(pair.cert_path))}"
        f":privateKey={_escape(str(pair.key_path))}"
    )


# --------------------------------------------------------------------------- command line


def _days(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of days, got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return value


def add_certs_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``certs`` with its ``ca`` / ``broker`` / ``client`` / ``all`` subcommands to an argparse ``subparsers``.

    Each leaf parser sets ``func``; run it as ``args.func(args)`` (returns the exit status).
    """
    certs = subparsers.add_parser(
        "certs",
        help="create a CA, broker and client certificates for MQTT over TLS",
        description=_DESCRIPTION,
    )
    _add_commands(certs.add_subparsers(dest="certs_command", required=True, metavar="COMMAND"))
    return certs


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", type=Path, metavar="DIR", help="the certificate directory (created if missing)")
    p.add_argument("--days", type=_days, default=DEFAULT_VALIDITY_DAYS,
                   help=f"validity of new certificates in days (default {DEFAULT_VALIDITY_DAYS})")
    p.add_argument("--force", action="store_true", help="replace existing files instead of refusing")


def _add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ca", help="create the certificate authority", description="Create DIR/ca/ca.crt and ca.key.")
    _common(p)
    p.add_argument("--name", default=DEFAULT_CA_NAME, help=f"CA common name (default {DEFAULT_CA_NAME})")
    p.set_defaults(func=cmd_ca)

    p = sub.add_parser("broker", help="create the broker certificate",
                       description="Create DIR/broker/broker.crt and broker.key, signed by DIR's CA.")
    _common(p)
    _broker_args(p, required=True)
    p.add_argument("--name", default="broker", help="broker certificate common name (default broker)")
    p.add_argument("--port", type=_port, default=DEFAULT_TLS_PORT, help="listener port in the printed snippet")
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("client", help="create a client certificate",
                       description="Create DIR/clients/NAME/NAME.crt and NAME.key, signed by DIR's CA.")
    _common(p)
    p.add_argument("name", help="client common name (the MQTT user name with use_identity_as_username)")
    p.add_argument("--host", default="localhost", help="broker host in the printed endpoint (default localhost)")
    p.add_argument("--port", type=_port, default=DEFAULT_TLS_PORT, help="broker port in the printed endpoint")
    p.set_defaults(func=cmd_client)

    p = sub.add_parser("all", help="create (or reuse) the CA, then the broker and client certificates",
                       description="Create or reuse DIR's CA, then issue the broker and client certificates.")
    _common(p)
    _broker_args(p, required=False)
    p.add_argument("--client", dest="clients", action="append", default=[], metavar="NAME",
                   help="issue a client certificate NAME (repeatable)")
    p.add_argument("--ca-name", default=DEFAULT_CA_NAME, help=f"common name of a new CA (default {DEFAULT_CA_NAME})")
    p.add_argument("--host", default=None, help="broker host in the printed endpoints (default: first --dns, "
                                                 "else first --ip)")
    p.add_argument("--port", type=_port, default=DEFAULT_TLS_PORT, help="listener port in the printed snippet "
                                                                          f"and endpoints (default {DEFAULT_TLS_PORT})")
    p.set_defaults(func=cmd_all)


def _broker_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    note = "" if required else " (default: localhost and 127.0.0.1 when neither --dns nor --ip is given)"
    p.add_argument("--dns", action="append", default=[], metavar="NAME",
                   help="a DNS name of the broker (repeatable)" + note)
    p.add_argument("--ip", dest="ips", action="append", default=[], metavar="ADDRESS",
                   help="an IP address of the broker (repeatable)")


def _show(label: str, pair: CertPair, note: str = "") -> None:
    print(f"{label}: {pair.cert_path}")
    print(f"{' ' * len(label)}  key {pair.key_path}{note}")


def _print_snippet(layout: CertLayout, port: int) -> None:
    print()
    print("# mosquitto.conf: TLS listener requiring client certificates from this CA")
    print("# (the broker key must be readable by the user mosquitto runs as)")
    print(mosquitto_tls_snippet(layout, port=port))


def _print_endpoint(layout: CertLayout, client: str, host: str, port: int) -> None:
    print()
    print(f"# Twisted client endpoint for {client}")
    print(client_endpoint(layout, client, host=host, port=port))


def cmd_ca(args: argparse.Namespace) -> int:
    """Run ``gwproactor certs ca``."""
    layout = CertLayout(args.directory)
    if not args.force and _exists(layout.ca):
        raise CertsError(f"{layout.ca.cert_path} already exists; pass --force to replace it "
                         "(certificates it signed would no longer be trusted)")
    ca, _ = open_or_create_ca(layout, name=args.name, validity_days=args.days, force=True)
    _show("CA", ca, " (keep it secret; it signs every certificate)")
    print(f"trust directory (tls: trustRoots=): {layout.trust_dir}")
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    """Run ``gwproactor certs broker``."""
    layout = CertLayout(args.directory)
    pair = issue_broker(layout, dns=args.dns, ips=args.ips, name=args.name, validity_days=args.days,
                        force=args.force)
    _show("broker", pair, f" (DNS {', '.join(args.dns) or '-'}; IP {', '.join(args.ips) or '-'})")
    _print_snippet(layout, args.port)
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    """Run ``gwproactor certs client``."""
    layout = CertLayout(args.directory)
    pair = issue_client(layout, args.name, validity_days=args.days, force=args.force)
    _show(f"client {args.name}", pair)
    _print_endpoint(layout, args.name, args.host, args.port)
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    """Run ``gwproactor certs all``."""
    layout = CertLayout(args.directory)
    dns, ips = list(args.dns), list(args.ips)
    if not dns and not ips:
        dns, ips = ["localhost"], ["127.0.0.1"]
    for name in args.clients:
        _check_name(name, "client")
    if len(set(args.clients)) != len(args.clients):
        raise CertsError(f"a client name is given twice: {args.clients}")
    # Refuse before writing anything, so a failed run leaves the directory as it was.
    if not args.force:
        for pair in [layout.broker] + [layout.client(n) for n in args.clients]:
            if _exists(pair):
                raise CertsError(f"{pair.cert_path} already exists; pass --force to replace the broker and "
                                 "client certificates (the CA is always reused)")
    ca, created = open_or_create_ca(layout, name=args.ca_name, validity_days=args.days)
    _show("CA", ca, " (created)" if created else " (reused)")
    print(f"trust directory (tls: trustRoots=): {layout.trust_dir}")
    broker = issue_broker(layout, dns=dns, ips=ips, validity_days=args.days, force=True)
    _show("broker", broker, f" (DNS {', '.join(dns) or '-'}; IP {', '.join(ips) or '-'})")
    for name in args.clients:
        _show(f"client {name}", issue_client(layout, name, validity_days=args.days, force=True))
    _print_snippet(layout, args.port)
    host = args.host or (dns[0] if dns else ips[0])
    for name in args.clients:
        _print_endpoint(layout, name, host, args.port)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``certs`` command, turning :class:`CertsError` into a message and exit status 1."""
    try:
        return args.func(args)
    except CertsError as e:
        print(f"gwproactor certs: error: {e}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``certs`` command (standalone: ``python -m gwproactor.certs_cli all DIR``); return the exit status."""
    parser = argparse.ArgumentParser(prog="gwproactor certs", description=_DESCRIPTION)
    _add_commands(parser.add_subparsers(dest="certs_command", required=True, metavar="COMMAND"))
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
