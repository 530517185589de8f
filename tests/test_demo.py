"""``gwproactor demo``: the full demo as a subprocess (outage, summary, cleanup, SIGTERM), the missing-Mosquitto path,
and the pieces it is made of (endpoint rewriting, status lines, summary verdict)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gwproactor.cli import build_parser
from gwproactor.demo.report import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_MOSQUITTO,
    EXIT_OK,
    DemoSummary,
    LineTail,
    Records,
    child_line,
    config_from_args,
    endpoint_via_proxy,
    parent_line,
)
from gwproactor_test.plugin import require_mosquitto

DEMO = [sys.executable, "-m", "gwproactor", "demo"]


def demo_env(tmp_root: Path, **extra: str) -> dict[str, str]:
    """The environment of a demo subprocess whose temporary files all go under ``tmp_root``."""
    tmp_root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GWP_")}
    env.update(TMPDIR=str(tmp_root), PYTHONUNBUFFERED="1", **extra)
    return env


def processes_mentioning(text: str) -> list[str]:
    """Command lines of the running processes whose arguments contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def assert_nothing_left(tmp_root: Path) -> None:
    """No temp file and no mosquitto / proactor process of this demo is left."""
    assert list(tmp_root.iterdir()) == []
    assert processes_mentioning(str(tmp_root)) == []


# ---------------------------------------------------------------------------------------------- live


@pytest.mark.live
def test_demo_outage_delivers_everything_exactly_once_and_cleans_up(tmp_path: Path) -> None:
    """`gwproactor demo --outage` shows the outage and the backlog, exits 0 with a full summary, and leaves nothing."""
    require_mosquitto()
    tmp_root = tmp_path / "tmp"
    started = time.monotonic()
    result = subprocess.run(
        [*DEMO, "--outage", "--events", "150", "--rate", "100", "--outage-seconds", "2", "--timeout", "60"],
        env=demo_env(tmp_root),
        capture_output=True,
        text=True,
        timeout=90,
    )
    elapsed = time.monotonic() - started
    out = result.stdout
    assert result.returncode == EXIT_OK, out + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "TLS with generated certificates" in out
    assert "OUTAGE: link cut for 2 s" in out
    assert "OUTAGE OVER" in out
    assert re.search(r"^\s+[\d.]+s  child  \S+ +gen +\d+/150 durable +\d+ pending +\d+ acked", out, re.M), out
    assert re.search(r"^\s+[\d.]+s  parent \S+ +readings +\d+ dup dropped \d+", out, re.M), out
    backlog = [int(m) for m in re.findall(r"child  connecting gen .* pending +(\d+)", out)]
    assert backlog and max(backlog) > 0, "the status lines show the backlog building during the outage"
    assert re.search(r"^  generated +150$", out, re.M), out
    assert re.search(r"^  delivered +150 distinct readings at the parent \(0 delivered twice\)$", out, re.M), out
    assert re.search(r"^  duplicates dropped +\d+", out, re.M), out
    max_backlog = int(re.search(r"^  max backlog +(\d+) events", out, re.M).group(1))  # type: ignore[union-attr]
    assert max_backlog > 0
    assert re.search(r"^  reuploaded +\d+$", out, re.M), out
    assert re.search(r"^  elapsed +[\d.]+ s$", out, re.M), out
    assert "OK: every event was delivered exactly once" in out
    assert_nothing_left(tmp_root)
    assert elapsed < 60, f"the demo took {elapsed:.1f} s"


