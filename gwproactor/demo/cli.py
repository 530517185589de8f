"""``gwproactor demo``: a private broker, a child and a parent process linked over TLS, with an optional outage.

The child (:class:`~gwproactor.demo.apps.DemoChild`) generates readings; the parent
(:class:`~gwproactor.demo.apps.DemoParent`) records them.  The demo prints one status line per process about once a
second, cuts the child's connection for a while with ``--outage``, and ends with a summary whose exit status says
whether every event reached the parent exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, TextIO

import attrs
from twisted.internet.defer import CancelledError, Deferred, DeferredList

__all__ = [
    "DemoConfig",
    "DemoRun",
    "DemoSummary",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NO_MOSQUITTO",
    "EXIT_OK",
    "add_demo_arguments",
    "endpoint_via_proxy",
    "run_demo",
]

EXIT_OK = 0
"""Every event reached the parent exactly once."""
EXIT_FAILED = 1
"""Something was lost, duplicated, timed out or failed."""
EXIT_NO_MOSQUITTO = 2
"""Mosquitto is not installed and no ``--broker`` was given (also argparse's usage-error status)."""
EXIT_INTERRUPTED = 130
"""Interrupted by Ctrl-C or SIGTERM (after cleaning up)."""

_COMPLETION_POLL_S = 0.1
_STATUS_PERIOD_S = 1.0
_STOP_TIMEOUT_S = 10.0
_DRAIN_TIMEOUT_S = 15.0


@attrs.define(frozen=True, kw_only=True)
class DemoConfig:
    """What ``gwproactor demo`` does.

    :param events: how many readings the child generates.
    :param rate_hz: readings per second.
    :param outage: cut the child's link once some readings were delivered.
    :param outage_seconds: how long the outage lasts.
    :param broker: a Twisted client endpoint string of an existing broker (``None``: start a private Mosquitto).
    :param plain: link over plain TCP instead of TLS (private broker only).
    :param keep: keep the temporary directory (logs, stores, records) and print where it is.
    :param timeout_s: give up after this many seconds of running.
    """

    events: int = 300
    rate_hz: float = 50.0
    outage: bool = False
    outage_seconds: float = 4.0
    broker: str | None = None
    plain: bool = False
    keep: bool = False
    timeout_s: float = 120.0


@attrs.define(frozen=True, kw_only=True)
class DemoSummary:
    """The outcome of a demo run.

    :param expected: readings the child was asked to generate.
    :param generated: readings the child generated.
    :param durable: readings the child recorded as durable.
    :param delivered: distinct readings the parent's application accepted.
    :param delivered_twice: readings the parent's application accepted more than once (must be 0).
    :param missing: readings durable at the child but never accepted by the parent.
    :param duplicates_dropped: redeliveries the parent recognised and dropped before its application.
    :param max_backlog: the largest number of events pending at the child.
    :param reuploaded: events the child sent again (after a reconnect or an ack timeout).
    :param elapsed_s: seconds from the processes' start to the last reading.
    :param timed_out: the run hit ``--timeout``.
    """

    expected: int
    generated: int
    durable: int
    delivered: int
    delivered_twice: int
    missing: int
    duplicates_dropped: int
    max_backlog: int
    reuploaded: int
    elapsed_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """True when every generated reading reached the parent's application exactly once."""
        return (
            not self.timed_out
            and self.generated == self.expected
            and self.delivered == self.expected
            and self.delivered_twice == 0
            and self.missing == 0
        )

    def lines(self) -> list[str]:
        """The summary as printed at the end of the demo."""
        verdict = (
            "OK: every event was delivered exactly once"
            if self.ok
            else "FAILED: "
            + ", ".join(
                part
                for part in (
                    "timed out" if self.timed_out else "",
                    f"{self.expected - self.delivered} not delivered" if self.delivered < self.expected else "",
                    f"{self.delivered_twice} delivered twice" if self.delivered_twice else "",
                    f"{self.missing} durable but missing" if self.missing else "",
                    f"{self.generated} of {self.expected} generated" if self.generated != self.expected else "",
                )
                if part
            )
        )
        return [
            "summary",
            f"  generated           {self.generated}",
            f"  delivered           {self.delivered} distinct readings at the parent "
            f"({self.delivered_twice} delivered twice)",
            f"  duplicates dropped  {self.duplicates_dropped} (redeliveries the parent recognised)",
            f"  max backlog         {self.max_backlog} events pending at the child",
            f"  reuploaded          {self.reuploaded}",
            f"  elapsed             {self.elapsed_s:.1f} s",
            verdict,
        ]


def add_demo_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``demo`` options to ``parser`` and return it."""
    parser.add_argument("--outage", action="store_true", help="cut the child's link for a while once events flow")
    parser.add_argument("--events", type=_positive_int, default=300, metavar="N", help="readings to generate (300)")
    parser.add_argument("--rate", type=_non_negative_float, default=50.0, metavar="HZ", help="readings per second (50)")
    parser.add_argument(
        "--outage-seconds", type=_positive_float, default=4.0, metavar="S", help="length of the outage (4)"
    )
    parser.add_argument(
        "--broker",
        default=None,
        metavar="ENDPOINT",
        help="Twisted client endpoint of an existing broker, e.g. tcp:host=localhost:port=1883 "
        "(default: start a private Mosquitto)",
    )
    parser.add_argument("--plain", action="store_true", help="link over plain TCP instead of TLS")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, stores, records)")
    parser.add_argument(
        "--timeout", type=_positive_float, default=120.0, metavar="S", help="give up after S seconds (120)"
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    """Build a :class:`DemoConfig` from parsed ``demo`` arguments."""
    return DemoConfig(
        events=args.events,
        rate_hz=args.rate,
        outage=args.outage,
        outage_seconds=args.outage_seconds,
        broker=args.broker,
        plain=args.plain,
        keep=args.keep,
        timeout_s=args.timeout,
    )


# ---------------------------------------------------------------------------------------------- endpoint strings

_UNESCAPED_COLON = re.compile(r"(?<!\\):")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def _field_key(part: str) -> str:
    return part.split("=", 1)[0] if "=" in part else ""


def endpoint_via_proxy(endpoint: str, port: int, host: str = "127.0.0.1") -> str:
    """Return ``endpoint`` rewritten to connect through a TCP proxy at ``host:port``.

    A ``tcp:`` endpoint gets the proxy's host and port.  A ``tls:`` endpoint keeps its ``host`` (so the broker's
    certificate is still checked against it) and gains ``endpoint=tcp:...`` for the underlying connection.

    :raises ValueError: for other endpoint types, or a ``tls:`` endpoint that already wraps another endpoint.
    """
    parts = _UNESCAPED_COLON.split(endpoint)
    kind, fields = parts[0], parts[1:]
    if kind == "tcp":
        kept = [f for f in fields if _field_key(f) not in ("host", "port")]
        return ":".join(["tcp", f"host={host}", f"port={port}", *kept])
    if kind == "tls":
        if any(_field_key(f) == "endpoint" for f in fields):
            raise ValueError("a tls: endpoint that already names an endpoint= cannot be routed through the proxy")
        return ":".join(["tls", *fields, "endpoint=" + _escape(f"tcp:host={host}:port={port}")])
    raise ValueError(f"--outage needs a tcp: or tls: broker endpoint, got {kind!r}")


def _endpoint_target(endpoint: str) -> tuple[str, int]:
    fields = dict(
        part.split("=", 1) for part in _UNESCAPED_COLON.split(endpoint)[1:] if "=" in part
    )
    if "host" not in fields or "port" not in fields:
        raise ValueError(f"--outage needs host= and port= in the broker endpoint, got {endpoint!r}")
    return fields["host"].replace("\\:", ":"), int(fields["port"])


# ---------------------------------------------------------------------------------------------- files


@attrs.define(eq=False)
class _LineTail:
    """Reads the complete lines appended to a file since the last read."""

    path: Path
    _offset: int = 0
    _partial: bytes = b""

    def read(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return []
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in complete if line.strip()]


@attrs.define(eq=False)
class _StatusFile:
    """The latest JSON status line an application wrote, and how many were read."""

    tail: _LineTail
    latest: dict[str, Any] | None = None
    lines_read: int = 0

    def refresh(self) -> dict[str, Any] | None:
        for line in self.tail.read():
            try:
                self.latest = json.loads(line)
            except ValueError:
                continue
            self.lines_read += 1
        return self.latest


@attrs.define(eq=False)
class _Records:
    """Event ids an application recorded (one ``"id seq"`` line each), with repeats counted."""

    tail: _LineTail
    ids: set[str] = attrs.Factory(set)
    repeats: int = 0

    def refresh(self) -> int:
        for line in self.tail.read():
            event_id = line.split()[0]
            if event_id in self.ids:
                self.repeats += 1
            else:
                self.ids.add(event_id)
        return len(self.ids)


# ---------------------------------------------------------------------------------------------- the run


def _num(value: Any) -> str:
    return "-" if value is None else str(value)


def child_line(status: dict[str, Any] | None, expected: int) -> str:
    """Format the child's status line (``status`` as written by :class:`~gwproactor.demo.apps.DemoChild`)."""
    if status is None:
        return "child  starting"
    rtt = status.get("rtt_ms")
    rtt_text = "-" if rtt is None else f"{rtt:.1f}ms"
    return (
        f"child  {_num(status.get('link')):<10} gen {status.get('generated', 0):>4}/{expected}"
        f" durable {status.get('durable', 0):>4} pending {_num(status.get('pending')):>4}"
        f" acked {status.get('acked', 0):>4} reup {status.get('reuploaded', 0):>3} rtt {rtt_text}"
    )


