"""Running an application: load ``package.module:factory``, build its proactor, run it until a clean shutdown.

An application is a :class:`~gwproactor.proactor.Proactor` subclass (built from
settings loaded from the environment) or a factory callable.  The same
:func:`make_service` serves ``gwproactor run``, the ``twist gwproactor`` plugin
and ``.tac`` files.
"""

from __future__ import annotations

import importlib
import inspect
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import attrs
from twisted.logger import Logger

from gwproactor.config import ProactorSettings, load_settings
from gwproactor.errors import ConfigError
from gwproactor.ops.clock import use_monotonic_time
from gwproactor.ops.gcfreeze import freeze_after_start

__all__ = ["AppSpec", "load_app", "make_service", "run"]

log = Logger(namespace="gwproactor.runner")


@attrs.frozen
class AppSpec:
    """What to run.

    :param app: ``package.module:name`` of a Proactor subclass or of a factory
        ``factory(reactor=..., settings=...) -> Proactor`` (``settings`` may be None).
    :param env_prefix: prefix of the settings' environment variables (``<PREFIX>_LONG_NAME`` ...).
    :param dotenv: optional ``.env`` file with more variables.
    """

    app: str
    env_prefix: str = "GWP"
    dotenv: str | None = None


def load_app(spec: str) -> Any:
    """Import ``package.module:name`` and return the object; errors say what to fix."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--app must look like package.module:name, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"--app {spec!r}: cannot import {module_name!r}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"--app {spec!r}: {module_name!r} has no attribute {attr!r}") from None
    return obj


def _settings_class(obj: Any) -> type:
    cls = getattr(obj, "settings_class", None)
    return cls if isinstance(cls, type) and issubclass(cls, ProactorSettings) else ProactorSettings


def make_service(spec: AppSpec, reactor: Any) -> Any:
    """Build the application's proactor (an ``IService``)."""
    from gwproactor.proactor import Proactor

    obj = load_app(spec.app)
    if isinstance(obj, type) and issubclass(obj, Proactor):
        settings = load_settings(_settings_class(obj), prefix=spec.env_prefix, dotenv=spec.dotenv)
        return obj(settings, reactor=reactor)
    if callable(obj):
        kwargs: dict[str, Any] = {}
        params = inspect.signature(obj).parameters
        if "reactor" in params:
            kwargs["reactor"] = reactor
        if "settings" in params:
            settings_cls = _settings_class(obj)
            kwargs["settings"] = load_settings(settings_cls, prefix=spec.env_prefix, dotenv=spec.dotenv)
        service = obj(**kwargs)
        if not isinstance(service, Proactor):
            raise ConfigError(f"--app {spec.app!r} returned {type(service).__name__}, not a Proactor")
        return service
    raise ConfigError(f"--app {spec.app!r} is neither a Proactor subclass nor a factory")


def install_reactor(name: str) -> Any:
    """Install the named reactor (``default`` or ``asyncio``) and return it."""
    if name == "asyncio":
        if "twisted.internet.reactor" not in sys.modules:
            from twisted.internet import asyncioreactor

            asyncioreactor.install()
    elif name != "default":
        raise ConfigError(f"--reactor must be 'default' or 'asyncio', got {name!r}")
    from twisted.internet import reactor

    return reactor


def start_logging(level: str | None = None, stream: Any = None) -> Any:
    """Send twisted.logger events to ``stream`` (default stderr), one text line each, filtered by category levels.

    Returns the :class:`~gwproactor.logs.LogLevels` whose predicate filters them
    (``level`` overrides the settings' base level when given).
    """
    from twisted.logger import FilteringLogObserver, globalLogBeginner, textFileLogObserver

    from gwproactor.logs import LogLevels, level_from_name

    levels = LogLevels()
    if level:
        levels.set_default(level_from_name(level))
    observer = FilteringLogObserver(textFileLogObserver(stream or sys.stderr), [levels.predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    return levels


def run(spec: AppSpec, *, reactor_name: str = "default", log_level: str | None = None,
        ready_file: str | None = None, on_ready: Callable[[Any], Any] | None = None,
        gc_freeze: bool = True) -> int:
    """Run the application until it shuts down; return the process exit status.

    SIGTERM / SIGINT start a graceful shutdown (:meth:`~gwproactor.proactor.Proactor.shutdown`);
    a second signal exits at once (the store's records are framed and checksummed, so
    whatever was written is consistent).  With ``gc_freeze`` the objects that exist once the
    proactor has started are frozen (:func:`~gwproactor.ops.gcfreeze.freeze_after_start`).
    Unless the settings' ``monotonic_time`` is False, the reactor's timers run on the monotonic
    clock (:func:`~gwproactor.ops.clock.use_monotonic_time`) before it runs.
    """
    reactor = install_reactor(reactor_name)
    levels = start_logging()
    try:
        proactor = make_service(spec, reactor)
    except ConfigError as e:
        print(f"gwproactor: {e}", file=sys.stderr)
        return 2
    if proactor.settings.monotonic_time:
        use_monotonic_time(reactor)  # before anything is scheduled on the wall clock (startService does it too)
    proactor.use_log_levels(levels)
    if log_level:
        from gwproactor.logs import level_from_name

        levels.set_default(level_from_name(log_level))
    signals = {"count": 0}

    def on_signal(signum: int, frame: Any) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            reactor.callFromThread(proactor.request_shutdown, f"signal {signal.Signals(signum).name}")
        else:
            try:
                proactor.store.close()
            finally:
                os._exit(130)

    def started() -> None:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        proactor.startService()
        if gc_freeze:
            freeze_after_start()
        if ready_file:
            Path(ready_file).write_text(str(os.getpid()))
        if on_ready is not None:
            on_ready(proactor)

    def stopped(exit_code: int) -> None:
        if reactor.running:
            reactor.stop()

    proactor.when_shut_down().addCallback(stopped)
    reactor.callWhenRunning(started)
    reactor.run(installSignalHandlers=False)
    return proactor.exit_code


def add_run_arguments(parser: Any) -> None:
    """Add the ``run`` options to an argparse parser."""
    parser.add_argument("--app", required=True, help="package.module:name of a Proactor subclass or factory")
    parser.add_argument("--env-prefix", default="GWP", help="prefix of the settings' environment variables (default GWP)")
    parser.add_argument("--dotenv", default=None, help="a .env file with more settings")
    parser.add_argument("--reactor", choices=("default", "asyncio"), default="default", help="which reactor to run on")
    parser.add_argument("--log-level", default=None, help="debug, info, warn, error (default: the settings' base level)")
    parser.add_argument("--ready-file", default=None, help="write the pid to this file once started (for supervisors and tests)")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false",
                        help="do not freeze the objects that exist after start (gc.freeze; see gwproactor.ops.gcfreeze)")


def run_from_args(args: Any) -> int:
    """Run with parsed ``add_run_arguments`` options."""
    spec = AppSpec(app=args.app, env_prefix=args.env_prefix, dotenv=args.dotenv)
    return run(spec, reactor_name=args.reactor, log_level=args.log_level, ready_file=args.ready_file,
               gc_freeze=args.gc_freeze)


def main(argv: list[str] | None = None) -> int:
    """``python -m gwproactor.runner --app package.module:name``."""
    import argparse

    parser = argparse.ArgumentParser(prog="gwproactor run", description="Run a gwproactor application.")
    add_run_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