@pytest.mark.live
def test_demo_sigterm_cleans_up_and_exits_130(tmp_path: Path) -> None:
    """SIGTERM to the demo mid-run (during the outage) stops every process it made, removes its files, exits 130."""
    require_mosquitto()
    tmp_root = tmp_path / "tmp"
    proc = subprocess.Popen(
        [*DEMO, "--outage", "--events", "1000", "--rate", "50", "--outage-seconds", "30"],
        env=demo_env(tmp_root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output = b""
    try:
        deadline = time.monotonic() + 60
        while b"OUTAGE: link cut" not in output:
            assert proc.poll() is None, output.decode()
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no outage reported:\n{output.decode()}"
            ready, _, _ = select.select([proc.stdout], [], [], remaining)
            if ready:
                output += os.read(proc.stdout.fileno(), 65536)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        output += rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = output.decode()
    assert proc.returncode == EXIT_INTERRUPTED, text
    assert "interrupted: cleaning up" in text
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert_nothing_left(tmp_root)


# ---------------------------------------------------------------------------------------------- no mosquitto


def test_demo_without_mosquitto_says_how_to_install_it_and_exits_2(tmp_path: Path) -> None:
    """Without Mosquitto (and no --broker) the demo prints the apt-get / brew commands and exits 2 at once."""
    bin_dir = Path(sys.executable).parent
    tmp_root = tmp_path / "tmp"
    env = demo_env(tmp_root, PATH=str(bin_dir), GWPROACTOR_MOSQUITTO=str(tmp_path / "no-mosquitto-here"))
    started = time.monotonic()
    result = subprocess.run([*DEMO, "--outage"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_NO_MOSQUITTO, result.stdout + result.stderr
    assert "sudo apt-get install mosquitto" in result.stderr
    assert "brew install mosquitto" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert list(tmp_root.iterdir()) == []
    assert time.monotonic() - started < 30


# ---------------------------------------------------------------------------------------------- pieces


def test_find_mosquitto_honours_the_override_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GWPROACTOR_MOSQUITTO names the only mosquitto considered: a missing path means none is found."""
    from gwproactor_test.broker import find_mosquitto

    monkeypatch.setenv("GWPROACTOR_MOSQUITTO", str(tmp_path / "missing"))
    assert find_mosquitto() is None
    fake = tmp_path / "mosquitto"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("GWPROACTOR_MOSQUITTO", str(fake))
    assert find_mosquitto() == str(fake)


def test_demo_arguments_have_the_documented_defaults() -> None:
    """`gwproactor demo` defaults: 300 events at 50 Hz, a 4 s outage when asked, TLS, 120 s timeout."""
    config = config_from_args(build_parser().parse_args(["demo"]))
    assert (config.events, config.rate_hz, config.outage, config.outage_seconds) == (300, 50.0, False, 4.0)
    assert (config.broker, config.plain, config.keep, config.timeout_s) == (None, False, False, 120.0)
    config = config_from_args(
        build_parser().parse_args(["demo", "--outage", "--events", "7", "--plain", "--broker", "tcp:host=h:port=1"])
    )
    assert (config.outage, config.events, config.plain, config.broker) == (True, 7, True, "tcp:host=h:port=1")


@pytest.mark.parametrize("argv", [["--events", "0"], ["--rate", "-1"], ["--outage-seconds", "0"], ["--timeout", "x"]])
def test_demo_rejects_bad_numbers(argv: list[str]) -> None:
    """Bad numeric options are usage errors (exit 2), not crashes."""
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["demo", *argv])
    assert e.value.code == 2


def test_endpoint_via_proxy_rewrites_tcp_and_wraps_tls() -> None:
    """tcp: gets the proxy's address; tls: keeps its host for verification and connects through endpoint=tcp:..."""
    assert endpoint_via_proxy("tcp:host=broker:port=1883:timeout=5", 4000) == (
        "tcp:host=127.0.0.1:port=4000:timeout=5"
    )
    tls = r"tls:host=127.0.0.1:port=8883:trustRoots=/tmp/a\:b:certificate=/c.crt:privateKey=/c.key"
    assert endpoint_via_proxy(tls, 4000) == tls + r":endpoint=tcp\:host\=127.0.0.1\:port\=4000"
    with pytest.raises(ValueError, match="tcp: or tls:"):
        endpoint_via_proxy("unix:path=/x", 4000)
    with pytest.raises(ValueError, match="endpoint="):
        endpoint_via_proxy(r"tls:host=h:port=1:endpoint=tcp\:host\=x\:port\=2", 4000)


def test_wrapped_tls_endpoint_string_parses_in_twisted() -> None:
    """The tls: string made for the proxy is accepted by Twisted's clientFromString."""
    from twisted.internet.endpoints import clientFromString
    from twisted.internet.testing import MemoryReactorClock

    wrapped = endpoint_via_proxy("tls:host=127.0.0.1:port=8883", 4000)
    assert clientFromString(MemoryReactorClock(), wrapped) is not None


def test_status_lines_are_compact_and_readable() -> None:
    """Status lines show link state, generated/expected, durable, pending, acked, reuploads, RTT; or 'starting'."""
    child = {"link": "active", "generated": 120, "durable": 120, "pending": 3, "acked": 117, "reuploaded": 0,
             "rtt_ms": 1.234}
    assert child_line(child, 300) == (
        "child  active     gen  120/300 durable  120 pending    3 acked  117 reup   0 rtt 1.2ms"
    )
    assert child_line({**child, "rtt_ms": None, "pending": None}, 300).endswith("rtt -")
    assert child_line(None, 300) == "child  starting"
    parent = {"links": {"child": "active"}, "readings": 117, "duplicates_dropped": 2}
    assert parent_line(parent) == "parent active     readings  117 dup dropped 2"
    assert parent_line(None) == "parent starting"


def test_line_tail_reads_only_complete_new_lines(tmp_path: Path) -> None:
    """The file tail returns each complete line once and holds a partial last line until it is finished."""
    path = tmp_path / "records"
    records = Records(LineTail(path))
    assert records.refresh() == 0
    with open(path, "a") as f:
        f.write("a 1\nb 2\nc")
    assert records.refresh() == 2
    with open(path, "a") as f:
        f.write(" 3\na 1\n")
    assert records.refresh() == 3
    assert records.repeats == 1


def test_summary_is_ok_only_when_everything_arrived_exactly_once() -> None:
    """The verdict: every generated reading delivered once, none missing, no timeout; otherwise it says what failed."""
    good = DemoSummary(expected=10, generated=10, durable=10, delivered=10, delivered_twice=0, missing=0,
                       duplicates_dropped=3, max_backlog=7, reuploaded=4, elapsed_s=2.5)
    assert good.ok
    assert good.lines()[-1] == "OK: every event was delivered exactly once"
    assert "  max backlog         7 events pending at the child" in good.lines()
    import attrs

    for change, words in (
        ({"delivered": 9}, "1 not delivered"),
        ({"delivered_twice": 1}, "1 delivered twice"),
        ({"missing": 2}, "2 durable but missing"),
        ({"timed_out": True}, "timed out"),
        ({"generated": 8}, "8 of 10 generated"),
    ):
        bad = attrs.evolve(good, **change)
        assert not bad.ok
        assert bad.lines()[-1].startswith("FAILED: ") and words in bad.lines()[-1]
    assert EXIT_FAILED == 1


def test_old_demo_cli_module_still_exports_the_moved_names() -> None:
    """gwproactor.demo.cli is a shim: the report names are the library's, DemoRun/run_demo resolve (through the
    gwproactor.commands entry point) to gwproactor_test.demo's."""
    import gwproactor.demo.cli as old
    import gwproactor.demo.report as report
    import gwproactor_test.demo as moved

    assert old.endpoint_via_proxy is report.endpoint_via_proxy and old.DemoSummary is report.DemoSummary
    assert old.DemoRun is moved.DemoRun and old.run_demo is moved.run_demo
    with pytest.raises(AttributeError):
        old.no_such_name  # noqa: B018


def test_demo_command_comes_from_the_entry_point() -> None:
    """The gwproactor command finds ``demo`` through the gwproactor.commands entry point into gwproactor_test."""
    import gwproactor_test.demo
    from gwproactor.cli import command_module

    assert command_module("demo") is gwproactor_test.demo
    args = build_parser(only="demo").parse_args(["demo", "--events", "3"])
    assert args.func is gwproactor_test.demo.run_demo and args.events == 3
