"""Compatibility shim: ``gwproactor demo`` moved.

What a run is asked to do and what it reports is :mod:`gwproactor.demo.report` (re-exported here); the run
itself (:class:`DemoRun`, :func:`run_demo`) moved to :mod:`gwproactor_test.demo`, next to the broker, proxy and
process helpers it drives.  The library never imports the test package: those two names are looked up on first
use through the ``gwproactor.commands`` entry point that registers the demo, exactly as the ``gwproactor``
command finds it.  Import them from :mod:`gwproactor_test.demo` instead.
"""

from __future__ import annotations

from typing import Any

from gwproactor.demo.report import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_MOSQUITTO,
    EXIT_OK,
    DemoConfig,
    DemoSummary,
    add_demo_arguments,
    child_line,
    config_from_args,
    endpoint_via_proxy,
    parent_line,
)

__all__ = [
    "DemoConfig",
    "DemoRun",  # noqa: F822 - looked up on first use (__getattr__)
    "DemoSummary",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NO_MOSQUITTO",
    "EXIT_OK",
    "add_demo_arguments",
    "child_line",
    "config_from_args",
    "endpoint_via_proxy",
    "parent_line",
    "run_demo",  # noqa: F822 - looked up on first use (__getattr__)
]

_MOVED = ("DemoRun", "run_demo")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from gwproactor.cli import command_module

        module = command_module("demo")
        if module is None:
            raise ImportError(
                f"gwproactor.demo.cli.{name} moved to gwproactor_test.demo, which is not installed "
                "(no 'demo' entry point in the gwproactor.commands group)"
            )
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
