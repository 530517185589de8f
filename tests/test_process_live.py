"""Live tests with real processes: the runner under SIGTERM, and kill -9 crash loops against a running parent."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from gwproactor.config import BrokerSettings, LinkSettings, StoreSettings
from gwproactor.demo.apps import DemoParent, DemoParentSettings, Reading
from gwproactor.store import FileEventStore
from gwproactor_test.process import ProactorProcess
from gwproactor_test.wait import await_for

pytestmark = pytest.mark.live

CHILD, PARENT = "d1.crash.child", "d1.crash"


def child_env(broker: Any, store_dir: Path, record_file: Path, **demo: Any) -> dict[str, str]:
    env = {
        "GWP_LONG_NAME": CHILD,
        "GWP_SHORT_NAME": "c",
        "GWP_BROKERS__DEFAULT__ENDPOINT": broker.endpoint(),
        "GWP_LINKS__PARENT__PEER_LONG_NAME": PARENT,
        "GWP_LINKS__PARENT__PEER_SHORT_NAME": "p",
        "GWP_LINKS__PARENT__UPSTREAM": "true",
        "GWP_LINKS__PARENT__ACK_TIMEOUT_S": "2",
        "GWP_LINKS__PARENT__HEARTBEAT_S": "1",
        "GWP_LINKS__PARENT__RECEIVE_DEADLINE_S": "4",
        "GWP_STORE__DIRECTORY": str(store_dir),
        "GWP_DEMO__RECORD_FILE": str(record_file),
    }
    env.update({f"GWP_DEMO__{k.upper()}": str(v) for k, v in demo.items()})
    return env


class RecordingParent(DemoParent):
    """Keeps every event id its application sees, in order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ids: list[str] = []

    def handle_event(self, link: Any, event: Any) -> Any:
        if isinstance(event, Reading):
            self.ids.append(event.message_id)
        return super().handle_event(link, event)


def make_parent(broker: Any, store_dir: Path, reactor: Any) -> RecordingParent:
    settings = DemoParentSettings(
        long_name=PARENT,
        short_name="p",
        brokers={"default": BrokerSettings(endpoint=broker.endpoint())},
        links={
            "child": LinkSettings(
                peer_long_name=CHILD, peer_short_name="c", ack_timeout_s=2, heartbeat_s=1, receive_deadline_s=4
            )
        },
        store=StoreSettings(directory=store_dir),
    )
    return RecordingParent(settings, reactor=reactor)


def durable_ids(record_file: Path) -> list[str]:
    if not record_file.exists():
        return []
    return [line.split()[0] for line in record_file.read_text().splitlines() if line.strip()]


@pytest_twisted.ensureDeferred
async def test_runner_sigterm_exits_zero_with_shutdown_event(private_broker: Any, tmp_path: Path) -> None:
    """`gwproactor run` under SIGTERM exits 0 and leaves a shutdown event in the store."""
    from twisted.internet import reactor

    store_dir = tmp_path / "store"
    proc = ProactorProcess(
        "gwproactor.demo.apps:DemoChild",
        child_env(private_broker, store_dir, tmp_path / "records", rate_hz=50),
        tmp_path / "proc",
        reactor=reactor,
    )
    try:
        await proc.start()
        await await_for(lambda: len(durable_ids(tmp_path / "records")) >= 5, 15, describe=proc.log_tail)
        code = await proc.terminate()
        assert code == 0, proc.log_tail()
        assert "gc: froze" in proc.log_path.read_text(), "the runner freezes what exists after start"
    finally:
        await proc.close()
    store = FileEventStore.open(str(store_dir), clock=reactor)
    try:
        types = Counter(json.loads(store.read(i))["TypeName"] for i in store.pending_ids())
    finally:
        await store.close()
    assert types["gridworks.event.shutdown"] == 1
    assert types["gridworks.event.demo.reading"] >= 5


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("how", ["twist", "twistd-tac"])
@pytest_twisted.ensureDeferred
async def test_plugin_and_tac_sigterm(private_broker: Any, tmp_path: Path, how: str) -> None:
    """Under `twist gwproactor` and `twistd -ny app.tac` the app shuts down cleanly on SIGTERM, storing a shutdown event.

    Twisted's runners re-raise the signal after a clean shutdown (the process ends "killed by SIGTERM",
    which systemd counts as a clean stop); `gwproactor run` exits 0 instead.
    """
    import signal

    import os
    import sys

    from twisted.internet import reactor

    bin_dir = Path(sys.executable).parent
    if how == "twist":
        command = [str(bin_dir / "twist"), "gwproactor", "--app", "gwproactor.demo.apps:DemoChild"]
    else:
        command = [str(bin_dir / "twistd"), "-n", "--pidfile=", "-y", str(REPO / "docs" / "examples" / "demo_child.tac")]
    records = tmp_path / "records"
    env = child_env(private_broker, tmp_path / "store", records, rate_hz=50)
    # An editable install cannot put the plugin into Twisted's plugin directory: the checkout goes on the path.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = ProactorProcess(
        "", env, tmp_path / "proc", reactor=reactor, command=command, ready_check=lambda: len(durable_ids(records)) >= 3
    )
    try:
        await proc.start()
        code = await proc.terminate()
        assert code == 0 or proc.exit_signal == signal.SIGTERM, proc.log_tail()
        log = proc.log_path.read_text()
        # twist writes JSON log lines when its output is not a terminal
        assert "d1.crash.child stopped" in log or '"log_format": "{name} stopped"' in log, proc.log_tail()
        if how == "twist":
            assert "gc: froze" in log, "the plugin freezes what exists after start"
    finally:
        await proc.close()
    store = FileEventStore.open(str(tmp_path / "store"), clock=reactor)
    try:
        types = Counter(json.loads(store.read(i))["TypeName"] for i in store.pending_ids())
    finally:
        await store.close()
    assert types["gridworks.event.shutdown"] == 1


