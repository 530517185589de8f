"""Tests of sd_notify (real datagram sockets bound by the test) and the systemd watchdog service (Clock-driven)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from gwproactor.ops.lag import ReactorLag
from gwproactor.ops.systemd import (
    IWatchable,
    Notifier,
    SystemdService,
    Watch,
    link_status,
    notify_socket_from_env,
    watchdog_usec_from_env,
)


class Listener:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        bind_to = b"\0" + address[1:].encode() if address.startswith("@") else address
        self.sock.bind(bind_to)
        self.sock.setblocking(False)

    def messages(self) -> list[str]:
        """Every datagram received so far (local datagrams arrive synchronously with sendto)."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out

    def lines(self) -> list[str]:
        """Every KEY=value line received so far."""
        return [line for m in self.messages() for line in m.split("\n")]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    directory = tempfile.mkdtemp(prefix="sdn", dir="/tmp")  # short: AF_UNIX paths are limited to 107 bytes
    sock = Listener(os.path.join(directory, "notify"))
    yield sock
    sock.close()
    shutil.rmtree(directory)


def make_service(listener: Listener, clock: Clock, **kwargs: Any) -> SystemdService:
    kwargs.setdefault("watchdog_usec", 2_000_000)
    return SystemdService(clock, Notifier(listener.address), **kwargs)


def pump(clock: Clock, seconds: float, step: float = 0.1) -> None:
    """Advance a responsive reactor: time passes in small steps, every due call runs on time.

    Steps land on exact multiples (no float drift), so timer boundaries are hit exactly.
    """
    start = clock.seconds()
    for i in range(1, round(seconds / step) + 1):
        clock.rightNow = round(start + i * step, 6)
        clock.advance(0)


# --- Notifier ----------------------------------------------------------------


def test_notifier_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """With NOTIFY_SOCKET unset, the notifier is disabled and sends nothing."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert notifier.path is None and not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False and notifier.sent == 0


def test_notifier_reads_notify_socket_and_sends_datagrams(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default path comes from NOTIFY_SOCKET; each call is one datagram of KEY=value lines."""
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    notifier = Notifier()
    assert notifier.ready() and notifier.watchdog() and notifier.stopping("bye")
    assert notifier.status("links: a=active\nb=stopped")
    assert notifier.notify(extend_timeout_usec=5_000_000, ready=True)
    assert listener.messages() == [
        "READY=1",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=bye",
        "STATUS=links: a=active b=stopped",
        "EXTEND_TIMEOUT_USEC=5000000\nREADY=1",
    ]
    assert notifier.sent == 5
    notifier.close()


def test_notifier_supports_abstract_namespace_sockets() -> None:
    """An address starting with @ is sent to the abstract-namespace socket of that name."""
    sock = Listener(f"@gwproactor-test-{uuid.uuid4().hex}")
    try:
        notifier = Notifier(sock.address)
        assert notifier.ready()
        assert sock.messages() == ["READY=1"]
        notifier.close()
    finally:
        sock.close()


def test_notifier_counts_send_errors_without_raising(tmp_path: Any) -> None:
    """A socket that is not there makes notify return False and count an error."""
    notifier = Notifier(f"/tmp/gwproactor-missing-{uuid.uuid4().hex}")
    assert notifier.watchdog() is False and notifier.watchdog() is False
    assert notifier.errors == 2 and notifier.sent == 0
    with pytest.raises(ValueError):
        notifier.notify()
    notifier.close()


