"""``trial`` runs the reusable suites: it never reports success with 0 tests when suites were meant to run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gwproactor_test.plugin import require_mosquitto

ROOT = Path(__file__).resolve().parent.parent

TRAP_MODULE = '''\
"""A test module that imports pytest_twisted before the suites (what made trial run 0 tests)."""
import pytest_twisted  # noqa: F401
from twisted.trial import unittest

from gwproactor_test import suites


class TestSuitesUnderTrial(unittest.TestCase):
    def test_suites_are_trial_test_cases(self):
        self.assertEqual(suites.RUNNER, "trial")
        self.assertTrue(issubclass(suites.LiveSuite, unittest.TestCase))
'''


def _trial(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if k != "GWPROACTOR_SUITE_RUNNER"}
    environ.update(env or {})
    result = subprocess.run([sys.executable, "-m", "twisted.trial", *args], cwd=cwd, env=environ,
                            capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def _ran(output: str) -> int:
    found = re.search(r"^Ran (\d+) tests? in", output, re.MULTILINE)
    assert found, output
    return int(found.group(1))


def test_trial_sees_the_suites_even_when_pytest_twisted_was_imported(tmp_path: Path) -> None:
    """Importing pytest_twisted outside a pytest run leaves the suites trial TestCases (1 test runs, passes)."""
    (tmp_path / "trap_suites.py").write_text(TRAP_MODULE)
    code, output = _trial("trap_suites", cwd=tmp_path,
                          env={"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}, timeout=120)
    assert code == 0 and _ran(output) == 1 and "PASSED" in output, output


@pytest.mark.live
def test_trial_runs_the_derived_example_suites(tmp_path: Path) -> None:
    """``python -m twisted.trial tests.derived_example`` runs more than 0 tests, and they pass."""
    require_mosquitto()
    code, output = _trial("--temp-directory", str(tmp_path / "_trial_temp"), "tests.derived_example", cwd=ROOT)
    assert code == 0 and "PASSED" in output, output
    assert _ran(output) > 0, output
