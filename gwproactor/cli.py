"""The ``gwproactor`` command: the runner, settings checks, certificate tools, event store tools and the demo.

Importing this module is cheap, and so is ``gwproactor --help``: the top-level parser lists every subcommand by
name and help text, and only the subcommand being run imports its module and adds its arguments.  Subcommands
that live outside the library (the demo, in :mod:`gwproactor_test.demo`) are found through the
``gwproactor.commands`` entry point group, so the library never imports them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["COMMAND_GROUP", "build_parser", "command_module", "main"]

COMMAND_GROUP = "gwproactor.commands"
"""The entry point group of extra subcommands: each entry is a callable that takes the ``gwproactor`` command's
argparse ``subparsers``, adds one subparser named like the entry, and sets ``func`` on it (``func(args)`` returns
the exit status)."""

_CHECK_TEXT = "check an application's settings without starting anything; print them with secrets masked"



def _version(args: argparse.Namespace) -> int:
    from gwproactor._version import __version__

    print(f"gwproactor {__version__}")
    return 0


def _run_certs(args: argparse.Namespace) -> int:
    from gwproactor.certs_cli import run

    return run(args)


def _add_certs(sub: Any) -> argparse.ArgumentParser:
    from gwproactor.certs_cli import add_certs_subcommands

    certs = add_certs_subcommands(sub)
    certs.set_defaults(runner=_run_certs)
    return certs


def _add_run(sub: Any) -> argparse.ArgumentParser:
    from gwproactor.runner import add_run_arguments, run_from_args

    run = sub.add_parser(
        "run",
        help="run a proactor application until SIGTERM/SIGINT",
        description="Run a proactor application (a Proactor subclass or factory) with settings from the environment.",
    )
    add_run_arguments(run)
    run.set_defaults(func=run_from_args)
    return run


def _add_check(sub: Any) -> argparse.ArgumentParser:
    from gwproactor.runner import add_check_arguments, check_from_args

    check = sub.add_parser(
        "check",
        help=_CHECK_TEXT,
        description=_CHECK_TEXT + " (exit status 0 when they can be used, 2 otherwise).",
    )
    add_check_arguments(check)
    check.set_defaults(func=check_from_args)
    return check


def _add_version(sub: Any) -> argparse.ArgumentParser:
    version = sub.add_parser("version", help="print the gwproactor version")
    version.set_defaults(func=_version)
    return version


def _add_store(sub: Any) -> argparse.ArgumentParser:
    from gwproactor.store.cli import add_store_subcommands

    return add_store_subcommands(sub)


# name, the function that adds the subcommand to the subparsers (importing what it needs), and the help shown
# by ``gwproactor --help`` (which imports nothing).
_BUILTIN: tuple[tuple[str, Callable[[Any], argparse.ArgumentParser], str], ...] = (
    ("certs", _add_certs, "create a CA, broker and client certificates for MQTT over TLS"),
    ("store", _add_store, "inspect, verify or export an event store directory"),
    ("run", _add_run, "run a proactor application until SIGTERM/SIGINT"),
    ("check", _add_check, _CHECK_TEXT),
)
_VERSION = ("version", _add_version, "print the gwproactor version")


def _entry_points() -> list[Any]:
    """The ``gwproactor.commands`` entry points, one per name (the first found on ``sys.path`` wins)."""
    from importlib.metadata import entry_points

    found: dict[str, Any] = {}
    for ep in entry_points(group=COMMAND_GROUP):
        found.setdefault(ep.name, ep)
    return list(found.values())


def command_module(name: str) -> Any:
    """Return the module that implements the extra subcommand ``name`` (a ``gwproactor.commands`` entry point),
    or ``None`` when no installed distribution registers it."""
    import importlib

    for ep in _entry_points():
        if ep.name == name:
            return importlib.import_module(ep.module)
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Return the argument parser of the ``gwproactor`` command; each leaf parser sets ``func``.

    :param only: add the arguments of this subcommand only (the others are listed with their help but take no
        arguments, so their modules are not imported); ``None`` (default) adds every subcommand's arguments.
        Extra subcommands (entry points) are always complete.
    """
    parser = argparse.ArgumentParser(
        prog="gwproactor", description="gwproactor: certificate tools, event store tools, demo and runner."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, add_command: Callable[[Any], argparse.ArgumentParser], text: str) -> None:
        if only is None or only == name:
            add_command(sub)
        else:
            sub.add_parser(name, help=text)

    for name, target, text in _BUILTIN:
        add(name, target, text)
    builtin = {name for name, _, _ in _BUILTIN} | {_VERSION[0]}
    for ep in _entry_points():
        if ep.name not in builtin:
            ep.load()(sub)
    add(*_VERSION)
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The subcommand named by ``argv`` (its first non-option word), or ``""``."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gwproactor`` command with ``argv`` (``sys.argv[1:]`` when ``None``); return the exit status.

    Usage errors exit with status 2 (argparse's convention).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(only=_command_in(argv)).parse_args(argv)
    runner = getattr(args, "runner", None)
    if runner is not None:
        return runner(args)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
