"""Running an application: load ``package.module:factory``, build its proactor, run it until a clean shutdown.

An application is a :class:`~gwproactor.proactor.Proactor` subclass (built from
settings loaded from the environment) or a factory callable.  The same
:func:`make_service` serves ``gwproactor run``, the ``twist gwproactor`` plugin
and ``.tac`` files: it checks the settings completely first
(:func:`gwproactor.preflight.check_settings`), so a mistake ends the process with one
line naming the setting and exit status 2 (:func:`report_config_error`) before anything
has started.  ``gwproactor check`` (:func:`check`) runs the same checks and starts nothing.
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
from gwproactor.errors import ConfigError, InvalidSettings, StoreError, StoreLocked
from gwproactor.ops.clock import use_monotonic_time
from gwproactor.ops.gcfreeze import freeze_after_start

__all__ = ["AppSpec", "attach_systemd", "check", "load_app", "make_service", "report_config_error", "run"]

#: The exit status of a configuration error (argparse's usage-error status; systemd's ``Restart=on-failure``
#: restarts it, and the same mistake stops it again at once: fix the setting named in ``systemctl status``).
EXIT_CONFIG = 2

#: ``gwproactor run --tls-stack``: ``auto`` leaves the TLS stack out when no broker uses TLS; ``always`` keeps it.
TLS_STACK_CHOICES = ("auto", "always")

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
    cls = getattr(obj, "settings_class", None)  # declared on Proactor; a factory may declare it too
    return cls if isinstance(cls, type) and issubclass(cls, ProactorSettings) else ProactorSettings


def app_kind(obj: Any, spec: str) -> str:
    """``"class"`` for a Proactor subclass, ``"factory"`` for a callable taking ``reactor``/``settings``.

    :raises ConfigError: ``obj`` is neither (a class that is not a Proactor, a module, a callable that needs
        other arguments).
    """
    from gwproactor.proactor import Proactor

    what = "a Proactor subclass or a factory(reactor=..., settings=...) that returns a Proactor"
    if isinstance(obj, type):
        if issubclass(obj, Proactor):
            return "class"
        raise ConfigError(f"--app {spec!r} is the class {obj.__module__}.{obj.__qualname__}, which is not a "
                          f"Proactor subclass; name {what}")
    if not callable(obj):
        raise ConfigError(f"--app {spec!r} is a {type(obj).__name__}, not {what}")
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return "factory"
    needed = [p.name for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
              and (p.name not in ("reactor", "settings") or p.kind is p.POSITIONAL_ONLY)]
    if needed:
        raise ConfigError(f"--app {spec!r} is not a Proactor factory: it needs {', '.join(needed)} "
                          "(a factory takes only reactor= and/or settings=)")
    return "factory"


def _takes(obj: Any, name: str) -> bool:
    try:
        return name in inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False


def _checked(settings: Any, spec: AppSpec, reactor: Any) -> None:
    from gwproactor.preflight import check_settings, no_links_warning

    report = check_settings(settings, prefix=spec.env_prefix, reactor=reactor)
    for warning in report.warnings:
        if warning != no_links_warning(settings.long_name, spec.env_prefix):  # the proactor says it at start
            log.warn("{warning}", warning=warning)
    if report.errors:
        raise InvalidSettings(report.errors)


def make_service(spec: AppSpec, reactor: Any) -> Any:
    """Build the application's proactor (an ``IService``) once its settings have been checked completely.

    The settings are loaded and checked (:func:`gwproactor.preflight.check_settings`: endpoints, certificate
    files, the store directory ...) before the proactor is built; then its event store is opened
    (:meth:`~gwproactor.proactor.Proactor.open_store`: the proactor's constructor does no I/O), its broker
    endpoints are built (certificate files are read here, before the reactor runs), and, under systemd, its
    notification is attached (:func:`attach_systemd`).  A factory that
    loads its own settings has them checked once it has returned.

    :raises ConfigError: one problem per line (an :class:`~gwproactor.errors.InvalidSettings`), each naming
        its setting; print them with :func:`report_config_error`.
    """
    from gwproactor.proactor import Proactor
    from gwproactor.preflight import setting_name

    obj = load_app(spec.app)
    kind = app_kind(obj, spec.app)
    settings = None
    if kind == "class" or _takes(obj, "settings"):
        settings = load_settings(_settings_class(obj), prefix=spec.env_prefix, dotenv=spec.dotenv)
        _checked(settings, spec, reactor)
    store_var = setting_name(spec.env_prefix, "store", "directory")
    try:
        if kind == "class":
            service = obj(settings, reactor=reactor)
        else:
            kwargs: dict[str, Any] = {}
            if _takes(obj, "reactor"):
                kwargs["reactor"] = reactor
            if settings is not None:
                kwargs["settings"] = settings
            service = obj(**kwargs)
        if isinstance(service, Proactor):
            service.open_store()  # construction does no I/O: a store in use is found here, before the reactor runs
    except StoreLocked as e:
        raise _store_in_use(e, store_var, settings) from None
    except (StoreError, OSError) as e:
        raise _store_unusable(e, store_var, settings) from None
    if not isinstance(service, Proactor):
        raise ConfigError(f"--app {spec.app!r} returned {type(service).__name__}, not a Proactor")
    if settings is None:
        _checked(service.settings, spec, reactor)
    for name, broker in service.brokers.items():
        prepare = getattr(broker, "prepare_endpoint", None)
        if prepare is not None:
            try:
                prepare()
            except ConfigError as e:
                broker_settings = service.settings.brokers.get(name)
                field = "endpoint" if broker_settings is not None and broker_settings.endpoint else "tls"
                raise ConfigError(f"{setting_name(spec.env_prefix, 'brokers', name, field)}: {_one_line(e)}") from None
    attach_systemd(service)
    return service


def attach_systemd(proactor: Any, environ: Any = None) -> Any:
    """Attach systemd notification to ``proactor`` when systemd runs this process (``$NOTIFY_SOCKET`` is set).

    The proactor then sends ``READY=1`` once started, feeds the watchdog (``$WATCHDOG_USEC``), reports its
    link states as ``STATUS=`` and sends ``STOPPING=1`` as it shuts down
    (:meth:`~gwproactor.proactor.Proactor.attach_systemd`).  :func:`make_service` calls it: the runner owns
    the process, so it speaks for it; a proactor embedded in another service never reads the environment.
    Returns the :class:`~gwproactor.ops.systemd.SystemdService`, or None when not under systemd.
    """
    from gwproactor.ops.systemd import notify_socket_from_env

    if notify_socket_from_env(environ) is None or proactor.systemd is not None:
        return proactor.systemd
    return proactor.attach_systemd()


def _store_in_use(e: StoreLocked, store_var: str, settings: Any) -> ConfigError:
    holder = f"process {e.pid}" if e.pid is not None else "another process"
    return ConfigError(f"{_store_setting(store_var, settings)}: the event store is in use by {holder} (another "
                       "instance, or another application with the same directory); stop it, or give this one "
                       f"its own directory with {store_var}")


def _store_unusable(e: BaseException, store_var: str, settings: Any) -> ConfigError:
    return ConfigError(f"{_store_setting(store_var, settings)}: cannot open the event store: {_one_line(e)}; "
                       f"fix it or set {store_var} to a directory this user may write")


def _store_setting(var: str, settings: Any) -> str:
    if settings is None:  # a factory that loads its own settings
        return var
    return f"{var}={str(settings.resolve_paths().store.directory)!r}"


def _one_line(e: BaseException) -> str:
    return " ".join((str(e) or type(e).__name__).split())


def report_config_error(error: ConfigError, stream: Any = None, notifier: Any = None) -> int:
    """Print ``error`` to ``stream`` (default stderr), one ``gwproactor: ...`` line per problem, tell systemd
    (``STATUS=``, when ``$NOTIFY_SOCKET`` is set) and return the exit status, :data:`EXIT_CONFIG`."""
    from gwproactor.ops.systemd import Notifier

    problems = list(error.problems) if isinstance(error, InvalidSettings) else [str(error)]
    problems = [" ".join(p.split()) for p in problems if p.strip()] or ["configuration error"]
    out = stream if stream is not None else sys.stderr
    for problem in problems:
        print(f"gwproactor: {problem}", file=out)
    out.flush()
    notifier = notifier if notifier is not None else Notifier()
    if notifier.enabled:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        notifier.status(f"configuration error: {problems[0]}{more}"[:1000])
        notifier.close()
    return EXIT_CONFIG


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


def start_logging(level: str | None = None, stream: Any = None, log_format: str = "text") -> Any:
    """Send twisted.logger events to ``stream`` (default stderr), filtered by category levels.

    ``log_format`` ``"text"``: one line each with a millisecond timestamp; ``"json"``: one JSON object per
    line (:func:`gwproactor.logs.json_log_observer`).  Returns the :class:`~gwproactor.logs.LogLevels`
    whose predicate filters them (``level`` overrides the settings' base level when given).
    """
    from twisted.logger import FilteringLogObserver, globalLogBeginner

    from gwproactor.logs import LogLevels, level_from_name, log_observer

    levels = LogLevels()
    if level:
        levels.set_default(level_from_name(level))
    observer = FilteringLogObserver(log_observer(log_format, stream or sys.stderr), [levels.predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    return levels


def run(spec: AppSpec, *, reactor_name: str = "default", log_level: str | None = None,
        ready_file: str | None = None, on_ready: Callable[[Any], Any] | None = None,
        gc_freeze: bool = True, log_format: str = "text", tls_stack: str = "auto") -> int:
    """Run the application until it shuts down; return the process exit status.

    SIGTERM / SIGINT start a graceful shutdown (:meth:`~gwproactor.proactor.Proactor.shutdown`);
    a second signal exits at once (the store's records are framed and checksummed, so
    whatever was written is consistent).  With ``gc_freeze`` the objects that exist once the
    proactor has started are frozen (:func:`~gwproactor.ops.gcfreeze.freeze_after_start`).
    Unless the settings' ``monotonic_time`` is False, the reactor's timers run on the monotonic
    clock (:func:`~gwproactor.ops.clock.use_monotonic_time`) before it runs.

    A configuration problem found before the start (:func:`make_service`) returns :data:`EXIT_CONFIG` (2)
    at once, with one line per problem on stderr; the reactor never runs.  If the start itself fails
    anyway, the proactor shuts down (exit status 2 for a ``ConfigError``, else 1): never a half-started
    process.  IP literals are resolved without the reactor's thread pool
    (:func:`~gwproactor.ops.resolver.resolve_ip_literals_inline`).

    With ``tls_stack`` ``"auto"`` and the default reactor, the application's settings are loaded before the
    reactor is imported and, when no broker uses TLS, the TLS stack (pyOpenSSL, cryptography) is left out of
    the process (:func:`~gwproactor.ops.tlsstack.leave_out_tls_stack`; about 12 MiB of resident memory).
    ``"always"`` keeps it, for an application that uses TLS on its own (``reactor.connectSSL``, ``tls:``
    endpoints it builds itself).
    """
    from gwproactor.ops.resolver import resolve_ip_literals_inline

    if tls_stack not in TLS_STACK_CHOICES:
        return report_config_error(ConfigError(f"--tls-stack must be one of {', '.join(TLS_STACK_CHOICES)}, "
                                               f"got {tls_stack!r}"))
    left_out = tls_stack == "auto" and reactor_name == "default" and _leave_out_tls_unless_used(spec)
    reactor = install_reactor(reactor_name)
    levels = start_logging(log_format=log_format)
    resolve_ip_literals_inline(reactor)
    try:
        proactor = make_service(spec, reactor)
    except ConfigError as e:
        return report_config_error(e)
    if left_out:  # after the settings are known good: a configuration error stays one line on stderr
        log.info("TLS stack left out of this process: no broker uses TLS (--tls-stack always keeps it)")
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
        try:
            proactor.startService()
        except Exception as e:
            exit_code = EXIT_CONFIG if isinstance(e, ConfigError) else 1
            log.failure("{name} failed to start; shutting down with exit status {exit_code}",
                        name=proactor.name, exit_code=exit_code)
            _tell_systemd(f"start failed: {_one_line(e)}")
            proactor.request_shutdown(f"start failed: {_one_line(e)}", exit_code)
            return
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


def _leave_out_tls_unless_used(spec: AppSpec) -> bool:
    """Before the reactor is imported: leave the TLS stack out when the application's settings use no TLS.

    False (nothing changed) when the settings cannot be known here: a factory that loads its own settings, or
    settings with a mistake (:func:`make_service` reports it), or when the stack is already imported.
    """
    from gwproactor.ops.tlsstack import leave_out_tls_stack, settings_use_tls

    try:
        obj = load_app(spec.app)
        if app_kind(obj, spec.app) == "factory" and not _takes(obj, "settings"):
            return False
        settings = load_settings(_settings_class(obj), prefix=spec.env_prefix, dotenv=spec.dotenv)
    except ConfigError:
        return False
    return not settings_use_tls(settings) and leave_out_tls_stack()


def _tell_systemd(status: str) -> None:
    from gwproactor.ops.systemd import Notifier

    notifier = Notifier()
    if notifier.enabled:
        notifier.status(status[:1000])
        notifier.close()


def _add_app_arguments(parser: Any) -> None:
    parser.add_argument("--app", required=True, help="package.module:name of a Proactor subclass or factory")
    parser.add_argument("--env-prefix", default="GWP", help="prefix of the settings' environment variables (default GWP)")
    parser.add_argument("--dotenv", default=None, help="a .env file with more settings")


def add_run_arguments(parser: Any) -> None:
    """Add the ``run`` options to an argparse parser."""
    from gwproactor.logs import LOG_FORMATS

    _add_app_arguments(parser)
    parser.add_argument("--reactor", choices=("default", "asyncio"), default="default", help="which reactor to run on")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text (one line per event, millisecond timestamps; default) or json (one JSON "
                             "object per line with the event's structured fields)")
    parser.add_argument("--log-level", default=None, help="debug, info, warn, error (default: the settings' base level)")
    parser.add_argument("--ready-file", default=None, help="write the pid to this file once started (for supervisors and tests)")
    parser.add_argument("--tls-stack", choices=TLS_STACK_CHOICES, default="auto",
                        help="auto (default): leave pyOpenSSL/cryptography out of the process when no broker uses "
                             "TLS (about 12 MiB less memory); always: keep it, for applications that use TLS "
                             "on their own")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false",
                        help="do not freeze the objects that exist after start (gc.freeze; see gwproactor.ops.gcfreeze)")


def run_from_args(args: Any) -> int:
    """Run with parsed ``add_run_arguments`` options."""
    spec = AppSpec(app=args.app, env_prefix=args.env_prefix, dotenv=args.dotenv)
    return run(spec, reactor_name=args.reactor, log_level=args.log_level, ready_file=args.ready_file,
               gc_freeze=args.gc_freeze, log_format=args.log_format, tls_stack=getattr(args, "tls_stack", "auto"))


def check(spec: AppSpec, *, as_json: bool = False, out: Any = None, err: Any = None) -> int:
    """``gwproactor check``: load and check the application's settings, start nothing, print them.

    The settings go to ``out`` (default stdout) as ``.env`` lines, or as JSON with ``as_json``, with
    secrets (passwords) masked; warnings and problems go to ``err`` (default stderr), one line each.
    Returns 0 when the settings can be used, :data:`EXIT_CONFIG` (2) otherwise.  Nothing is created, no
    lock is taken, nothing connects; a store held by a running process is reported, not an error.
    """
    import json

    from gwproactor.ops.systemd import Notifier
    from gwproactor.preflight import check_settings, setting_name, settings_lines, store_lock_holder

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    quiet = Notifier(path=None)  # a check (ExecStartPre=) reports to its own output, not as the service's status
    reactor = install_reactor("default")  # only stored by the endpoints built to check them; never run
    try:
        obj = load_app(spec.app)
        app_kind(obj, spec.app)
        settings = load_settings(_settings_class(obj), prefix=spec.env_prefix, dotenv=spec.dotenv)
    except ConfigError as e:
        return report_config_error(e, err, quiet)
    report = check_settings(settings, prefix=spec.env_prefix, reactor=reactor)
    if as_json:
        print(json.dumps(settings.to_dict(), indent=2, sort_keys=False), file=out)
    else:
        print("\n".join(settings_lines(settings, spec.env_prefix)), file=out)
    out.flush()
    for warning in report.warnings:
        print(f"gwproactor: warning: {warning}", file=err)
    directory = settings.store.directory
    holder = store_lock_holder(directory) if directory is not None else None
    if holder is not None:
        print(f"gwproactor: note: {setting_name(spec.env_prefix, 'store', 'directory')}={str(directory)!r} is in "
              f"use by process {holder} now; `run` fails while that process runs", file=err)
    if report.errors:
        return report_config_error(InvalidSettings(report.errors), err, quiet)
    print(f"gwproactor: settings OK ({spec.app}, {len(settings.links)} links, {len(settings.brokers)} brokers)",
          file=err)
    return 0


def add_check_arguments(parser: Any) -> None:
    """Add the ``check`` options to an argparse parser."""
    _add_app_arguments(parser)
    parser.add_argument("--json", dest="as_json", action="store_true", help="print the settings as JSON")


def check_from_args(args: Any) -> int:
    """Check with parsed ``add_check_arguments`` options."""
    return check(AppSpec(app=args.app, env_prefix=args.env_prefix, dotenv=args.dotenv), as_json=args.as_json)


def main(argv: list[str] | None = None) -> int:
    """``python -m gwproactor.runner --app package.module:name``."""
    import argparse

    parser = argparse.ArgumentParser(prog="gwproactor run", description="Run a gwproactor application.")
    add_run_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
