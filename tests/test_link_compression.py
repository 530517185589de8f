"""Compressed batch frames between gwproactor peers: negotiated, fewer bytes, bounded inflation, exactly-once kept."""

from __future__ import annotations

import zlib

import pytest

from gwproactor.links.link import COMPRESSED_BATCH_TYPE
from gwproactor.message import dashed, topic_for
from tests.test_link import CHILD_SHORT, PARENT_LONG, Harness
from tests.test_proactor_events import SCADA1, Pair, event


def drain(compress_child: bool, compress_parent: bool, n: int = 400) -> Pair:
    p = Pair(window=50, batch_max=100, parent_batch_max=100)
    p.child.links["parent"].compress = compress_child
    p.parent.links["child"].compress = compress_parent
    p.start()
    p.turn(20)
    p.child.outbox.deactivated()
    for i in range(n):
        p.child.generate_event(event(SCADA1, i))
    p.child_client.take_published()
    p.child.outbox.activated()
    p.turn(100)
    return p


def delivered(p: Pair) -> list[str]:
    return [e.summary for e in p.parent.app_events() if getattr(e, "summary", "").startswith("event ")]


def test_batches_are_compressed_when_both_offer_it() -> None:
    """Both peers offer zlib1: batch frames go on the gwproactor-batch-z topic, smaller, each event once."""
    p = drain(True, True)
    frames = p.child_client.take_published()
    compressed = [f for f in frames if f.topic.endswith(dashed(COMPRESSED_BATCH_TYPE))]
    assert compressed and not [f for f in frames if f.topic.endswith("gwproactor-batch")]
    assert delivered(p) == [f"event {i}" for i in range(400)]
    inflated = sum(len(zlib.decompress(f.payload)) for f in compressed)
    assert sum(len(f.payload) for f in compressed) * 3 < inflated
    assert p.child.links["parent"].stats.compressed_batches_sent == len(compressed)


@pytest.mark.parametrize(("child", "parent"), [(True, False), (False, True)])
def test_no_compression_unless_both_sides_want_it(child: bool, parent: bool) -> None:
    """If either side has compress off, batches go uncompressed, and everything still arrives once."""
    p = drain(child, parent)
    frames = p.child_client.take_published()
    assert not [f for f in frames if f.topic.endswith(dashed(COMPRESSED_BATCH_TYPE))]
    assert [f for f in frames if f.topic.endswith("gwproactor-batch")]
    assert delivered(p) == [f"event {i}" for i in range(400)]


def test_a_small_frame_that_inflates_past_the_limit_is_dropped() -> None:
    """A zip bomb: 10 kB on the wire inflating to 100 MB is cut at max_frame_bytes and counted as oversized."""
    h = Harness()
    h.link.max_frame_bytes = 1_000_000
    h.activate()
    bomb = zlib.compress(b" " * 100_000_000, 9)
    assert len(bomb) < 200_000
    h.broker.deliver(topic_for(PARENT_LONG, CHILD_SHORT, COMPRESSED_BATCH_TYPE), bomb)
    assert h.link.stats.oversized == 1 and h.link.stats.decode_errors == 0


def test_garbage_on_the_compressed_topic_is_an_undecodable_frame() -> None:
    """Bytes that are not zlib data on the compressed topic are counted and reported, never raised."""
    h = Harness()
    h.activate()
    h.broker.deliver(topic_for(PARENT_LONG, CHILD_SHORT, COMPRESSED_BATCH_TYPE), b"not zlib")
    assert h.link.stats.decode_errors == 1 and "not zlib data" in h.listener.problems[-1][2]
