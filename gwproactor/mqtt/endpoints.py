"""A broker's client endpoint: checked without connecting (:func:`endpoint_problems`) and built
(:func:`make_client_endpoint`).

:func:`endpoint_problems` reads the string the way :func:`twisted.internet.endpoints.clientFromString` does
(``type:arg:key=value``, ``\\`` escapes the next character), checks what the ``tcp``, ``tls``, ``ssl`` and
``unix`` parsers need (the type, host, port, numbers, known parameter names) and that every certificate,
key and trust directory it names is readable; then it builds the endpoint (which reads and parses those
files, and nothing else: no socket, no name resolution).  Each problem is one sentence saying what is wrong
and what to do.

:func:`make_client_endpoint` builds what a :class:`~gwproactor.mqtt.BrokerConnection` connects with, from an
endpoint string or from a host, port and TLS options; it reads the certificate files, so it runs before the
reactor does (``prepare_endpoint``) or in a thread.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

import attrs

from gwproactor.errors import ConfigError

__all__ = ["TLSOptions", "endpoint_problems", "make_client_endpoint", "split_endpoint"]

#: Parameters of the client endpoint types gwproactor knows, in their positional order first.
_PARAMETERS: dict[str, tuple[str, ...]] = {
    "tcp": ("host", "port", "timeout", "bindAddress"),
    "ssl": ("host", "port", "timeout", "bindAddress", "certKey", "privateKey", "caCertsDir", "hostname"),
    "tls": ("host", "port", "timeout", "bindAddress", "certificate", "privateKey", "trustRoots", "endpoint"),
    "unix": ("path", "timeout", "lockfile"),
}
_REQUIRED = {"tcp": ("host", "port"), "ssl": ("host", "port"), "tls": ("host", "port"), "unix": ("path",)}
#: How many positional arguments each type takes (``tcp:host:port``; ``tls`` maps them in parameter order).
_POSITIONAL = {"tcp": 2, "ssl": 2, "tls": 8, "unix": 1}
_INTEGERS = ("port", "timeout", "lockfile")
#: Parameters naming files (the client certificate, its key) and directories of ``*.pem`` CA certificates.
_FILES = {
    "tls": {"certificate": "client certificate", "privateKey": "private key"},
    "ssl": {"certKey": "client certificate", "privateKey": "private key"},
}
_DIRECTORIES = {"tls": "trustRoots", "ssl": "caCertsDir"}
_EXAMPLE = "'tls:host=mqtt.example.com:port=8883:trustRoots=/etc/scada/pki/trust' or 'tcp:host=127.0.0.1:port=1883'"



@attrs.define(frozen=True)
class TLSOptions:
    """TLS settings of a broker connection given by host and port.

    :param ca_file: PEM file of the CA that signed the broker's certificate
        (``None``: the platform's trust store).
    :param cert_file: PEM client certificate (mutual TLS), with ``key_file``.
    :param key_file: PEM private key of ``cert_file``.
    :param check_hostname: verify that the broker's certificate names the host
        (``hostname`` or the connection's ``host``).  Turning it off still
        verifies the certificate chain.
    :param hostname: the name to check instead of the connection's host.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True
    hostname: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("TLSOptions: cert_file and key_file go together (give both or neither)")


def split_endpoint(description: str) -> tuple[list[str], dict[str, str]]:
    """Split an endpoint string into positional and ``key=value`` arguments, as ``clientFromString`` does.

    ``:`` separates arguments, the first ``=`` of an argument separates its key, and ``\\`` makes the next
    character literal.  The first positional argument is the endpoint type.
    """
    args: list[str] = []
    kwargs: dict[str, str] = {}
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in description:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
            _add(parts, args, kwargs)
            parts = []
        elif char == "=" and not parts:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    _add(parts, args, kwargs)
    return args, kwargs


def _add(parts: list[str], args: list[str], kwargs: dict[str, str]) -> None:
    if len(parts) == 1:
        args.append(parts[0])
    else:
        kwargs[parts[0]] = parts[1]


def endpoint_problems(description: str, reactor: Any = None) -> list[str]:
    """What is wrong with the client endpoint string ``description`` (an empty list when it can be used).

    :param reactor: the reactor the endpoint would be built for (only stored by the endpoint; default: the
        global reactor).  With ``reactor=False`` the endpoint is not built (the structure and the files named
        in it are still checked).
    """
    args, kwargs = split_endpoint(description)
    kind = args.pop(0).strip().lower() if args and args[0].strip() else ""
    if not kind:
        return [f"no endpoint type; it starts with the type, e.g. {_EXAMPLE}"]
    if kind not in _PARAMETERS:
        return _other_type(kind, description, reactor)
    named = _named(kind, args, kwargs)
    problems = _structure(kind, args, kwargs) + _files(kind, named)
    if kind == "tls" and "endpoint" in named:
        problems += [f"in endpoint={named['endpoint']!r}: {p}" for p in endpoint_problems(named["endpoint"], False)]
    if problems or reactor is False:
        return problems
    problems = _build(description, reactor)
    return (_pem_problems(kind, named) or problems) if problems else []


def _structure(kind: str, args: list[str], kwargs: dict[str, str]) -> list[str]:
    known = _PARAMETERS[kind]
    problems = []
    for key in kwargs:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1) or [k for k in known if k.lower() == key.lower()]
            hint = f"; did you mean {close[0]}=?" if close else f"; a {kind}: endpoint takes {', '.join(known)}"
            problems.append(f"unknown parameter {key}={kwargs[key]!r}{hint}")
    if len(args) > _POSITIONAL[kind]:
        problems.append(f"too many ':'-separated values ({len(args)} besides the type); name them as key=value")
    named = _named(kind, args, kwargs)
    for key in _REQUIRED[kind]:
        if not named.get(key, "").strip():
            problems.append(f"no {key}; a {kind}: endpoint needs " + " and ".join(f"{k}=..." for k in _REQUIRED[kind]))
    for key in _INTEGERS:
        if key in named and named[key].strip():
            try:
                value = int(named[key])
            except ValueError:
                what = "the broker's TCP port, e.g. port=1883" if key == "port" else "a whole number"
                problems.append(f"{key}={named[key]!r} is not a whole number ({what})")
                continue
            if key == "port" and not 1 <= value <= 65535:
                problems.append(f"port={value} must be from 1 to 65535")
            if key == "timeout" and value <= 0:
                problems.append(f"timeout={value} must be greater than 0 (seconds)")
    return problems


def _named(kind: str, args: list[str], kwargs: dict[str, str]) -> dict[str, str]:
    """The arguments by name, positional ones mapped as the ``kind`` parser maps them."""
    named = dict(kwargs)
    if kind in ("tcp", "ssl") and len(args) == 1 and "host" in kwargs:
        named["port"] = args[0]  # tcp:host=h:1883
        return named
    for key, value in zip(_PARAMETERS[kind][: _POSITIONAL[kind]], args, strict=False):
        named.setdefault(key, value)
    return named


def _files(kind: str, named: dict[str, str]) -> list[str]:
    problems = []
    for key, what in _FILES.get(kind, {}).items():
        if key in named:
            problem = _file_problem(named[key], what)
            if problem:
                problems.append(f"{key}={named[key]}: {problem}")
    dir_key = _DIRECTORIES.get(kind)
    if dir_key is not None and dir_key in named:
        problem = _trust_dir_problem(named[dir_key])
        if problem:
            problems.append(f"{dir_key}={named[dir_key]}: {problem}")
    if kind == "ssl" and "privateKey" in named and "certKey" not in named:
        problems.append("privateKey= needs certKey= (the client certificate it belongs to)")
    if kind == "tls" and "privateKey" in named and "certificate" not in named:
        problems.append("privateKey= needs certificate= (the client certificate it belongs to)")
    return problems


def _file_problem(path: str, what: str) -> str | None:
    """Why the ``what`` file at ``path`` cannot be read (None when it can)."""
    if not os.path.lexists(path):
        return f"no such file (the {what}); fix the path or create the file"
    if os.path.isdir(path):
        return f"is a directory, not a file (the {what} is one PEM file)"
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        return f"cannot read the {what}: {e.strerror or e}; fix its permissions for this user"
    return None


def _trust_dir_problem(path: str) -> str | None:
    """Why ``path`` is not a usable directory of ``*.pem`` CA certificates (None when it is)."""
    if not os.path.lexists(path):
        return "no such directory (the trusted CA certificates: a directory of *.pem files); fix the path"
    if not os.path.isdir(path):
        return "is a file; it must be a directory of *.pem CA certificate files (e.g. the trust/ directory " \
               "`gwproactor certs` writes)"
    try:
        names = [n for n in os.listdir(path) if n.lower().endswith(".pem")]
    except OSError as e:
        return f"cannot list the trust directory: {e.strerror or e}; fix its permissions for this user"
    if not names:
        return "contains no *.pem file, so no broker certificate would be trusted; put the CA certificate in it"
    unreadable = [n for n in names if _file_problem(os.path.join(path, n), "CA certificate") is not None]
    if len(unreadable) == len(names):
        return f"none of its *.pem files can be read ({', '.join(sorted(unreadable)[:3])}); fix their permissions"
    return None


def _pem_problems(kind: str, named: dict[str, str]) -> list[str]:
    """Which named file is not the PEM it should be (after building the endpoint failed)."""
    from twisted.internet import ssl

    problems = []
    key = _DIRECTORIES.get(kind)
    if key in named:
        for name in sorted(n for n in os.listdir(named[key]) if n.lower().endswith(".pem")):
            try:
                ssl.Certificate.loadPEM(_read(os.path.join(named[key], name)))
            except Exception as e:
                problems.append(f"{key}={named[key]}: {name} is not a PEM certificate ({_reason(e)}); "
                                "keep only CA certificates in the trust directory")
    cert_key, key_key = ("certificate", "privateKey") if kind == "tls" else ("certKey", "privateKey")
    if cert_key in named:
        cert = _read(named[cert_key])
        try:
            if key_key in named:
                ssl.Certificate.loadPEM(cert)
            else:
                ssl.PrivateCertificate.loadPEM(cert)
        except Exception as e:
            what = "a PEM certificate" if key_key in named else f"a PEM certificate with its key (or give {key_key}=)"
            problems.append(f"{cert_key}={named[cert_key]}: not {what} ({_reason(e)})")
    if key_key in named:
        try:
            ssl.KeyPair.load(_read(named[key_key]), 1)  # 1: PEM
        except Exception as e:
            problems.append(f"{key_key}={named[key_key]}: not a PEM private key ({_reason(e)})")
    return problems


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _other_type(kind: str, description: str, reactor: Any) -> list[str]:
    """A type gwproactor does not know: fine if a Twisted endpoint plugin provides it."""
    if reactor is False:
        return []
    problems = _build(description, reactor)
    if problems and "Unknown endpoint type" in problems[0]:
        close = difflib.get_close_matches(kind, list(_PARAMETERS), n=1)
        hint = f"did you mean {close[0]}:? " if close else ""
        return [f"unknown endpoint type {kind!r}; {hint}use tcp:, tls:, ssl: or unix: (e.g. {_EXAMPLE})"]
    return problems


def _build(description: str, reactor: Any) -> list[str]:
    from twisted.internet.endpoints import clientFromString

    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    try:
        clientFromString(reactor, description)
    except Exception as e:  # the parsers raise TypeError, ValueError, OSError, OpenSSL errors ...
        return [f"cannot be used: {_reason(e)}"]
    return []


def _reason(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())


# --- building --------------------------------------------------------------------------------------


def _read_file(path: str, what: str) -> bytes:
    from gwproactor.errors import ConfigError

    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"cannot read the {what} {path!r}: {e.strerror or e}") from e


