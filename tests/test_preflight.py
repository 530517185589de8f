"""Tests of the checks run before anything starts (certificate fields, upstream links, the store directory),
the settings shown with secrets masked, and the store lock's pid."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from gwproactor.config import BrokerSettings, LinkSettings, ProactorSettings, StoreSettings, TLSSettings
from gwproactor.config import load_settings, parse_dotenv
from gwproactor.errors import StoreLocked
from gwproactor.mqtt.settings import make_broker
from gwproactor.preflight import check_settings, setting_name, settings_lines, store_lock_holder
from gwproactor.store import FileEventStore
from gwproactor_test.certs import TestCerts


def settings(tmp_path: Path, **kwargs: Any) -> ProactorSettings:
    kwargs.setdefault("links", {"parent": LinkSettings(peer_long_name="d1.p", peer_short_name="p")})
    kwargs.setdefault("store", StoreSettings(directory=tmp_path / "store"))
    return ProactorSettings(long_name="d1.c", short_name="c", **kwargs)


def one_error(s: ProactorSettings) -> str:
    report = check_settings(s, reactor=MemoryReactorClock())
    assert len(report.errors) == 1, report.errors
    return report.errors[0]


# --- check_settings --------------------------------------------------------------------------------


def test_good_settings_pass(tmp_path: Path) -> None:
    """Valid settings with a creatable store directory have no errors and no warnings."""
    report = check_settings(settings(tmp_path), reactor=MemoryReactorClock())
    assert report.ok and report.errors == () and report.warnings == ()


def test_problems_name_the_environment_variable(tmp_path: Path) -> None:
    """A bad endpoint of broker 'cloud' is reported under SCADA_BROKERS__CLOUD__ENDPOINT."""
    s = settings(tmp_path, brokers={"cloud": BrokerSettings(endpoint="tcp:host=h:port=abc")},
                 links={"p": LinkSettings(peer_long_name="d1.p", peer_short_name="p", broker="cloud")})
    report = check_settings(s, prefix="SCADA", reactor=MemoryReactorClock())
    assert report.errors[0].startswith("SCADA_BROKERS__CLOUD__ENDPOINT='tcp:host=h:port=abc': port='abc'")
    assert setting_name("SCADA_", "links", "p", "upstream") == "SCADA_LINKS__P__UPSTREAM"


def test_tls_fields_are_read_and_parsed(tmp_path: Path, test_certs: TestCerts) -> None:
    """TLS__CA_FILE / CERT_FILE given in Python are checked too: missing, not PEM, and a good combined cert+key."""
    missing = settings(tmp_path, brokers={"default": BrokerSettings(tls=TLSSettings(ca_file=tmp_path / "no.crt"))})
    assert one_error(missing).startswith("GWP_BROKERS__DEFAULT__TLS__CA_FILE=") and "no such file" in one_error(missing)
    (tmp_path / "bad.crt").write_text("not pem")
    bad = settings(tmp_path, brokers={"default": BrokerSettings(tls=TLSSettings(ca_file=tmp_path / "bad.crt"))})
    assert "not a PEM certificate" in one_error(bad)
    combined = tmp_path / "client.pem"
    combined.write_bytes(test_certs.client.cert_path.read_bytes() + test_certs.client.key_path.read_bytes())
    tls = TLSSettings(ca_file=test_certs.ca.cert_path, cert_file=combined)
    good = settings(tmp_path, brokers={"default": BrokerSettings(tls=tls)})
    assert check_settings(good, reactor=MemoryReactorClock()).ok
    broker = make_broker("default", good.brokers["default"], MemoryReactorClock())
    broker.prepare_endpoint()  # a cert_file holding the key too is usable at run time as well
    nokey = settings(tmp_path, brokers={"default": BrokerSettings(tls=TLSSettings(cert_file=test_certs.client.cert_path))})
    assert "GWP_BROKERS__DEFAULT__TLS__CERT_FILE" in one_error(nokey)


def test_endpoint_and_tls_fields_together_warn(tmp_path: Path) -> None:
    """TLS fields next to an endpoint string are ignored, with a warning that says so."""
    b = BrokerSettings(endpoint="tcp:host=h:port=1", tls=TLSSettings())
    report = check_settings(settings(tmp_path, brokers={"default": b}), reactor=MemoryReactorClock())
    assert report.ok and "GWP_BROKERS__DEFAULT__TLS: ignored because GWP_BROKERS__DEFAULT__ENDPOINT is set" in \
        report.warnings[0]


def test_two_upstream_links_is_an_error(tmp_path: Path) -> None:
    """Two upstream links are one error naming both UPSTREAM variables."""
    links = {n: LinkSettings(peer_long_name=f"d1.{n}", peer_short_name=n, upstream=True) for n in ("a", "b")}
    assert one_error(settings(tmp_path, links=links)).startswith("GWP_LINKS__A__UPSTREAM, GWP_LINKS__B__UPSTREAM:")


def test_store_directory_problems(tmp_path: Path) -> None:
    """A store path that is a file, or under a file, is an error; a creatable path is not (and is not created)."""
    (tmp_path / "f").write_text("x")
    assert "is a file, not a directory" in one_error(settings(tmp_path, store=StoreSettings(directory=tmp_path / "f")))
    under = settings(tmp_path, store=StoreSettings(directory=tmp_path / "f" / "events"))
    assert "cannot be created" in one_error(under)
    deep = settings(tmp_path, store=StoreSettings(directory=tmp_path / "a" / "b" / "c"))
    assert check_settings(deep, reactor=MemoryReactorClock()).ok and not (tmp_path / "a").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_store_directory_not_writable(tmp_path: Path) -> None:
    """A store directory this user may not write is an error naming GWP_STORE__DIRECTORY."""
    (tmp_path / "ro").mkdir(mode=0o555)
    problem = one_error(settings(tmp_path, store=StoreSettings(directory=tmp_path / "ro")))
    assert problem.startswith("GWP_STORE__DIRECTORY=") and "not writable" in problem


def test_no_links_is_a_warning(tmp_path: Path) -> None:
    """Settings without links pass, with a warning that says how to add one."""
    report = check_settings(settings(tmp_path, links={}), prefix="SCADA", reactor=MemoryReactorClock())
    assert report.ok
    assert report.warnings == ("d1.c has no links: it will neither send nor receive anything over MQTT; configure "
                               "one with SCADA_LINKS__<NAME>__PEER_LONG_NAME and SCADA_LINKS__<NAME>__PEER_SHORT_NAME",)


def test_store_left_at_the_old_shared_default_is_reported(tmp_path: Path) -> None:
    """A store at the shared default of earlier versions gets a warning saying where it is and what to do."""
    env = {"GWP_LONG_NAME": "d1.c", "GWP_SHORT_NAME": "c", "HOME": str(tmp_path)}
    s = load_settings(prefix="GWP", env=env)
    assert check_settings(s, reactor=MemoryReactorClock(), env=env).warnings[1:] == ()
    old = tmp_path / ".local/state/gwproactor/event-store"
    old.mkdir(parents=True)
    (old / "seg-0000000001.log").write_bytes(b"")
    warnings = check_settings(s, reactor=MemoryReactorClock(), env=env).warnings
    assert any(str(old) in w and "mv " in w for w in warnings), warnings


# --- settings shown ------------------------------------------------------------------------------


def test_settings_lines_mask_secrets_and_load_back(tmp_path: Path) -> None:
    """The .env lines hide the password, show TLS off as false, comment empty groups, and load back the same."""
    env = {"GWP_LONG_NAME": "d1.c", "GWP_SHORT_NAME": "c", "HOME": str(tmp_path),
           "GWP_BROKERS__DEFAULT__PASSWORD": "hunter2", "GWP_BROKERS__CLOUD__TLS": "true",
           "GWP_BROKERS__CLOUD__ENDPOINT": r"tls:host=h:port=8883:trustRoots=/a\:b",
           "GWP_LOGGING__LEVELS__IO_LOOP": "DEBUG", "GWP_STORE__DIRECTORY": str(tmp_path / "my store")}
    s = load_settings(prefix="GWP", env=env)
    lines = settings_lines(s)
    assert "GWP_BROKERS__DEFAULT__PASSWORD=***" in lines and not any("hunter2" in line for line in lines)
    assert "GWP_BROKERS__DEFAULT__TLS=false" in lines and "# GWP_LINKS: none" in lines
    assert f'GWP_STORE__DIRECTORY="{tmp_path / "my store"}"' in lines
    shown = parse_dotenv("\n".join(lines))
    again = load_settings(prefix="GWP", env={**shown, "HOME": str(tmp_path)})
    assert again.brokers["default"].password == "***"
    assert again.to_dict() == s.to_dict()


# --- the store lock ------------------------------------------------------------------------------


def test_store_lock_names_its_holder(tmp_path: Path) -> None:
    """The LOCK file holds the opener's pid; a second open fails with StoreLocked naming it; /proc/locks agrees."""
    clock = MemoryReactorClock()
    store = FileEventStore.open(str(tmp_path), clock=clock)
    try:
        assert (tmp_path / "LOCK").read_text().strip() == str(os.getpid())
        with pytest.raises(StoreLocked, match=f"locked by this process {os.getpid()}") as info:
            FileEventStore.open(str(tmp_path), clock=clock)
        assert info.value.pid == os.getpid()
        if os.path.exists("/proc/locks"):
            assert store_lock_holder(tmp_path) == os.getpid()
    finally:
        store.close()
    assert store_lock_holder(tmp_path) is None
    assert store_lock_holder(tmp_path / "nowhere") is None