@pytest_twisted.ensureDeferred
async def test_kill9_crash_loop_loses_nothing(private_broker: Any, tmp_path: Path) -> None:
    """A child killed with SIGKILL 20 times: every event it saw durable reaches the parent's application exactly once."""
    from twisted.internet import reactor

    rng = random.Random(20261126)
    parent = make_parent(private_broker, tmp_path / "parent-store", reactor)
    parent.startService()
    record_file = tmp_path / "durable"
    proc = ProactorProcess(
        "gwproactor.demo.apps:DemoChild",
        child_env(private_broker, tmp_path / "child-store", record_file, rate_hz=200, burst=5),
        tmp_path / "proc",
        reactor=reactor,
    )
    kills = 0
    try:
        for _ in range(20):
            await proc.start()
            # A random moment in the child's life: during start-up, backlog drain or live sending.
            await deferLater(reactor, rng.uniform(0.05, 0.8), lambda: None)
            await proc.kill()
            kills += 1
        proc.env["GWP_DEMO__COUNT"] = "1"  # the last run generates (almost) nothing new and drains the backlog
        await proc.start()
        expected = durable_ids(record_file)
        assert len(expected) > 100, "the child should have made many events durable"

        def all_there() -> bool:
            return set(expected) <= set(parent.ids)

        await await_for(
            all_there,
            60,
            describe=lambda: f"missing {len(set(expected) - set(parent.ids))} of {len(expected)}\n{proc.log_tail()}",
        )
        assert await proc.terminate() == 0
    finally:
        await proc.close()
        await parent.stopService()
    counts = Counter(parent.ids)
    duplicates = {i: n for i, n in counts.items() if n > 1}
    assert kills == 20
    assert duplicates == {}, f"{len(duplicates)} events reached the application more than once"
    assert set(expected) <= set(counts)


@pytest_twisted.ensureDeferred
async def test_second_signal_exits_at_once_store_consistent(private_broker: Any, tmp_path: Path) -> None:
    """A second SIGTERM during the graceful shutdown exits at once (130); the store reopens with nothing corrupt."""
    import signal

    from twisted.internet import reactor

    store_dir = tmp_path / "store"
    env = child_env(private_broker, store_dir, tmp_path / "records", rate_hz=500, burst=5)
    env["GWPT_STOP_DELAY_S"] = "60"  # the first signal's shutdown would take a minute
    proc = ProactorProcess("gwproactor_test.apps:SlowStopChild", env, tmp_path / "proc", reactor=reactor)
    try:
        await proc.start()
        await await_for(lambda: len(durable_ids(tmp_path / "records")) >= 50, 15, describe=proc.log_tail)
        exited = proc.wait_exit()
        proc.signal(signal.SIGTERM)
        await await_for(lambda: "slow stop" in proc.log_tail(), 10, describe=proc.log_tail)
        proc.signal(signal.SIGTERM)
        code = await exited
        assert code == 130, proc.log_tail()
    finally:
        await proc.close()
    store = FileEventStore.open(str(store_dir), clock=reactor)
    try:
        stats = store.stats()
        assert stats["corrupt_records"] == 0 and stats["corrupt_files"] == 0, store.recovery_report
        durable = set(durable_ids(tmp_path / "records"))
        assert durable <= set(store.pending_ids())
    finally:
        await store.close()


@pytest.mark.parametrize("child_reactor", ["default", "asyncio"])
@pytest_twisted.ensureDeferred
async def test_runner_sigterm_with_a_stuck_actor_exits_1_within_the_deadline(
    private_broker: Any, tmp_path: Path, child_reactor: str
) -> None:
    """`gwproactor run` whose actor never stops: SIGTERM exits 1 within service_stop_timeout_s + margin, naming the actor."""
    from twisted.internet import reactor

    store_dir = tmp_path / "store"
    env = child_env(private_broker, store_dir, tmp_path / "records", rate_hz=50)
    env["GWP_SERVICE_STOP_TIMEOUT_S"] = "2"
    env["GWP_SHUTDOWN_GRACE_S"] = "1"
    proc = ProactorProcess("gwproactor_test.apps:StuckStopChild", env, tmp_path / "proc", reactor=reactor,
                           extra_args=["--reactor", child_reactor])
    try:
        await proc.start()
        await await_for(lambda: len(durable_ids(tmp_path / "records")) >= 5, 15, describe=proc.log_tail)
        start = reactor.seconds()
        exited = proc.terminate()
        exited.addTimeout(2.0 + 1.0 + 5.0, reactor)  # stop timeout + shutdown grace + margin
        code = await exited
        elapsed = reactor.seconds() - start
        log = proc.log_path.read_text()
        assert code == 1, proc.log_tail()
        assert 2.0 <= elapsed < 2.0 + 1.0 + 5.0, (elapsed, proc.log_tail())
        assert "service 'stuck' (StuckActor) did not stop within 2.0 s" in log, proc.log_tail()
        assert f"{CHILD} stopped" in log, "the shutdown went on to close the store"
    finally:
        await proc.close()
    store = FileEventStore.open(str(store_dir), clock=reactor)
    try:
        stats = store.stats()
        assert stats["corrupt_records"] == 0 and stats["corrupt_files"] == 0, store.recovery_report
        types = Counter(json.loads(store.read(i))["TypeName"] for i in store.pending_ids())
        assert types["gridworks.event.shutdown"] == 1
        assert set(durable_ids(tmp_path / "records")) <= set(store.pending_ids())
    finally:
        await store.close()
