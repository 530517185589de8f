"""``gwproactor demo``: a private broker, a child and a parent process linked over TLS, with an optional outage.

The child (:class:`~gwproactor.demo.apps.DemoChild`) generates readings; the parent
(:class:`~gwproactor.demo.apps.DemoParent`) records them.  The demo prints one status line per process about once a
second, cuts the child's connection for a while with ``--outage``, and ends with a summary whose exit status says
whether every event reached the parent exactly once.

The run lives here, next to the helpers it drives (:class:`~gwproactor_test.broker.PrivateBroker`,
:class:`~gwproactor_test.proxy.FaultProxy`, :class:`~gwproactor_test.process.ProactorProcess`); the ``gwproactor``
command finds it through the ``gwproactor.commands`` entry point :func:`add_demo_command`.  Nothing here needs
pytest: a plain ``pip install gwproactor`` runs the demo.  What a run is asked to do and what it reports is
library code, :mod:`gwproactor.demo.report`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, TextIO

import attrs

from gwproactor.demo.report import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_MOSQUITTO,
    EXIT_OK,
    DemoConfig,
    DemoSummary,
    LineTail,
    Records,
    StatusFile,
    add_demo_arguments,
    child_line,
    config_from_args,
    endpoint_target,
    endpoint_via_proxy,
    parent_line,
    settled,
)

__all__ = ["DemoRun", "add_demo_command", "run_demo"]

_COMPLETION_POLL_S = 0.1
_STATUS_PERIOD_S = 1.0
_STOP_TIMEOUT_S = 10.0
_DRAIN_TIMEOUT_S = 15.0

DEMO_HELP = "run two linked processes exchanging events through a private broker (optionally through an outage)"
"""The one-line help of ``gwproactor demo``."""


def add_demo_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``demo`` to the ``gwproactor`` command's ``subparsers``; the ``gwproactor.commands`` entry point.

    The subcommand's ``func`` runs :func:`run_demo`.
    """
    demo = subparsers.add_parser("demo", help=DEMO_HELP, description=DEMO_HELP)
    add_demo_arguments(demo)
    demo.set_defaults(func=run_demo)
    return demo


