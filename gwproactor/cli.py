"""The ``gwproactor`` command: the demo, the runner, certificate tools and event store tools.

Subcommands import their modules only when the parser is built, so ``import gwproactor.cli`` stays cheap.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

def _version(args: argparse.Namespace) -> int:
    from gwproactor._version import __version__

    print(f"gwproactor {__version__}")
    return 0


def _run_certs(args: argparse.Namespace) -> int:
    from gwproactor.certs_cli import run

    return run(args)


def _run_demo(args: argparse.Namespace) -> int:
    from gwproactor.demo.cli import run_demo

    return run_demo(args)


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

    from gwproactor.runner import add_check_arguments, add_run_arguments, check_from_args, run_from_args

    run = sub.add_parser(
        "run",
        help="run a proactor application until SIGTERM/SIGINT",
        description="Run a proactor application (a Proactor subclass or factory) with settings from the environment.",
    )
    add_run_arguments(run)
    run.set_defaults(func=run_from_args)

    check_text = "check an application's settings without starting anything; print them with secrets masked"
    check = sub.add_parser(
        "check",
        help=check_text,
        description=check_text + " (exit status 0 when they can be used, 2 otherwise).",
    )
    add_check_arguments(check)
    check.set_defaults(func=check_from_args)

    from gwproactor.demo.cli import add_demo_arguments

    demo_text = "run two linked processes exchanging events through a private broker (optionally through an outage)"
    demo = sub.add_parser("demo", help=demo_text, description=demo_text)
    add_demo_arguments(demo)
    demo.set_defaults(func=_run_demo)

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
