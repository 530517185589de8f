"""Live tests of gwproactor_test.live (LivePair, LiveTree), its pytest fixtures, options and failure reports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from gwproactor_test import dummies
from gwproactor_test.instrumented import InstrumentedMixin, instrumented
from gwproactor_test.live import LivePair, LiveTree
from gwproactor_test.wait import await_for, wait_link_active

pytestmark = pytest.mark.live


@pytest_twisted.ensureDeferred
async def test_pair_fixture_comes_up(pair: LivePair, tmp_path: Path) -> None:
    """The pair fixture builds instrumented dummies with separate stores; started, both links become active."""
    assert isinstance(pair.child, dummies.DummyChild) and isinstance(pair.child, InstrumentedMixin)
    assert isinstance(pair.parent, dummies.DummyParent) and isinstance(pair.parent, InstrumentedMixin)
    assert pair.store_dir("child") != pair.store_dir("parent")
    assert pair.child.settings.store.directory == pair.store_dir("child")
    await pair.start()
    await pair.wait_active()
    assert pair.child_upstream.is_active and pair.parent_downstream.is_active
    await pair.wait_quiescent()


@pytest_twisted.ensureDeferred
async def test_pair_over_tls(private_broker: Any, tmp_path: Path) -> None:
    """With tls=True both proactors connect through the mutual-TLS listener and become active."""
    pair = LivePair(private_broker, tmp_path, tls=True)
    try:
        assert pair.endpoint_for("child").startswith("tls:")
        await pair.start()
        await pair.wait_active()
    finally:
        await pair.stop()
    assert not pair.child.running and not pair.parent.running


@pytest_twisted.ensureDeferred
async def test_restart_builds_anew_on_same_store(pair: LivePair) -> None:
    """restart_child stops the child and starts a new one on the same store directory; stop() is idempotent."""
    await pair.start()
    await pair.wait_active()
    first = pair.child
    second = await pair.restart_child()
    assert second is pair.child and second is not first
    assert not first.running and second.running
    assert second.settings.store.directory == first.settings.store.directory
    await pair.wait_active()
    assert [role for role, _ in pair.history].count("child") == 2
    assert set(pair.log_text()) == {"child", "parent", "child#1"}
    await pair.stop()
    await pair.stop()


@pytest_twisted.ensureDeferred
async def test_stop_and_start_one_side(pair: LivePair) -> None:
    """stop_parent leaves the child running; start_parent builds a new parent that links up again."""
    await pair.start()
    await pair.wait_active()
    old = pair.parent
    await pair.stop_parent()
    assert pair.child.running and not old.running
    await pair.start_parent()
    assert pair.parent is not old
    await pair.wait_active()


@pytest_twisted.ensureDeferred
async def test_force_disconnect_reconnects(pair: LivePair) -> None:
    """force_disconnect takes the child's link out of active; the broker connection comes back by itself."""
    await pair.start()
    await pair.wait_active()
    link = pair.child_upstream
    transitions = link.stats.transitions
    pair.child.force_disconnect("parent")
    await await_for(lambda: link.stats.transitions > transitions and link.is_active, 15.0, pair.describe)
    assert link.last_down_reason == "broker_disconnected"


@pytest_twisted.ensureDeferred
async def test_tree_fixture_comes_up(tree: LiveTree) -> None:
    """The tree fixture's scada2, scada1 and atn link up (four links active)."""
    await tree.start()
    await tree.wait_active()
    assert tree.scada1.link_states() == {"atn": "active", "scada2": "active"}
    await wait_link_active(tree.atn, "scada1", 1.0)


def test_factory_and_missing_link_checked(private_broker: Any, tmp_path: Path) -> None:
    """A factory builds the proactor as given; settings lacking the expected link are refused clearly."""
    made: list[Any] = []

    def factory(settings: Any, reactor: Any) -> Any:
        made.append(instrumented(dummies.DummyChild)(settings, reactor=reactor))
        return made[-1]

    pair = LivePair(private_broker, tmp_path, child_cls=factory)
    assert pair.child is made[0]
    bad = LivePair(private_broker, tmp_path / "bad", child_settings=dummies.parent_settings)
    with pytest.raises(RuntimeError, match=r"lacks links \['parent'\]"):
        bad.build("child")
    for p in (pair.child, *bad.nodes.values()):
        p.log_capture.stop()


_FAILING = '''
import pytest_twisted
from gwproactor_test.wait import await_for

@pytest_twisted.ensureDeferred
async def test_fails(pair):
    await pair.start()
    await pair.wait_active()
    await await_for(lambda: False, 0.2, pair.describe)
'''


def _run_pytest(directory: Path, *args: str) -> subprocess.CompletedProcess:
    (directory / "test_inner.py").write_text(textwrap.dedent(_FAILING))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
         "--rootdir", str(directory), str(directory / "test_inner.py"), *args],
        capture_output=True, text=True, timeout=120, cwd=directory, env=env,
    )


def test_failure_report_has_proactor_logs(tmp_path: Path) -> None:
    """A failing live test's report carries each proactor's log section and the WaitTimeout's description."""
    result = _run_pytest(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "gwproactor log: LivePair child" in out and "gwproactor log: LivePair parent" in out
    assert "[child]" in out and "link parent: awaiting_peer -> active" in out
    assert "WaitTimeout" in out and '"state": "active"' in out


def test_verbose_child_option_echoes(tmp_path: Path) -> None:
    """--gwp-verbose-child echoes the child's lines to stderr (shown for the failing test), not the parent's."""
    result = _run_pytest(tmp_path, "--gwp-verbose-child", "--gwp-log-level", "info")
    out = result.stdout
    stderr_section = out[out.index("Captured stderr call"):]
    assert "[child]" in stderr_section.split("gwproactor log:")[0]
    assert "[parent]" not in stderr_section.split("gwproactor log:")[0]
