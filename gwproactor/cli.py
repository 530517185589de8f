"""The ``gwproactor`` command: certificate tools, event store tools, and (later) a demo and a runner.

Subcommands import their modules only when the parser is built, so ``import gwproactor.cli`` stays cheap.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

NOT_YET_AVAILABLE = 2
"""Exit status of the commands that are not written yet."""


def _not_yet(args: argparse.Namespace) -> int:
    print(f"gwproactor {args.command}: not yet available", file=sys.stderr)
    return NOT_YET_AVAILABLE


def _version(args: argparse.Namespace) -> int:
    from gwproactor import __version__

    print(f"gwproactor {__version__}")
    return 0


def _run_certs(args: argparse.Namespace) -> int:
    from gwproactor.certs_cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``gwproactor`` command; each leaf parser sets ``func``."""
    from gwproactor.certs_cli import add_certs_subcommands

    parser = argparse.ArgumentParser(
        prog="gwproactor", description="gwproactor: certificate tools, event store tools, demo and runner."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    certs = add_certs_subcommands(sub)
    certs.set_defaults(runner=_run_certs)

    try:
        from gwproactor.store.cli import add_store_subcommands
    except ImportError:  # pragma: no cover - the store tools ship with the package
        pass
    else:
        add_store_subcommands(sub)

    for name, text in (
        ("demo", "run a local demonstration (not yet available)"),
        ("run", "run a proactor application (not yet available)"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=_not_yet)

    sub.add_parser("version", help="print the gwproactor version").set_defaults(func=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gwproactor`` command with ``argv`` (``sys.argv[1:]`` when ``None``); return the exit status.

    Usage errors exit with status 2 (argparse's convention).
    """
    args = build_parser().parse_args(argv)
    runner = getattr(args, "runner", None)
    if runner is not None:
        return runner(args)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