def parent_line(status: dict[str, Any] | None) -> str:
    """Format the parent's status line (``status`` as written by :class:`~gwproactor.demo.apps.DemoParent`)."""
    if status is None:
        return "parent starting"
    links = status.get("links") or {}
    state = next(iter(links.values()), None)
    return (
        f"parent {_num(state):<10} readings {status.get('readings', 0):>4}"
        f" dup dropped {status.get('duplicates_dropped', 0)}"
    )


def _settled(child: _StatusFile, parent: _StatusFile, since: tuple[int, int]) -> bool:
    """True when both applications reported since the ``(child, parent)`` line counts ``since`` and the child
    has nothing pending any more.

    Line counts, not the lines' times: those are another process's clock.
    """
    return (
        child.lines_read > since[0]
        and parent.lines_read > since[1]
        and child.latest is not None
        and child.latest.get("pending") == 0
    )


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

            target_host, target_port = _endpoint_target(endpoint)
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
        child_status = _StatusFile(_LineTail(child_dir / "status.jsonl"))
        parent_status = _StatusFile(_LineTail(parent_dir / "status.jsonl"))
        received = _Records(_LineTail(parent_dir / "received.txt"))
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
                _settled(child_status, parent_status, status_lines_at_finish)
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
        durable = _Records(_LineTail(child_dir / "durable.txt"))
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
            await DeferredList(waits, consumeErrors=True)

    def cleanup(self) -> Any:
        """Stop every process, the proxy and the broker, and remove the temporary directory (unless ``keep``).

        Idempotent: every call returns a Deferred that fires once the one cleanup is done.
        """
        if self._cleanup is None:
            self._cleanup = Deferred.fromCoroutine(self._do_cleanup())
        waiter: Deferred = Deferred()
        self._cleanup.addBoth(lambda r: (waiter.callback(None), r)[1])
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
            _endpoint_target(config.broker)
        except ValueError as e:
            print(f"gwproactor demo: {e}", file=sys.stderr)
            return EXIT_NO_MOSQUITTO

    from twisted.internet import reactor as global_reactor
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

    def main(reactor: Any) -> Deferred:
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
