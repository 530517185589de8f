"""The systemd unit in docs/operations.rst runs commands that exist, with arguments they accept."""

from __future__ import annotations

import re
import shlex
from importlib.metadata import entry_points
from pathlib import Path

from gwproactor.cli import build_parser

OPERATIONS = Path(__file__).resolve().parent.parent / "docs" / "operations.rst"


def _unit_commands() -> list[list[str]]:
    text = OPERATIONS.read_text()
    unit = text[text.index("# /etc/systemd/system/myscada.service"):]
    unit = unit[: unit.index("[Install]")]
    return [shlex.split(m.group(1)) for m in re.finditer(r"^\s*ExecStart(?:Pre)?=(.+)$", unit, re.MULTILINE)]


def test_systemd_example_runs_the_gwproactor_command() -> None:
    """Every ExecStart / ExecStartPre of the example unit is the installed ``gwproactor`` script with valid arguments."""
    commands = _unit_commands()
    assert commands, "no ExecStart in the unit of docs/operations.rst"
    scripts = {ep.name for ep in entry_points(group="console_scripts") if ep.value.startswith("gwproactor.")}
    for argv in commands:
        assert Path(argv[0]).name in scripts, argv
        args = build_parser(only=argv[1]).parse_args(argv[1:])
        assert callable(args.func), argv
