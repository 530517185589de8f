"""``twist gwproactor`` / ``twistd gwproactor``: the Twisted application plugin (``dropin/twisted/plugins/gwproactor_plugin.py`` in the checkout).

The reactor is chosen with twist's own option: ``twist --reactor=asyncio gwproactor --app ...``; its timers
run on the monotonic clock (:func:`~gwproactor.ops.clock.use_monotonic_time`) unless the settings' ``monotonic_time``
is False.  The settings are checked as ``gwproactor run`` checks them: a problem prints one line and exits with
status 2 before anything starts.  Under ``twist`` the log formats are gwproactor's: ``--log-format text`` gets
millisecond timestamps, ``--log-format json`` (twist's default when its output is not a terminal) one JSON
object per line (see :mod:`gwproactor.logs`).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IServiceMaker
from twisted.internet.error import ReactorNotRunning
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer

from gwproactor.errors import ConfigError
from gwproactor.ops.clock import use_monotonic_time
from gwproactor.ops.gcfreeze import freeze_after_start
from gwproactor.ops.resolver import resolve_ip_literals_inline
from gwproactor.runner import AppSpec, make_service, report_config_error

__all__ = ["GwproactorServiceMaker", "Options"]


class Options(usage.Options):
    """Options of ``twist gwproactor``."""

    optParameters = [
        ["app", "a", None, "package.module:name of a Proactor subclass or factory (required)"],
        ["env-prefix", None, "GWP", "prefix of the settings' environment variables"],
        ["dotenv", None, None, "a .env file with more settings"],
    ]
    optFlags = [
        ["no-gc-freeze", None, "do not freeze the objects that exist after start (gc.freeze)"],
    ]

    def postOptions(self) -> None:
        if not self["app"]:
            raise usage.UsageError("--app package.module:name is required")


@implementer(IServiceMaker, IPlugin)
class GwproactorServiceMaker:
    """Makes the application's proactor the service ``twist`` runs."""

    tapname = "gwproactor"
    description = "Run a gwproactor application (live actors, MQTT links, durable events)."
    options = Options

    def makeService(self, options: Options) -> Any:
        from twisted.internet import reactor

        _use_gwproactor_log_formats(getattr(options, "parent", None))
        resolve_ip_literals_inline(reactor)
        try:
            proactor = make_service(AppSpec(app=options["app"], env_prefix=options["env-prefix"],
                                            dotenv=options["dotenv"]), reactor)
        except ConfigError as e:
            raise SystemExit(report_config_error(e)) from None

        def shut_down(exit_code: int) -> None:
            # A shutdown requested by the application (not by twist itself) ends the process.
            try:
                reactor.stop()
            except ReactorNotRunning:
                pass

        if proactor.settings.monotonic_time:
            use_monotonic_time(reactor)  # before twist starts anything (startService does it too)
        proactor.when_shut_down().addCallback(shut_down)
        if not options["no-gc-freeze"]:
            # twist starts the application's services before the reactor runs this.
            reactor.callWhenRunning(freeze_after_start)
        return proactor


def _use_gwproactor_log_formats(twist_options: Any) -> None:
    """Swap twist's text / JSON log observers for gwproactor's (milliseconds; one JSON object per line).

    twist starts logging after ``makeService``, with the factory in its options; ``twistd``'s options
    have no such entry and are left alone.
    """
    from twisted.logger import jsonFileLogObserver, textFileLogObserver

    from gwproactor.logs import json_log_observer, text_log_observer

    try:
        factory = twist_options["fileLogObserverFactory"]
    except (KeyError, TypeError):
        return
    if factory is textFileLogObserver:
        twist_options["fileLogObserverFactory"] = text_log_observer
    elif factory is jsonFileLogObserver:
        twist_options["fileLogObserverFactory"] = json_log_observer
