"""Live: one parent with 100 downstream links on one broker connection, 100 children simulated in one process.

The parent (``benchmarks/_fanin_parent.py``) and the children (``benchmarks/_fanin_children.py``, the fan-in
benchmark's generator: raw MQTT, the gridworks wire format) run in processes of their own.  Every link must become
active, and every event each child sends must reach the parent's application once, on its own link, and be acked
once.  Performance is the benchmark's business (``benchmarks/fanin.py``); nothing here is timed.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

pytestmark = pytest.mark.live

K = 100
SECONDS = 5.0
RATE = 10.0
_RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "_fanin_run.py"


def _fanin_run() -> Any:
    spec = importlib.util.spec_from_file_location("_fanin_run", _RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest_twisted.ensureDeferred
async def test_hundred_links_on_one_connection_become_active_and_deliver_once(fresh_broker: Any,
                                                                              tmp_path: Path) -> None:
    """100 links become active; 100 × 10 events/s for 5 s: each event accepted once on its link, acked once."""
    from twisted.internet import reactor

    fanin = _fanin_run()
    records = tmp_path / "accepted.txt"
    run = await fanin.run_one(reactor, fresh_broker, tmp_path / "fanin", K, SECONDS, rate=RATE,
                              join_timeout_s=20.0, drain_s=10.0, linger_s=0.0, record_file=str(records))
    children, parent = run["children"], run["parent"]
    described = f"children: {children}\nparent: {parent}\n{run['parent_log_tail']}"

    # Every link became active, and all were still active at the end.
    assert children["all_joined"], described
    assert parent["all_links_active"], described
    assert parent["final"]["states"] == {"active": K}, described

    # The children sent their events (nothing resent: the generator never resends) and each was acked once.
    sent = children["events_sent"]
    assert sent >= K * RATE * SECONDS * 0.9, described
    assert children["events_acked"] == sent, described
    assert children["events_unacked"] == 0, described
    assert children["unknown_or_repeated_acks"] == 0, described
    assert children["children_acked_all"] == K, described

    # The parent's application accepted each event exactly once, on the link of the child that sent it.
    lines = [line.split() for line in records.read_text().splitlines()]
    ids = Counter(message_id for _link, _src, message_id in lines)
    assert len(lines) == sent, described
    assert max(ids.values()) == 1, described
    assert all(src == f"{fanin.PREFIX}.{link}" for link, src, _id in lines), described
    assert Counter(link for link, _src, _id in lines) == Counter(
        {f"c{i:04d}": sent // K + (1 if i < sent % K else 0) for i in range(K)}), described
    assert parent["final"]["counters"].get("duplicates_dropped", 0) == 0, described

    # The parent resent nothing: no ping id twice; its only ack timeouts are at most one per link (the ping a link
    # sends once subscribed, before its child existed), and none took a link out of active (checked above).
    assert children["parent_pings_repeated"] == 0, described
    assert parent["final"]["links"]["acks.timeouts"] <= K, described
    assert parent["final"]["links"]["acks.failed"] <= K, described