def make_client_endpoint(reactor: Any, name: str, *, endpoint: str | None = None, host: str | None = None,
                         port: int | None = None, tls: Any = None, timeout: float = 10.0) -> Any:
    """Build the client endpoint of broker ``name``: from ``endpoint`` (a ``clientFromString`` string), else a
    :class:`~twisted.internet.endpoints.HostnameEndpoint` to ``host``:``port`` wrapped in TLS when ``tls`` (a
    :class:`~gwproactor.mqtt.TLSOptions`) is given (``port`` defaults to 8883 with TLS, else 1883).

    Reads every certificate file it needs; does not connect.

    :raises ConfigError: naming the broker and what cannot be used.
    """
    from twisted.internet.endpoints import HostnameEndpoint, SSL4ClientEndpoint, clientFromString, wrapClientTLS

    from gwproactor.errors import ConfigError

    if endpoint is not None:
        try:
            return clientFromString(reactor, endpoint)
        except Exception as e:
            problems = endpoint_problems(endpoint, False) or [_reason(e)]
            raise ConfigError(f"broker {name!r}: bad endpoint string {endpoint!r}: " + "; ".join(problems)) from e
    assert host is not None
    port = port if port is not None else (8883 if tls is not None else 1883)
    tcp = HostnameEndpoint(reactor, host, port, timeout=timeout)
    if tls is None:
        return tcp
    from twisted.internet import ssl

    try:
        trust = ssl.Certificate.loadPEM(_read_file(tls.ca_file, "CA file")) if tls.ca_file else None
        client_cert = None
        if tls.cert_file is not None and tls.key_file is not None:
            pem = _read_file(tls.cert_file, "client certificate") + b"\n" + _read_file(tls.key_file, "client key")
            client_cert = ssl.PrivateCertificate.loadPEM(pem)
    except ConfigError as e:
        raise ConfigError(f"broker {name!r}: {e}") from e
    except Exception as e:
        raise ConfigError(f"broker {name!r}: cannot load TLS certificates: {e}") from e
    if tls.check_hostname:
        options = ssl.optionsForClientTLS(
            tls.hostname or host,
            trustRoot=trust if trust is not None else ssl.platformTrust(),
            clientCertificate=client_cert,
        )
        return wrapClientTLS(options, tcp)
    # No hostname check: the chain is still verified against the CA (or the platform's roots).
    kwargs: dict[str, Any] = {
        "trustRoot": ssl.trustRootFromCertificates([trust]) if trust is not None else ssl.platformTrust()
    }
    if client_cert is not None:
        kwargs.update(privateKey=client_cert.privateKey.original, certificate=client_cert.original)
    return SSL4ClientEndpoint(reactor, host, port, ssl.CertificateOptions(**kwargs), timeout=timeout)
