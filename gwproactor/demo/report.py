"""What a ``gwproactor demo`` run is asked to do and what it reports (library code, no processes or brokers).

:class:`DemoConfig` and its command-line options, :class:`DemoSummary` and the exit statuses, the per-process
status lines, the readers of the record and status files the demo applications (:mod:`gwproactor.demo.apps`)
write, and the rewriting of a broker endpoint through a fault proxy.  The run itself (a private broker, two
processes, a fault proxy) is :mod:`gwproactor_test.demo`, next to the test helpers it uses.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "DemoConfig",
    "DemoSummary",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NO_MOSQUITTO",
    "EXIT_OK",
    "LineTail",
    "Records",
    "StatusFile",
    "add_demo_arguments",
    "child_line",
    "config_from_args",
    "endpoint_target",
    "endpoint_via_proxy",
    "parent_line",
    "settled",
]

EXIT_OK = 0
"""Every event reached the parent exactly once."""
EXIT_FAILED = 1
"""Something was lost, duplicated, timed out or failed."""
EXIT_NO_MOSQUITTO = 2
"""Mosquitto is not installed and no ``--broker`` was given (also argparse's usage-error status)."""
EXIT_INTERRUPTED = 130
"""Interrupted by Ctrl-C or SIGTERM (after cleaning up)."""



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


def endpoint_target(endpoint: str) -> tuple[str, int]:
    """Return the ``(host, port)`` a ``tcp:`` or ``tls:`` endpoint string connects to.

    :raises ValueError: when the endpoint names no ``host=`` or no ``port=``.
    """
    fields = dict(
        part.split("=", 1) for part in _UNESCAPED_COLON.split(endpoint)[1:] if "=" in part
    )
    if "host" not in fields or "port" not in fields:
        raise ValueError(f"--outage needs host= and port= in the broker endpoint, got {endpoint!r}")
    return fields["host"].replace("\\:", ":"), int(fields["port"])


# ---------------------------------------------------------------------------------------------- files


@attrs.define(eq=False)
class LineTail:
    """Reads the complete lines appended to a file since the last read."""

    path: Path
    _offset: int = 0
    _partial: bytes = b""

    def read(self) -> list[str]:
        """Return the complete lines appended since the last call (none if the file cannot be read yet)."""
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
class StatusFile:
    """The latest JSON status line an application wrote, and how many were read."""

    tail: LineTail
    latest: dict[str, Any] | None = None
    lines_read: int = 0

    def refresh(self) -> dict[str, Any] | None:
        """Read the new lines and return the latest status (``None`` before the first one)."""
        for line in self.tail.read():
            try:
                self.latest = json.loads(line)
            except ValueError:
                continue
            self.lines_read += 1
        return self.latest


@attrs.define(eq=False)
class Records:
    """Event ids an application recorded (one ``"id seq"`` line each), with repeats counted."""

    tail: LineTail
    ids: set[str] = attrs.Factory(set)
    repeats: int = 0

    def refresh(self) -> int:
        """Read the new lines and return how many distinct ids were recorded."""
        for line in self.tail.read():
            event_id = line.split()[0]
            if event_id in self.ids:
                self.repeats += 1
            else:
                self.ids.add(event_id)
        return len(self.ids)


# ---------------------------------------------------------------------------------------------- status lines


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


def settled(child: StatusFile, parent: StatusFile, since: tuple[int, int]) -> bool:
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
