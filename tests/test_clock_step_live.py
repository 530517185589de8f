"""Live: a linked child and parent (separate processes) whose wall clock steps a year forward and back keep their link.

Both processes run under libfaketime (``LD_PRELOAD``) with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` and a timestamp
file the test rewrites: ``+0``, then ``+365d`` (the wall clock steps a year forward, as NTP steps a board without
an RTC at boot), then ``+0`` again (a year back).  The processes run on the reactor this session runs on
(``--reactor=asyncio`` runs them with ``gwproactor run --reactor asyncio``).  Every check is collected, so one
run reports everything that broke (which is what a reactor on the wall clock shows; see ``docs/comm_state.rst``).
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest
import pytest_twisted

from gwproactor_test.process import ProactorProcess
from gwproactor_test.wait import WaitTimeout, await_for

pytestmark = pytest.mark.live

REQUIRE_LIBFAKETIME_ENV = "GWPROACTOR_REQUIRE_LIBFAKETIME"
"""Set to ``1`` (CI does) to make a missing libfaketime fail this test instead of skipping it."""

CHILD, PARENT = "d1.step.child", "d1.step"
HEARTBEAT_S = 0.5
DEADLINE_S = 3.0
ACK_TIMEOUT_S = 3.0
RATE_HZ = 20
STATUS_INTERVAL_S = 0.25
MARGIN_S = 1.5
ACCEPT_DELAY_S = 0.3
YEAR_S = 365 * 86400.0


def find_libfaketime() -> str | None:
    """The path of ``libfaketime.so.1`` (``$GWPT_LIBFAKETIME``, else the Debian/Ubuntu and /usr/local places)."""
    candidates = [os.environ.get("GWPT_LIBFAKETIME", "")]
    candidates += sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    candidates += ["/usr/lib/faketime/libfaketime.so.1", "/usr/local/lib/faketime/libfaketime.so.1"]
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def faketime_env(library: str, timestamp_file: Path) -> dict[str, str]:
    """Environment that makes a process's wall clock follow ``timestamp_file`` (re-read on every call)."""
    return {
        "LD_PRELOAD": library,
        "FAKETIME_TIMESTAMP_FILE": str(timestamp_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def set_offset(timestamp_file: Path, offset: str) -> None:
    """Write the fake-time offset atomically (libfaketime re-reads the file by name on every call)."""
    tmp = timestamp_file.with_suffix(".tmp")
    tmp.write_text(offset + "\n")
    os.replace(tmp, timestamp_file)


def _skip(reason: str) -> None:
    if os.environ.get(REQUIRE_LIBFAKETIME_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_LIBFAKETIME_ENV}=1 is set)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def libfaketime(tmp_path_factory: pytest.TempPathFactory) -> str:
    """libfaketime, checked to step time.time() and leave time.monotonic() alone in a Python child here."""
    library = find_libfaketime()
    if library is None:
        _skip("libfaketime not found: install it (Debian/Ubuntu: apt-get install faketime) or set GWPT_LIBFAKETIME")
    assert library is not None
    rc = tmp_path_factory.mktemp("faketime") / "probe.rc"
    rc.write_text("+365d\n")
    code = "import time; print(time.time(), time.monotonic())"
    env = {**os.environ, **faketime_env(library, rc)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    try:
        wall, mono = (float(x) for x in out.stdout.split())
    except ValueError:
        _skip(f"a Python child under {library} failed: {out.stderr[-500:]}")
    if not 300 * 86400 < wall - time.time() < 400 * 86400:
        _skip(f"{library} does not step time.time() of a Python child here (offset {wall - time.time():.0f} s)")
    if abs(mono - time.monotonic()) > 60:
        _skip(f"{library} fakes time.monotonic() despite FAKETIME_DONT_FAKE_MONOTONIC=1")
    return library


@attrs.define(eq=False)
class Watched:
    """One process of the pair: its status lines (each with the test's wall time when read) and its log."""

    name: str
    link: str
    proc: ProactorProcess
    status_path: Path
    lines: list[dict[str, Any]] = attrs.Factory(list)
    _offset: int = 0
    _partial: bytes = b""

    def refresh(self) -> None:
        try:
            with open(self.status_path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            if raw.strip():
                line = json.loads(raw)
                line["_read_at"] = time.time()
                self.lines.append(line)

    @property
    def latest(self) -> dict[str, Any]:
        self.refresh()
        return self.lines[-1] if self.lines else {}

    def state(self, line: dict[str, Any]) -> str | None:
        """The state of this process's link in a status line."""
        return line.get("link") if "link" in line else (line.get("links") or {}).get(self.link)

    def counters(self) -> dict[str, Any]:
        """Counters that must not move while the link is healthy."""
        stats = self.latest.get("stats") or {}
        link = (stats.get("links") or {}).get(self.link) or {}
        return {
            "transitions": (link.get("stats") or {}).get("transitions"),
            "ack_timeouts": (link.get("acks") or {}).get("timeouts"),
            "deadlines_expired": link.get("deadlines_expired"),
            "broker_disconnects": ((stats.get("brokers") or {}).get("default") or {}).get("disconnects", 0),
        }

    def log_size(self) -> int:
        try:
            return self.proc.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        try:
            with open(self.proc.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def describe(self) -> str:
        line = self.latest
        stats = line.get("stats") or {}
        link = (stats.get("links") or {}).get(self.link) or {}
        return (f"{self.name}: {len(self.lines)} status lines, last t-real={line.get('t', 0) - line.get('_read_at', 0):.0f} s,"
                f" state={self.state(line)}, recent={link.get('recent_transitions')}, counters={self.counters()}\n"
                f"  log tail:\n{self.proc.log_tail(12)}")


@attrs.define(eq=False)
class Checks:
    """Collects failed checks so that one run reports everything that broke."""

    describe: Callable[[], str]
    failures: list[str] = attrs.Factory(list)

    def fail(self, text: str) -> None:
        self.failures.append(text)

    async def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> bool:
        try:
            await await_for(condition, timeout, interval=0.05)
            return True
        except WaitTimeout:
            self.fail(f"not within {timeout:g} s: {what}")
            return False

    def report(self) -> str:
        return "\n".join(f"- {f}" for f in self.failures) + "\n" + self.describe()


def _link_env(prefix: str, peer_long: str, peer_short: str) -> dict[str, str]:
    return {
        f"GWP_LINKS__{prefix}__PEER_LONG_NAME": peer_long,
        f"GWP_LINKS__{prefix}__PEER_SHORT_NAME": peer_short,
        f"GWP_LINKS__{prefix}__ACK_TIMEOUT_S": str(ACK_TIMEOUT_S),
        f"GWP_LINKS__{prefix}__HEARTBEAT_S": str(HEARTBEAT_S),
        f"GWP_LINKS__{prefix}__RECEIVE_DEADLINE_S": str(DEADLINE_S),
    }


def _app_env(directory: Path, broker: Any, long_name: str, short_name: str) -> dict[str, str]:
    return {
        "GWP_LONG_NAME": long_name,
        "GWP_SHORT_NAME": short_name,
        "GWP_BROKERS__DEFAULT__ENDPOINT": broker.endpoint(),
        "GWP_STORE__DIRECTORY": str(directory / "store"),
        "GWP_DEMO__RECORD_FILE": str(directory / "records"),
        "GWP_DEMO__STATUS_FILE": str(directory / "status.jsonl"),
        "GWP_DEMO__STATUS_INTERVAL_S": str(STATUS_INTERVAL_S),
    }


@pytest_twisted.ensureDeferred
async def test_wall_clock_steps_a_year_forward_and_back(
    private_broker: Any, tmp_path: Path, libfaketime: str, request: pytest.FixtureRequest
) -> None:
    """After a +1 year and a -1 year wall-clock step no link leaves active, no ack or deadline fires early, events
    keep flowing, and a stopped peer is still noticed within the receive deadline."""
    from twisted.internet import reactor

    reactor_name = request.config.getoption("reactor", "default")
    extra = ["--reactor", "asyncio"] if reactor_name == "asyncio" else []
    rc = tmp_path / "faketime.rc"
    set_offset(rc, "+0")
    clock_env = faketime_env(libfaketime, rc)
    child_env = {**clock_env, **_app_env(tmp_path / "child", private_broker, CHILD, "c"),
                 **_link_env("PARENT", PARENT, "p"), "GWP_LINKS__PARENT__UPSTREAM": "true",
                 "GWP_DEMO__RATE_HZ": str(RATE_HZ)}
    # The parent acks each event ACCEPT_DELAY_S after it arrives, so the child has acks in flight when the clock steps.
    parent_env = {**clock_env, **_app_env(tmp_path / "parent", private_broker, PARENT, "p"),
                  **_link_env("CHILD", CHILD, "c"), "GWPT_ACCEPT_DELAY_S": str(ACCEPT_DELAY_S)}
    child = Watched("child", "parent", ProactorProcess("gwproactor_test.apps:StatsChild", child_env, tmp_path / "child",
                                                       reactor=reactor, extra_args=extra), tmp_path / "child" / "status.jsonl")
    parent = Watched("parent", "child", ProactorProcess("gwproactor_test.apps:StatsParent", parent_env,
                                                        tmp_path / "parent", reactor=reactor, extra_args=extra),
                     tmp_path / "parent" / "status.jsonl")
    both = (child, parent)
    checks = Checks(lambda: "\n".join(w.describe() for w in both))

    def readings() -> int:
        return int(parent.latest.get("readings") or 0)

    def active(w: Watched) -> bool:
        return w.state(w.latest) == "active"

    def in_flight(w: Watched) -> Any:
        return (((w.latest.get("stats") or {}).get("links") or {}).get(w.link) or {}).get("in_flight")

    try:
        await parent.proc.start()
        # The parent subscribed before the child starts: nothing the child sends is lost.
        await await_for(lambda: parent.state(parent.latest) in ("awaiting_peer", "active"), 20, checks.describe)
        await child.proc.start()
        # A ping the parent sent before the child subscribed is never acked: its ack timeout (a real one) must
        # come before the watched windows.
        await await_for(lambda: all(active(w) for w in both) and readings() >= 10 and in_flight(parent) == 0,
                        30, checks.describe)
        expected_reactor = "AsyncioSelectorReactor" if reactor_name == "asyncio" else "EPollReactor"
        for w in both:
            if w.latest.get("reactor") != expected_reactor:
                checks.fail(f"{w.name} runs on {w.latest.get('reactor')}, not {expected_reactor}")
            if not w.latest.get("monotonic"):
                checks.fail(f"{w.name}: its reactor's seconds() is not monotonic")

        async def step(label: str, offset: str, expected_s: float) -> None:
            """Step the wall clock, then watch both processes for the receive deadline and a second."""
            marks = {w.name: (len(w.lines), w.log_size(), w.counters()) for w in both}
            start_readings = readings()
            set_offset(rc, offset)

            def stepped(w: Watched) -> bool:
                w.refresh()
                return any(abs(line["t"] - line["_read_at"] - expected_s) < 60 for line in w.lines[marks[w.name][0]:])

            if not await checks.wait(lambda: all(stepped(w) for w in both), 10,
                                     f"{label}: both processes write status lines with the stepped wall time"):
                return
            def new_lines(w: Watched) -> int:
                w.refresh()
                return len(w.lines) - marks[w.name][0]

            watch_lines = int((DEADLINE_S + 1.0) / STATUS_INTERVAL_S)
            await checks.wait(lambda: all(new_lines(w) >= watch_lines for w in both), 20,
                              f"{label}: {watch_lines} more status lines from each process (their timers run)")
            await checks.wait(lambda: readings() >= start_readings + RATE_HZ * 2, 10,
                              f"{label}: events keep being delivered ({start_readings} readings before the step)")
            for w in both:
                lines, log_offset, counters = marks[w.name]
                left = [ln for ln in w.log_since(log_offset).splitlines() if "left active" in ln]
                if left:
                    checks.fail(f"{label}: {w.name}'s link left active: {left[:3]}")
                states = {w.state(line) for line in w.lines[lines:]}
                if states - {"active"}:
                    checks.fail(f"{label}: {w.name}'s status lines show states {sorted(map(str, states))}")
                now = w.counters()
                moved = {k: (counters[k], now[k]) for k in counters if counters[k] != now[k]}
                if moved:
                    checks.fail(f"{label}: {w.name}'s counters moved (before, after): {moved}")

        await step("+1 year step", "+365d", YEAR_S)
        await step("-1 year step", "+0", 0.0)

        # A dead peer is still noticed within the receive deadline after the backward step.
        mark = parent.log_size()
        stopped_at = time.monotonic()
        os.kill(child.proc.pid, signal.SIGSTOP)
        try:
            noticed = await checks.wait(lambda: "left active" in parent.log_since(mark), DEADLINE_S + MARGIN_S + 5,
                                        "the parent notices the stopped child")
            elapsed = time.monotonic() - stopped_at
            print(f"the parent noticed the stopped child after {elapsed:.2f} s (receive deadline {DEADLINE_S:g} s)")
            if noticed:
                line = next(ln for ln in parent.log_since(mark).splitlines() if "left active" in ln)
                if not DEADLINE_S - 1.0 <= elapsed <= DEADLINE_S + MARGIN_S:
                    checks.fail(f"the stopped child was noticed after {elapsed:.2f} s, not within the {DEADLINE_S:g} s "
                                f"receive deadline (+{MARGIN_S:g} s): {line}")
                if "receive_deadline_expired" not in line:
                    checks.fail(f"the parent's link left active for another reason: {line}")
        finally:
            os.kill(child.proc.pid, signal.SIGCONT)
        resumed_from = readings()
        await checks.wait(lambda: all(active(w) for w in both) and readings() >= resumed_from + RATE_HZ, 20,
                          "after SIGCONT both links are active again and events flow")

        for w in (child, parent):
            exited = w.proc.terminate()
            exited.addTimeout(20, reactor)
            try:
                code = await exited
            except Exception:
                checks.fail(f"{w.name} did not exit within 20 s of SIGTERM")
            else:
                if code != 0:
                    checks.fail(f"{w.name} exited with {code}")
        assert not checks.failures, checks.report()
    finally:
        for w in both:
            await w.proc.close()
