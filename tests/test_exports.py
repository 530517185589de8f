"""The package's public surface: every exported name exists, is the module's object, and is documented."""

from __future__ import annotations

import subprocess
import sys

import gwproactor


def test_exports_resolve_and_have_docstrings() -> None:
    """Every name in gwproactor.__all__ resolves and (classes and functions) carries a docstring."""
    for name in gwproactor.__all__:
        obj = getattr(gwproactor, name)
        if callable(obj):
            assert obj.__doc__, f"gwproactor.{name} has no docstring"


def test_import_does_not_install_a_reactor() -> None:
    """Importing gwproactor (and its runner) leaves the reactor choice open: no global reactor is imported."""
    code = (
        "import sys, gwproactor, gwproactor.runner, gwproactor.twist, gwproactor_test.plugin;"
        "print('twisted.internet.reactor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "False"
