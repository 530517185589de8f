"""A production install pulls no test framework: a fresh virtualenv with the README's plain install
(``pip install -e .``, no extras) imports every library module and runs ``gwproactor --help``, the demo's
command line and ``twist gwproactor --help``.

It builds a virtualenv and installs into it from the package index (about a minute); ``-m "not install"``
leaves it out when there is no network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gwproactor_test.plugin import require_mosquitto

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.install

# Modules of gwproactor_test that the demo (``gwproactor demo``, registered by entry point) needs: they must
# import without pytest.
DEMO_MODULES = ["gwproactor_test.demo", "gwproactor_test.broker", "gwproactor_test.proxy",
                "gwproactor_test.process", "gwproactor_test.certs"]

PROBE = r'''
import importlib, importlib.util, json, pkgutil, sys
import gwproactor
absent = {name: importlib.util.find_spec(name) is None for name in ("pytest", "pytest_twisted", "greenlet", "treq")}
failed = {}
names = ["gwproactor"] + [m.name for m in pkgutil.walk_packages(gwproactor.__path__, "gwproactor.")
                          if not m.name.endswith(".__main__")]  # importing __main__ runs the command
for name in names + sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as e:
        failed[name] = f"{type(e).__name__}: {e}"
for name in gwproactor.__all__:
    getattr(gwproactor, name)
from twisted.internet.task import Clock
from gwproactor.web.poller import RestPoller
try:
    RestPoller("poller", "http://127.0.0.1:9/", dst="x", convert=lambda body, response: None,
               clock=Clock()).startService()
    poller = "started without treq"
except ImportError as e:
    poller = str(e)
print(json.dumps({"absent": absent, "failed": failed, "imported": len(names), "poller": poller}))
'''


def _run(*command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, cwd="/", check=False)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the checkout installed the README's way, without extras.

    Built once per CI job: nothing here depends on the reactor, so the asyncio pass (CI's second run of
    the suite) skips it rather than paying another minute for the same install.
    """
    from twisted.internet import reactor

    if type(reactor).__name__ == "AsyncioSelectorReactor":
        pytest.skip("the plain install does not depend on the reactor: it runs on the default reactor's pass")
    where = tmp_path_factory.mktemp("plain-install") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    result = _run(str(where / "bin" / "pip"), "install", "-q", "-e", str(ROOT), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return where


def test_plain_install_has_no_test_framework_and_imports_every_library_module(venv: Path) -> None:
    """No pytest, pytest_twisted, greenlet or treq; every gwproactor module and the demo's helpers import."""
    result = _run(str(venv / "bin" / "python"), "-c", PROBE, *DEMO_MODULES)
    assert result.returncode == 0, result.stdout + result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["absent"] == {"pytest": True, "pytest_twisted": True, "greenlet": True, "treq": True}
    assert probe["failed"] == {}
    assert probe["imported"] > 40
    assert "gwproactor[rest]" in probe["poller"]


def test_plain_install_runs_the_gwproactor_command(venv: Path) -> None:
    """``gwproactor --help`` and ``gwproactor demo --help`` (an entry point into gwproactor_test) exit 0."""
    top = _run(str(venv / "bin" / "gwproactor"), "--help")
    assert top.returncode == 0, top.stderr
    assert all(name in top.stdout for name in ("certs", "store", "run", "check", "demo", "version"))
    demo = _run(str(venv / "bin" / "gwproactor"), "demo", "--help")
    assert demo.returncode == 0 and "--outage" in demo.stdout, demo.stderr


def test_plain_install_runs_twist_gwproactor(venv: Path) -> None:
    """``twist gwproactor --help`` finds the plugin after ``pip install -e .`` (no PYTHONPATH)."""
    result = _run(str(venv / "bin" / "twist"), "gwproactor", "--help")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--app=" in result.stdout


@pytest.mark.live
def test_plain_install_runs_the_demo_through_an_outage(venv: Path, tmp_path: Path) -> None:
    """The README's main job, ``gwproactor demo --outage``, delivers every event in the plain install."""
    require_mosquitto()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GWP_")}
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        [str(venv / "bin" / "gwproactor"), "demo", "--outage", "--events", "100", "--rate", "100",
         "--outage-seconds", "1", "--timeout", "60"],
        capture_output=True, text=True, timeout=90, cwd="/", env=env, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: every event was delivered exactly once" in result.stdout
