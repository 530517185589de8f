"""The TLS stack stays out of a process whose brokers use no TLS, and is there when one does.

The process-level tests run in fresh interpreters (``sys.modules`` is the thing measured); the runner tests
start a real ``gwproactor.runner.run`` with a broker that is not there (the link keeps connecting) and read
``sys.modules`` once the proactor has started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gwproactor.config import BrokerSettings, ProactorSettings, TLSSettings
from gwproactor.ops.tlsstack import settings_use_tls

TLS_MODULES = ("OpenSSL", "cryptography", "service_identity", "twisted.internet.ssl", "twisted.protocols.tls")
#: Modules a started proactor without HTTP and without certificates never needs.
UNUSED_MODULES = ("twisted.web", "gwproactor.web", "gwproactor.certs", "gwproactor.demo")


def _python(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GWP_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, check=False)


def _settings(**broker: object) -> ProactorSettings:
    return ProactorSettings(long_name="a.b", short_name="b", brokers={"default": BrokerSettings(**broker)})


@pytest.mark.parametrize(("broker", "uses_tls"), [
    ({}, False),
    ({"endpoint": "tcp:host=127.0.0.1:port=1883"}, False),
    ({"endpoint": "unix:path=/run/mosquitto.sock"}, False),
    ({"endpoint": "TCP6:host=::1:port=1883"}, False),
    ({"endpoint": "tls:host=mqtt.example.com:port=8883"}, True),
    ({"endpoint": "ssl:host=mqtt.example.com:port=8883"}, True),
    ({"endpoint": "someplugin:host=x"}, True),
    ({"tls": TLSSettings()}, True),
    ({"endpoint": "tcp:host=127.0.0.1:port=1883", "tls": TLSSettings()}, False),
])
def test_settings_use_tls(broker: dict, uses_tls: bool) -> None:
    """A broker uses TLS with a non-plain endpoint type, or without an endpoint when its TLS settings are given."""
    assert settings_use_tls(_settings(**broker)) is uses_tls


def test_settings_use_tls_when_any_broker_does() -> None:
    """One TLS broker among plain ones is enough."""
    settings = ProactorSettings(long_name="a.b", short_name="b", brokers={
        "local": BrokerSettings(), "cloud": BrokerSettings(endpoint="tls:host=mqtt.example.com:port=8883")})
    assert settings_use_tls(settings)


def test_left_out_stack_keeps_plain_tcp_working_and_refuses_openssl() -> None:
    """Left out before the reactor: reactor, endpoints and a TCP endpoint work, none of the TLS modules load,
    and importing OpenSSL later fails with a message that says why and what to do."""
    result = _python(f"""
        import sys
        from gwproactor.ops.tlsstack import leave_out_tls_stack, tls_stack_left_out
        assert leave_out_tls_stack() and tls_stack_left_out()
        from twisted.internet import reactor
        from twisted.internet.endpoints import clientFromString
        clientFromString(reactor, "tcp:host=127.0.0.1:port=1883")
        import gwproactor.proactor, gwproactor.preflight, gwproactor.mqtt.endpoints
        print("loaded", sorted(m for m in sys.modules if m.startswith({TLS_MODULES!r})))
        try:
            import OpenSSL
        except ImportError as e:
            print("refused", e)
    """)
    assert result.returncode == 0, result.stderr
    assert "loaded []" in result.stdout
    assert "refused the TLS stack (OpenSSL) was left out" in result.stdout
    assert "--tls-stack always" in result.stdout


def test_too_late_to_leave_out() -> None:
    """Once Twisted's TCP transport is imported (with TLS), leaving the stack out changes nothing."""
    result = _python("""
        import twisted.internet.tcp
        from gwproactor.ops.tlsstack import leave_out_tls_stack, tls_stack_left_out
        assert not leave_out_tls_stack() and not tls_stack_left_out()
        import OpenSSL.SSL
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


RUN_AND_REPORT = """
    import sys
    from gwproactor.runner import AppSpec, run

    def ready(proactor):
        print("tls modules:", sorted(m for m in sys.modules if m.startswith({modules!r})), flush=True)
        print("unused modules:", sorted(m for m in sys.modules if m.startswith({unused!r})), flush=True)
        proactor.request_shutdown("test done")

    sys.exit(run(AppSpec("gwproactor.proactor:Proactor"), on_ready=ready, tls_stack={tls_stack!r}))
"""


def _run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"GWP_LONG_NAME": "d1.test", "GWP_SHORT_NAME": "t", "GWP_STORE__DIRECTORY": str(tmp_path / "store"),
            "GWP_BROKERS__DEFAULT__ENDPOINT": "tcp:host=127.0.0.1:port=9", **extra}


def test_runner_leaves_out_tls_for_plain_brokers(tmp_path: Path) -> None:
    """``run`` with plain-TCP brokers starts the proactor without any TLS module, nor the HTTP server or the
    certificate code (HTTP is off)."""
    result = _python(RUN_AND_REPORT.format(modules=TLS_MODULES, unused=UNUSED_MODULES, tls_stack="auto"), _run_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "tls modules: []" in result.stdout, result.stdout + result.stderr
    assert "unused modules: []" in result.stdout, result.stdout
    assert "TLS stack left out" in result.stderr


@pytest.mark.parametrize("extra", [
    {"GWP_BROKERS__DEFAULT__ENDPOINT": "tls:host=127.0.0.1:port=9"},
    {"GWP_BROKERS__DEFAULT__ENDPOINT": "", "GWP_BROKERS__DEFAULT__HOST": "127.0.0.1",
     "GWP_BROKERS__DEFAULT__PORT": "9", "GWP_BROKERS__DEFAULT__TLS": "true"},
])
def test_runner_keeps_tls_for_a_tls_broker(tmp_path: Path, extra: dict[str, str]) -> None:
    """``run`` with a TLS broker (endpoint string or TLS settings) has the TLS stack."""
    env = _run_env(tmp_path, **extra)
    if not env["GWP_BROKERS__DEFAULT__ENDPOINT"]:
        del env["GWP_BROKERS__DEFAULT__ENDPOINT"]
    result = _python(RUN_AND_REPORT.format(modules=TLS_MODULES, unused=UNUSED_MODULES, tls_stack="auto"), env)
    assert result.returncode == 0, result.stderr
    assert "'OpenSSL'" in result.stdout and "'twisted.protocols.tls'" in result.stdout, result.stdout + result.stderr
    assert "TLS stack left out" not in result.stderr


def test_runner_keeps_tls_when_asked(tmp_path: Path) -> None:
    """``--tls-stack always`` keeps the stack with plain brokers, for applications that use TLS themselves."""
    result = _python(RUN_AND_REPORT.format(modules=TLS_MODULES, unused=UNUSED_MODULES, tls_stack="always"), _run_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "'OpenSSL'" in result.stdout, result.stdout + result.stderr


def test_https_rest_poller_is_refused_at_construction_when_the_stack_is_left_out() -> None:
    """An HTTPS REST poller in a process without the TLS stack fails when it is built, naming the fix; HTTP is fine."""
    result = _python("""
        from gwproactor.ops.tlsstack import leave_out_tls_stack
        assert leave_out_tls_stack()
        from gwproactor.errors import ConfigError
        from gwproactor.web.poller import RestPoller
        RestPoller("plain", "http://127.0.0.1:1/x", dst="a", convert=lambda body, response: None)
        try:
            RestPoller("weather", "https://api.example.com/x", dst="a", convert=lambda body, response: None)
        except ConfigError as e:
            print("refused", e)
    """)
    assert result.returncode == 0, result.stderr
    assert "refused REST poller 'weather' polls https://api.example.com/x over HTTPS" in result.stdout
    assert "--tls-stack always" in result.stdout