def test_environment_parsing_honours_watchdog_pid() -> None:
    """WATCHDOG_USEC is used only if valid and WATCHDOG_PID (when set) is our pid."""
    assert notify_socket_from_env({"NOTIFY_SOCKET": ""}) is None
    assert watchdog_usec_from_env({}) is None
    assert watchdog_usec_from_env({"WATCHDOG_USEC": "3000000"}) == 3_000_000
    assert watchdog_usec_from_env({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "42"}, pid=42) == 3_000_000
    assert watchdog_usec_from_env({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "43"}, pid=42) is None
    assert watchdog_usec_from_env({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_usec_from_env({"WATCHDOG_USEC": "0"}) is None


def test_watch_provides_iwatchable() -> None:
    """Watch objects provide IWatchable and record the clock time when patted."""
    clock = Clock()
    w = Watch("pump", 5.0, clock)
    verifyObject(IWatchable, w)
    clock.advance(3)
    w()
    assert w.last_pat == 3


# --- SystemdService ------------------------------------------------------------


def test_ready_is_sent_only_after_ready_fires(listener: Listener) -> None:
    """READY=1 (with the status text) goes out when the ready Deferred fires, not at start."""
    clock = Clock()
    ready: Deferred = Deferred()
    service = make_service(listener, clock, ready=ready, status=lambda: "links: up=active", watchdog_usec=None)
    service.startService()
    pump(clock, 1)
    assert listener.lines() == []
    ready.callback("whatever")
    assert listener.messages() == ["READY=1\nSTATUS=links: up=active"]
    assert service.is_ready
    assert ready.result == "whatever"  # the shared Deferred's result is left alone
    service.stopService()


def test_ready_callable_and_immediate_ready(listener: Listener) -> None:
    """A callable ready is called at start; with no ready at all, READY=1 is sent at start."""
    clock = Clock()
    calls = []
    service = make_service(listener, clock, ready=lambda: calls.append(1), watchdog_usec=None)
    service.startService()
    assert calls == [1] and listener.lines() == ["READY=1"]
    service.stopService()
    listener.messages()
    other = make_service(listener, clock, watchdog_usec=None)
    other.startService()
    assert listener.lines() == ["READY=1"]
    other.stopService()


def test_failed_ready_sends_status_not_ready(listener: Listener) -> None:
    """If startup fails, no READY=1 is sent; a STATUS line says why."""
    clock = Clock()
    ready: Deferred = Deferred()
    service = make_service(listener, clock, ready=ready, watchdog_usec=None)
    service.startService()
    ready.errback(RuntimeError("store is corrupt"))
    ready.addErrback(lambda _: None)
    assert listener.lines() == ["STATUS=startup failed: store is corrupt"]
    assert not service.is_ready
    service.stopService()


def test_watchdog_pats_at_half_the_interval(listener: Listener) -> None:
    """With WATCHDOG_USEC=2 s and a responsive reactor, WATCHDOG=1 goes out at start and every 1 s."""
    clock = Clock()
    service = make_service(listener, clock)
    service.startService()
    assert listener.lines() == ["READY=1", "WATCHDOG=1"]
    pump(clock, 0.9)
    assert listener.lines() == []
    pump(clock, 0.1)
    assert listener.lines() == ["WATCHDOG=1"]
    pump(clock, 5)
    assert listener.lines() == ["WATCHDOG=1"] * 5
    assert service.pats_sent == 7 and service.pats_withheld == 0
    assert service.lag_threshold_s == 0.5
    service.stopService()


def test_watchdog_withholds_pats_while_the_reactor_is_blocked(listener: Listener) -> None:
    """A stalled reactor (one 3 s jump) gets no pat; pats resume once the lag is gone."""
    clock = Clock()
    service = make_service(listener, clock)
    service.startService()
    listener.messages()
    clock.advance(3)  # the reactor was blocked for 3 s: every due call runs late
    assert listener.lines() == []
    assert service.pats_withheld == 1 and "reactor lag" in service.last_withheld_reason
    pump(clock, 1.0)
    assert listener.lines() == ["WATCHDOG=1"]
    service.stopService()


def test_watchdog_withholds_when_the_pat_runs_before_the_late_lag_sample(listener: Listener) -> None:
    """Even if the pat timer runs first after a stall, the overdue lag sample withholds the pat."""
    clock = Clock()
    monitor = ReactorLag(clock, interval_s=0.1)
    service = make_service(listener, clock, monitor=monitor)
    service.startService()
    listener.messages()
    clock.rightNow += 5  # blocked: nothing ran
    service._watchdog_tick()
    assert listener.lines() == []
    assert "reactor lag 4.9" in service.last_withheld_reason
    service.stopService()


def test_watchdog_withholds_when_a_watched_actor_stops_patting(listener: Listener) -> None:
    """Pats stop once a watched actor is silent past its timeout and resume when it pats again."""
    clock = Clock()
    service = make_service(listener, clock)
    service.startService()
    pat = service.watch("pump-controller", timeout_s=2.5)
    listener.messages()
    for _ in range(4):
        pump(clock, 1.0)
        pat()
    assert listener.lines() == ["WATCHDOG=1"] * 4
    pump(clock, 5.0)  # the actor is silent from now on: pats 1 s and 2 s later, none after 2.5 s
    assert listener.lines() == ["WATCHDOG=1"] * 2
    assert "pump-controller silent" in service.last_withheld_reason
    pat()
    pump(clock, 1.0)
    assert listener.lines() == ["WATCHDOG=1"]
    service.stopService()


def test_external_watchables_count_from_the_start(listener: Listener) -> None:
    """An object with last_pat None gets timeout_s from the service start for its first pat."""

    class Pump:
        name = "pump"
        timeout_s = 1.5
        last_pat = None

    clock = Clock()
    service = make_service(listener, clock, watched=[Pump()])
    service.startService()
    pump(clock, 4.0)
    assert listener.lines() == ["READY=1"] + ["WATCHDOG=1"] * 2  # at 0 s and 1 s; withheld at 2, 3, 4 s
    assert service.pats_withheld == 3
    service.stopService()


def test_no_pats_without_a_watchdog_interval(listener: Listener) -> None:
    """With no WATCHDOG_USEC nothing but READY/STOPPING is sent."""
    clock = Clock()
    service = make_service(listener, clock, watchdog_usec=None)
    service.startService()
    pump(clock, 10)
    service.stopService()
    assert listener.lines() == ["READY=1", "STOPPING=1"]


def test_status_lines_on_change_and_periodically(listener: Listener) -> None:
    """STATUS= goes out when the text changes (within a second) and every status_interval_s otherwise."""

    class Proactor:
        states: ClassVar[dict[str, str]] = {"up": "awaiting_peer", "down": "active"}

        def link_states(self) -> dict[str, str]:
            return dict(self.states)

    proactor = Proactor()
    clock = Clock()
    service = make_service(listener, clock, status=link_status(proactor), watchdog_usec=None, status_interval_s=5)
    service.startService()
    assert listener.lines() == ["READY=1", "STATUS=links: down=active, up=awaiting_peer"]
    pump(clock, 2)
    assert listener.lines() == []
    proactor.states["up"] = "active"
    pump(clock, 1)
    assert listener.lines() == ["STATUS=links: down=active, up=active"]
    pump(clock, 5)
    assert listener.lines() == ["STATUS=links: down=active, up=active"]
    proactor.states = {}
    service.update_status()
    assert listener.lines() == ["STATUS=running (no links)"]
    service.stopService()


def test_stopping_on_stop_leaves_no_timers(listener: Listener) -> None:
    """stopService sends STOPPING=1 and cancels every timer it (and its own lag monitor) started."""
    clock = Clock()
    service = make_service(listener, clock, status=lambda: "ok")
    service.startService()
    pump(clock, 2)
    listener.messages()
    service.stopService()
    assert listener.lines() == ["STOPPING=1"]
    assert clock.getDelayedCalls() == []
    assert service.stats()["pats_sent"] == 3


def test_shared_monitor_is_left_running(listener: Listener) -> None:
    """A lag monitor that was already running (shared with stats) is not stopped by the service."""
    clock = Clock()
    monitor = ReactorLag(clock)
    monitor.start()
    service = make_service(listener, clock, monitor=monitor)
    service.startService()
    service.stopService()
    assert monitor.running
    monitor.stop()
