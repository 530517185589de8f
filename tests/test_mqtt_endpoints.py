"""Tests of gwproactor.mqtt.endpoints: endpoint strings checked the way clientFromString reads them, without connecting."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from gwproactor.mqtt.endpoints import endpoint_problems, split_endpoint
from gwproactor_test.certs import TestCerts


def test_split_endpoint_follows_twisted_grammar() -> None:
    """Colons separate, the first '=' makes a key, a backslash escapes (as clientFromString reads it)."""
    assert split_endpoint(r"tls:host=h:port=8883:trustRoots=/a\:b:x=y=z") == (
        ["tls"], {"host": "h", "port": "8883", "trustRoots": "/a:b", "x": "y=z"})
    assert split_endpoint("tcp:example.com:1883") == (["tcp", "example.com", "1883"], {})


@pytest.mark.parametrize(
    "description, phrase",
    [
        ("tlz:host=h:port=1", "unknown endpoint type 'tlz'; did you mean tls:?"),
        ("tcp:host=h", "no port"),
        ("tls:port=8883", "no host"),
        ("tcp:host=h:port=abc", "port='abc' is not a whole number"),
        ("tcp:host=h:port=70000", "port=70000 must be from 1 to 65535"),
        ("tcp:host=h:port=1:timeout=0", "timeout=0 must be greater than 0"),
        ("tls:host=h:port=1:trustroots=/etc", "unknown parameter trustroots='/etc'; did you mean trustRoots=?"),
        ("tls:host=h:port=1:certificate=/no/such.crt", "certificate=/no/such.crt: no such file"),
        ("tls:host=h:port=1:trustRoots=/no/such", "trustRoots=/no/such: no such directory"),
        ("tls:host=h:port=1:trustRoots=/etc/hostname", "is a file; it must be a directory of *.pem"),
        ("ssl:host=h:port=1:caCertsDir=/no/such", "caCertsDir=/no/such: no such directory"),
        ("ssl:host=h:port=1:certKey=/no/such.pem", "certKey=/no/such.pem: no such file"),
        (r"tls:host=h:port=1:endpoint=tcp\:127.0.0.1", "in endpoint='tcp:127.0.0.1': no port"),
        (":host=h", "no endpoint type"),
    ],
)
def test_endpoint_problems_say_what_and_what_to_do(description: str, phrase: str) -> None:
    """Each malformed endpoint string gets a problem naming the part that is wrong."""
    problems = endpoint_problems(description, MemoryReactorClock())
    assert any(phrase in p for p in problems), problems


@pytest.mark.parametrize("description", ["tcp:host=127.0.0.1:port=1883", "tcp:mqtt.example.com:1883",
                                         "tcp:host=h:1883", "unix:/run/mosquitto.sock", "tls:host=h:port=8883"])
def test_good_endpoints_have_no_problems(description: str) -> None:
    """Well-formed endpoint strings (positional or named) pass; tls: without files uses the platform trust."""
    assert endpoint_problems(description, MemoryReactorClock()) == []


def test_all_problems_of_one_string_are_reported(tmp_path: Path) -> None:
    """A string with a bad port, a missing certificate and a missing trust directory reports all three."""
    problems = endpoint_problems(f"tls:host=h:port=x:certificate={tmp_path}/c.crt:trustRoots={tmp_path}/t")
    assert len(problems) == 3, problems


def test_tls_files_in_string_are_checked_as_pem(tmp_path: Path, test_certs: TestCerts) -> None:
    """Files that exist but are not PEM are named; the real test certificates pass."""
    client = test_certs.client
    good = f"tls:host=h:port=1:trustRoots={test_certs.trust_dir}:certificate={client.cert_path}:privateKey={client.key_path}"
    assert endpoint_problems(good, MemoryReactorClock()) == []
    (tmp_path / "trust").mkdir()
    (tmp_path / "trust" / "ca.pem").write_text("garbage")
    problems = endpoint_problems(f"tls:host=h:port=1:trustRoots={tmp_path / 'trust'}", MemoryReactorClock())
    assert problems and "ca.pem is not a PEM certificate" in problems[0], problems
    problems = endpoint_problems(f"tls:host=h:port=1:certificate={client.cert_path}:privateKey={client.cert_path}",
                                 MemoryReactorClock())
    assert problems and "not a PEM private key" in problems[0], problems
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "contains no *.pem file" in endpoint_problems(f"tls:host=h:port=1:trustRoots={empty}", False)[0]


def test_prepare_endpoint_builds_once_and_names_the_problem() -> None:
    """prepare_endpoint builds the endpoint once (startService reuses it); a bad string's ConfigError says why."""
    from gwproactor.errors import ConfigError
    from gwproactor.mqtt import BrokerConnection

    conn = BrokerConnection("b", MemoryReactorClock(), endpoint="tcp:host=127.0.0.1:port=1883")
    built = []
    make = conn._make_endpoint
    conn._make_endpoint = lambda: built.append(1) or make()  # type: ignore[method-assign]
    conn.prepare_endpoint()
    conn.prepare_endpoint()
    conn.startService()
    conn.stopService()
    assert built == [1]
    with pytest.raises(ConfigError, match="bad endpoint string 'tcp:host=h': no port"):
        BrokerConnection("b", MemoryReactorClock(), endpoint="tcp:host=h").prepare_endpoint()
