"""``twist gwproactor`` finds its plugin in this virtualenv, whichever way the checkout was installed into it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_twist_gwproactor_help_runs_from_the_venv() -> None:
    """``<venv>/bin/twist gwproactor --help`` lists the plugin's options and exits 0 (no PYTHONPATH needed)."""
    twist = Path(sys.executable).parent / "twist"
    result = subprocess.run([str(twist), "gwproactor", "--help"], capture_output=True, text=True, timeout=60,
                            cwd="/", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--app=" in result.stdout and "Unknown command" not in result.stdout + result.stderr