@attrs.define(eq=False)
class DemoRun:
    """One run of the demo on ``reactor``; :meth:`run` returns the exit status, :meth:`cleanup` undoes everything.

    :param config: what to do.
    :param reactor: the reactor to spawn processes and poll files with.
    :param out: where the status lines and the summary go.
    """

    config: DemoConfig
    reactor: Any
    out: TextIO = attrs.field(factory=lambda: sys.stdout)
    directory: Path | None = attrs.field(default=None, init=False)
    interrupted: bool = attrs.field(default=False, init=False)
    _broker: Any = attrs.field(default=None, init=False)
    _proxy: Any = attrs.field(default=None, init=False)
    _processes: dict[str, Any] = attrs.field(factory=dict, init=False)
    _cleanup: Any = attrs.field(default=None, init=False)
    _started_at: float = attrs.field(default=0.0, init=False)

    def say(self, text: str) -> None:
        """Print one line, prefixed with the seconds since the processes started."""
        elapsed = self.reactor.seconds() - self._started_at if self._started_at else 0.0
        self.out.write(f"{elapsed:6.1f}s  {text}\n")
        self.out.flush()

    async def run(self) -> int:
        """Run the demo to its end and clean up; return the exit status."""
        try:
            return await self._run()
        finally:
            await self.cleanup()

    async def _run(self) -> int:
        from gwproactor_test.process import ProactorProcess, ProcessStartError

        config = self.config
        self.directory = Path(tempfile.mkdtemp(prefix="gwproactor-demo-"))
        endpoint = await self._start_broker()
        child_endpoint = endpoint
        if config.outage:
            from gwproactor_test.proxy import FaultProxy

            target_host, target_port = endpoint_target(endpoint)
            self._proxy = FaultProxy(target_host, target_port, reactor=self.reactor)
            await self._proxy.start()
            child_endpoint = endpoint_via_proxy(endpoint, self._proxy.port)

        token = uuid.uuid4().hex[:6] if config.broker else ""
        parent_name = f"d1.demo{token}"
        child_name = f"{parent_name}.child"
        child_dir = self.directory / "child"
        parent_dir = self.directory / "parent"
        common = {
            "GWP_SHUTDOWN_GRACE_S": "1",
            "GWP_BROKERS__DEFAULT__BACKOFF_INITIAL_S": "0.25",
            "GWP_BROKERS__DEFAULT__BACKOFF_CAP_S": "1",
            "GWP_BROKERS__DEFAULT__CONNECT_TIMEOUT_S": "3",
            "GWP_BROKERS__DEFAULT__KEEPALIVE_S": "5",
        }
        link = {"ACK_TIMEOUT_S": "2", "HEARTBEAT_S": "1", "RECEIVE_DEADLINE_S": "4"}
        child_env = {
            **common,
            "GWP_LONG_NAME": child_name,
            "GWP_SHORT_NAME": "c",
            "GWP_BROKERS__DEFAULT__ENDPOINT": child_endpoint,
            "GWP_LINKS__PARENT__PEER_LONG_NAME": parent_name,
            "GWP_LINKS__PARENT__PEER_SHORT_NAME": "p",
            "GWP_LINKS__PARENT__UPSTREAM": "true",
            **{f"GWP_LINKS__PARENT__{k}": v for k, v in link.items()},
            "GWP_STORE__DIRECTORY": str(child_dir / "store"),
            "GWP_DEMO__RATE_HZ": repr(float(config.rate_hz)),
            "GWP_DEMO__COUNT": str(config.events),
            "GWP_DEMO__RECORD_FILE": str(child_dir / "durable.txt"),
            "GWP_DEMO__STATUS_FILE": str(child_dir / "status.jsonl"),
        }
        parent_env = {
            **common,
            "GWP_LONG_NAME": parent_name,
            "GWP_SHORT_NAME": "p",
            "GWP_BROKERS__DEFAULT__ENDPOINT": endpoint,
            "GWP_LINKS__CHILD__PEER_LONG_NAME": child_name,
            "GWP_LINKS__CHILD__PEER_SHORT_NAME": "c",
            **{f"GWP_LINKS__CHILD__{k}": v for k, v in link.items()},
            "GWP_STORE__DIRECTORY": str(parent_dir / "store"),
            "GWP_DEMO__RECORD_FILE": str(parent_dir / "received.txt"),
            "GWP_DEMO__STATUS_FILE": str(parent_dir / "status.jsonl"),
        }
        parent = ProactorProcess("gwproactor.demo.apps:DemoParent", parent_env, parent_dir, reactor=self.reactor)
        child = ProactorProcess("gwproactor.demo.apps:DemoChild", child_env, child_dir, reactor=self.reactor)
        self._processes = {"parent": parent, "child": child}

        self._started_at = self.reactor.seconds()
        self.say(
            f"starting parent {parent_name} and child {child_name}: {config.events} events at {config.rate_hz:g} Hz"
        )
        from twisted.internet.defer import FirstError, gatherResults

        try:
            await gatherResults([parent.start(), child.start()], consumeErrors=True)
        except FirstError as e:
            failure = e.subFailure
            if not failure.check(ProcessStartError):
                failure.raiseException()
            self.out.write(f"gwproactor demo: {failure.getErrorMessage()}\n")
            return EXIT_FAILED
        return await self._watch(child, parent, child_dir, parent_dir)

    async def _start_broker(self) -> str:
        config = self.config
        if config.broker:
            self.say(f"using the broker at {config.broker}")
            return config.broker
        from gwproactor_test.broker import PrivateBroker

        assert self.directory is not None
        self._broker = PrivateBroker(self.directory / "broker", reactor=self.reactor)
        await self._broker.start()
        kind = "plain TCP" if config.plain else "TLS with generated certificates"
        port = self._broker.port if config.plain else self._broker.tls_port
        self.say(f"private mosquitto on 127.0.0.1:{port} ({kind})")
        return str(self._broker.endpoint(tls=not config.plain))

    async def _watch(self, child: Any, parent: Any, child_dir: Path, parent_dir: Path) -> int:
        from twisted.internet.task import deferLater

        config = self.config
        child_status = StatusFile(LineTail(child_dir / "status.jsonl"))
        parent_status = StatusFile(LineTail(parent_dir / "status.jsonl"))
        received = Records(LineTail(parent_dir / "received.txt"))
        deadline = self._started_at + config.timeout_s
        next_status = self.reactor.seconds()
        outage_at = max(1, config.events // 5)
        outage_end: float | None = None
        outage_done = not config.outage
        max_pending = 0
        timed_out = False
        finished_at: float | None = None
        status_lines_at_finish = (0, 0)

        while True:
            now = self.reactor.seconds()
            delivered = received.refresh()
            if config.outage and not outage_done:
                if outage_end is None and delivered >= outage_at:
                    self._proxy.cut()
                    self._proxy.refuse(True)
                    outage_end = now + config.outage_seconds
                    self.say(f"OUTAGE: link cut for {config.outage_seconds:g} s ({delivered} readings delivered)")
                elif outage_end is not None and now >= outage_end:
                    self._proxy.refuse(False)
                    outage_done = True
                    self.say("OUTAGE OVER: the child may reconnect; its backlog drains")
            c, p = child_status.refresh(), parent_status.refresh()
            if c is not None:
                max_pending = max(max_pending, c.get("pending") or 0, c.get("max_pending") or 0)
            printed = now >= next_status
            if printed:
                next_status = now + _STATUS_PERIOD_S
                self.say(child_line(c, config.events))
                self.say(parent_line(p))
            if finished_at is None and delivered >= config.events and outage_done:
                finished_at = now
                status_lines_at_finish = (child_status.lines_read, parent_status.lines_read)
                self.say(f"all {config.events} readings delivered; waiting for the child's acks")
            if finished_at is not None and (
                settled(child_status, parent_status, status_lines_at_finish)
                or now >= finished_at + _DRAIN_TIMEOUT_S
            ):
                if not printed:
                    self.say(child_line(c, config.events))
                    self.say(parent_line(p))
                break
            for name, process in (("child", child), ("parent", parent)):
                if not process.running:
                    self.say(f"the {name} exited unexpectedly (status {process.exit_code}); its log:")
                    self.out.write(process.log_tail() + "\n")
                    return EXIT_FAILED
            if now >= deadline:
                timed_out = True
                hint = "" if config.keep else " (run with --keep to keep the process logs)"
                self.say(f"timed out after {config.timeout_s:g} s with {delivered} of {config.events} readings{hint}")
                break
            await deferLater(self.reactor, _COMPLETION_POLL_S, lambda: None)

        elapsed = (finished_at or self.reactor.seconds()) - self._started_at
        self.say("stopping the processes")
        await self._stop_processes()
        c, p = child_status.refresh() or {}, parent_status.refresh() or {}
        received.refresh()
        durable = Records(LineTail(child_dir / "durable.txt"))
        durable.refresh()
        summary = DemoSummary(
            expected=config.events,
            generated=int(c.get("generated") or 0),
            durable=len(durable.ids),
            delivered=len(received.ids),
            delivered_twice=received.repeats,
            missing=len(durable.ids - received.ids),
            duplicates_dropped=int(p.get("duplicates_dropped") or 0),
            max_backlog=max(max_pending, int(c.get("max_pending") or 0)),
            reuploaded=int(c.get("reuploaded") or 0),
            elapsed_s=elapsed,
            timed_out=timed_out,
        )
        for line in summary.lines():
            self.out.write(line + "\n")
        self.out.flush()
        return EXIT_OK if summary.ok else EXIT_FAILED

    async def _stop_processes(self) -> None:
        waits = []
        for process in self._processes.values():
            if process.running:
                d = process.terminate()
                timer = self.reactor.callLater(_STOP_TIMEOUT_S, process.kill)
                d.addBoth(lambda r, t=timer: (t.cancel() if t.active() else None, r)[1])
                waits.append(d)
        if waits:
            from twisted.internet.defer import DeferredList

            await DeferredList(waits, consumeErrors=True)

    def cleanup(self) -> Any:
        """Stop every process, the proxy and the broker, and remove the temporary directory (unless ``keep``).

        Idempotent: every call returns a Deferred that fires once the one cleanup is done.
        """
        from twisted.internet.defer import Deferred

        if self._cleanup is None:
            self._cleanup = Deferred.fromCoroutine(self._do_cleanup())
        waiter: Deferred = Deferred()

        def tell(result: object) -> object:
            waiter.callback(None)
            return result

        self._cleanup.addBoth(tell)
        return waiter

    async def _do_cleanup(self) -> None:
        try:
            if self._proxy is not None:
                await self._proxy.stop()
        except Exception as e:  # pragma: no cover - best effort
            self.out.write(f"gwproactor demo: stopping the proxy failed: {e}\n")
        try:
            await self._stop_processes()
            for process in self._processes.values():
                await process.close()
        except Exception as e:  # pragma: no cover - best effort
            self.out.write(f"gwproactor demo: stopping the processes failed: {e}\n")
        try:
            if self._broker is not None and self._broker.running:
                await self._broker.stop()
        except Exception as e:  # pragma: no cover - best effort
            self.out.write(f"gwproactor demo: stopping mosquitto failed: {e}\n")
        if self.directory is not None and self.directory.exists():
            if self.config.keep:
                self.out.write(f"kept logs, stores and records in {self.directory}\n")
            else:
                shutil.rmtree(self.directory, ignore_errors=True)
        self.out.flush()


# ---------------------------------------------------------------------------------------------- entry point


def _start_error_logging() -> None:
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def run_demo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``gwproactor demo`` with parsed arguments on the global reactor; return the exit status.

    Exits with :data:`EXIT_NO_MOSQUITTO` at once, with install instructions, when Mosquitto is missing and no
    ``--broker`` was given.
    """
    stream = out if out is not None else sys.stdout
    config = config_from_args(args)
    if config.broker is None:
        from gwproactor_test.broker import find_mosquitto

        if find_mosquitto() is None:
            print(
                "gwproactor demo needs the Mosquitto MQTT broker, which is not installed.\n"
                "Install it with:\n"
                "    sudo apt-get install mosquitto     # Debian / Ubuntu\n"
                "    brew install mosquitto             # macOS\n"
                "or point the demo at a broker you have: gwproactor demo --broker tcp:host=HOST:port=1883",
                file=sys.stderr,
            )
            return EXIT_NO_MOSQUITTO
    if config.outage and config.broker:
        try:
            endpoint_via_proxy(config.broker, 1)
            endpoint_target(config.broker)
        except ValueError as e:
            print(f"gwproactor demo: {e}", file=sys.stderr)
            return EXIT_NO_MOSQUITTO

    from twisted.internet import reactor as global_reactor
    from twisted.internet.defer import CancelledError, Deferred
    from twisted.internet.task import react

    from gwproactor.ops.clock import use_monotonic_time

    if global_reactor.running:
        print("gwproactor demo: the reactor is already running; use DemoRun(config, reactor).run() instead",
              file=sys.stderr)
        return EXIT_FAILED
    # The demo configures its applications itself: settings meant for another application must not leak in.
    for name in [name for name in os.environ if name.startswith("GWP_")]:
        del os.environ[name]

    use_monotonic_time(global_reactor)  # the outage, drain and overall timeouts ignore wall-clock steps
    status = {"code": EXIT_FAILED}
    runs: list[DemoRun] = []
    _start_error_logging()

    def main(reactor: Any) -> Any:
        demo = DemoRun(config, reactor, out=stream)
        runs.append(demo)

        async def go() -> None:
            status["code"] = await demo.run()

        def failed(failure: Any) -> None:
            if demo.interrupted and failure.check(CancelledError):
                return
            stream.write(f"gwproactor demo failed: {failure.getErrorMessage()}\n")
            stream.flush()
            status["code"] = EXIT_FAILED

        running = Deferred.fromCoroutine(go())

        def on_shutdown() -> Any:
            # Ctrl-C / SIGTERM stop the reactor before the run ends: clean up, then stop the run itself.
            if demo._cleanup is None:
                demo.interrupted = True
                stream.write("\ninterrupted: cleaning up\n")
                stream.flush()
            cleaned = demo.cleanup()
            running.cancel()
            return cleaned

        reactor.addSystemEventTrigger("before", "shutdown", on_shutdown)
        return running.addErrback(failed)

    try:
        react(main)
    except SystemExit:
        pass
    if runs and runs[0].interrupted:
        return EXIT_INTERRUPTED
    return status["code"]
