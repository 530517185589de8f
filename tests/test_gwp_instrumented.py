"""Tests of gwproactor_test.instrumented and gwproactor_test.dummies on a Clock with the fake broker."""

from __future__ import annotations

import io


from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel
from zope.interface.verify import verifyObject

from gwproactor.interfaces import ILinkListener, IProactor
from gwproactor.message import Codec, ProblemEvent, make_message, topic_for
from gwproactor.store import MemoryEventStore
from gwproactor_test import dummies
from gwproactor_test.fakes import FakeBroker
from gwproactor_test.instrumented import InstrumentedMixin, LogCapture, instrumented
from tests.test_gwp_wait import FakePair, HoldingParent

PROBLEM = ProblemEvent.TYPE_NAME


def event(src: str, n: int) -> ProblemEvent:
    return ProblemEvent(src=src, problem_type="warning", summary=f"event {n}", details="")


def test_instrumented_classes_provide_interfaces() -> None:
    """Instrumented dummies still provide IProactor and ILinkListener; instrumented() is cached and idempotent."""
    cls = instrumented(dummies.DummyChild)
    assert issubclass(cls, InstrumentedMixin) and issubclass(cls, dummies.DummyChild)
    assert instrumented(dummies.DummyChild) is cls and instrumented(cls) is cls
    assert cls.__name__ == "InstrumentedDummyChild"
    p = FakePair()
    try:
        for proactor in (p.child, p.parent):
            assert verifyObject(IProactor, proactor)
            for link in proactor.links.values():
                assert verifyObject(ILinkListener, link.listener)
    finally:
        p.stop()


def test_counts_sent_received_stored_acked_handled() -> None:
    """Per-link per-type counters follow what travels: sent, received, stored, acked, handled."""
    p = FakePair()
    try:
        p.start()
        for n in range(4):
            p.child.generate_event(event(p.child.name, n))
        p.turn()
        c, a = p.child.counts, p.parent.counts
        assert c.stored[""][PROBLEM] == 4
        assert c.sent["parent"][PROBLEM] == 4 and c.acked["parent"][PROBLEM] == 4
        assert a.received["child"][PROBLEM] == 4 and a.handled["child"][PROBLEM] == 4
        assert a.sent["child"]["gridworks.ack"] >= 4
        assert c.total("sent", PROBLEM) == 4 and a.total("handled") >= 4
        assert len(p.parent.handled_ids) == len(set(p.parent.handled_ids))
        assert [e.summary for e in p.parent.events if e.type_name == PROBLEM] == [f"event {n}" for n in range(4)]
        assert p.child.activations == ["parent"] and p.parent.activations == ["child"]
        assert c.as_dict()["acked"]["parent"][PROBLEM] == 4
    finally:
        p.stop()


def test_counts_deduplicated() -> None:
    """A frame received twice is counted once as received-and-handled and once as deduplicated."""
    p = FakePair()
    try:
        p.start()
        ev = event(p.child.name, 1)
        frame = Codec().encode(make_message(p.child.name, "a", ev))
        topic = topic_for(p.child.name, "a", PROBLEM)
        p.hub.route(topic, frame)
        p.hub.route(topic, frame)
        p.turn()
        assert p.parent.counts.deduplicated["child"][PROBLEM] == 1
        assert p.parent.handled_ids.count(ev.message_id) == 1
    finally:
        p.stop()


def test_counts_deduplicated_while_the_first_copy_is_being_accepted() -> None:
    """A copy arriving while the first is still in handle_event is counted as deduplicated, not handled twice."""
    p = FakePair(parent_cls=HoldingParent)
    try:
        p.start()
        ev = event(p.child.name, 1)
        frame = Codec().encode(make_message(p.child.name, "a", ev))
        topic = topic_for(p.child.name, "a", PROBLEM)
        p.hub.route(topic, frame)
        p.hub.route(topic, frame)
        p.turn()
        assert ev.message_id in p.parent.inbox.accepting
        assert p.parent.counts.deduplicated["child"][PROBLEM] == 1
        for d in p.parent.held:
            d.callback(None)
        p.turn()
        assert p.parent.handled_ids.count(ev.message_id) == 1
        assert p.parent.counts.deduplicated["child"][PROBLEM] == 1
    finally:
        p.stop()


def test_hold_and_release_outgoing_n_at_a_time() -> None:
    """Held outgoing frames stay unpublished until released, n at a time."""
    p = FakePair()
    try:
        p.start()
        p.child.hold_outgoing("parent")
        held = p.child.faults("parent").held_outgoing
        for n in range(3):
            p.child.generate_event(event(p.child.name, n))
            p.turn()
        # Event 0's frame went (and is held); events 1 and 2 wait in the outbox for its ack.
        assert len(held) == 1 and p.child.outbox.queued == 2
        assert p.child.release_outgoing("parent", 1) == 1
        p.turn()
        assert p.parent.counts.handled["child"][PROBLEM] == 1
        assert len(held) == 1, "the ack of event 0 let one frame with events 1 and 2 go, and it is held"
        p.child.hold_outgoing("parent", False)
        assert p.child.release_outgoing("parent") == 1
        p.turn()
        assert p.parent.counts.handled["child"][PROBLEM] == 3
    finally:
        p.stop()


def test_hold_and_release_acks() -> None:
    """Held acks are published on release; the child's events then leave its store."""
    p = FakePair()
    try:
        p.start()
        p.parent.hold_acks("child")
        p.child.generate_event(event(p.child.name, 0))
        p.turn()
        assert p.child.outbox.in_flight == 1
        assert p.parent.release_acks("child") == 1
        p.turn()
        assert p.child.outbox.in_flight == 0 and p.child.store.pending_ids() == []
    finally:
        p.stop()


def test_hold_and_release_subacks() -> None:
    """With SUBACKs held the link waits for setup; released, it becomes active."""
    p = FakePair()
    try:
        p.child.hold_subacks("parent")
        p.start()
        p.clock.advance(0.6)
        p.turn()
        assert p.child.link_states()["parent"] == "awaiting_setup"
        assert p.child.release_subacks("parent") == 1
        p.turn()
        assert p.child.link_states()["parent"] == "active"
    finally:
        p.stop()


def test_drop_incoming_and_force_disconnect() -> None:
    """drop_incoming drops frames before the link; force_disconnect drops the broker connection."""
    p = FakePair()
    try:
        p.start()
        p.child.drop_incoming("parent")
        p.parent.send_to_link("child", event(p.parent.name, 0))
        p.turn()
        link = p.child.get_link("parent")
        assert p.child.faults("parent").dropped >= 1
        p.child.drop_incoming("parent", False)
        p.child.force_disconnect("parent")
        assert link.broker.drops == 1 and link.state.value == "connecting"
    finally:
        p.stop()


def test_log_capture_keeps_own_lines_only() -> None:
    """Each proactor's capture keeps its own and its links' lines, not the other proactor's."""
    p = FakePair()
    try:
        p.start()
        child_text, parent_text = p.child.log_capture.text(), p.parent.log_capture.text()
        assert "link parent:" in child_text and "link child:" not in child_text
        assert "link child:" in parent_text and "link parent:" not in parent_text
    finally:
        p.stop()


def test_log_capture_echo_and_stop() -> None:
    """A capture echoes lines at or above its level, and keeps nothing after stop()."""

    class Source:
        log = Logger(namespace="test.source")

    source, stream = Source(), io.StringIO()
    capture = LogCapture(lambda: [source], label="x", echo=stream, echo_level=LogLevel.warn)
    capture.start()
    try:
        source.log.info("quiet {n}", n=1)
        source.log.warn("loud {n}", n=2)
        Logger(namespace="other").warn("not ours")
    finally:
        capture.stop()
    source.log.warn("after stop")
    assert [line.split("[x] ")[1] for line in capture.lines] == ["quiet 1", "loud 2"]
    assert "loud 2" in stream.getvalue() and "quiet 1" not in stream.getvalue()


def test_tree_forwarding_counts_on_fakes() -> None:
    """On fakes, scada1 stores scada2's events (counted per downstream link) and atn handles them once."""
    clock = Clock()
    hub = FakeBroker(clock)
    built = []
    for cls, factory, name in (
        (dummies.DummyScada2, dummies.scada2_settings, "scada2"),
        (dummies.DummyScada1, dummies.scada1_settings, "scada1"),
        (dummies.DummyAtn, dummies.atn_settings, "atn"),
    ):
        built.append(instrumented(cls)(factory("tcp:host=127.0.0.1:port=1", "/x"), reactor=clock,
                                       store=MemoryEventStore(clock=clock), brokers={"default": hub.client(name)}))
    scada2, scada1, atn = built
    try:
        for proactor in built:
            proactor.startService()
        hub.connect_all()
        for _ in range(20):
            clock.advance(0)
        ids = [scada2.generate_event(event(scada2.name, n)).result for n in range(5)]
        for _ in range(40):
            clock.advance(0)
        assert scada1.counts.stored["scada2"][PROBLEM] == 5
        assert [i for i in atn.handled_ids if i in ids] == ids
        assert {e.src for e in atn.events if e.message_id in ids} == {dummies.SCADA2_LONG_NAME}
    finally:
        for proactor in built:
            proactor.log_capture.stop()


def test_dummy_settings_factories() -> None:
    """The settings factories name the links of the 4.x dummies and use the short test timings."""
    child = dummies.child_settings("tcp:host=h:port=1", "/tmp/c", window=7)
    assert child.long_name == dummies.CHILD_LONG_NAME and child.short_name == "s"
    assert list(child.links) == ["parent"] and child.links["parent"].upstream and child.links["parent"].window == 7
    assert child.links["parent"].ack_timeout_s == dummies.TEST_LINK_TIMINGS["ack_timeout_s"]
    assert child.brokers["default"].endpoint == "tcp:host=h:port=1"
    assert list(dummies.parent_settings("tcp:host=h:port=1", "/tmp/p").links) == ["child"]
    assert sorted(dummies.scada1_settings("tcp:host=h:port=1", "/tmp/s").links) == ["atn", "scada2"]
    assert dummies.scada1_settings("tcp:host=h:port=1", "/tmp/s").links["atn"].upstream
    assert list(dummies.scada2_settings("tcp:host=h:port=1", "/tmp/s").links) == ["scada1"]
    assert list(dummies.atn_settings("tcp:host=h:port=1", "/tmp/s").links) == ["scada1"]


def test_dummy_records_messages() -> None:
    """A dummy records the non-event messages its links hand it in .messages (counted as received)."""
    import attrs

    from gwproactor.message import Payload

    @attrs.define(frozen=True)
    class Note(Payload):
        TYPE_NAME = "test.note"
        text: str = ""

    p = FakePair()
    try:
        link = p.child.get_link("parent")
        message = make_message(p.parent.name, p.child.short_name, Note(text="hi"), ack_required=False)
        assert p.child.link_message(link, message) is None
        assert [m.payload.text for m in p.child.messages] == ["hi"]
        assert p.child.counts.received["parent"]["test.note"] == 1
    finally:
        p.stop()


def test_counts_batched_events_by_type() -> None:
    """Events sent in batch frames (after the hello exchange) are counted per frame and per event type."""
    p = FakePair()
    try:
        p.start()
        p.parent.hold_acks("child")
        ids = [p.child.generate_event(event(p.child.name, n)).result for n in range(10)]
        p.turn()
        p.parent.hold_acks("child", False)
        p.parent.release_acks("child")
        p.turn(40)
        c, a = p.child.counts, p.parent.counts
        assert c.sent["parent"]["gwproactor.batch"] >= 2, c.as_dict()
        assert c.acked["parent"][PROBLEM] == 10 and c.sent["parent"][PROBLEM] == 10
        assert a.received["child"][PROBLEM] == 10 and a.received["child"]["gwproactor.batch"] >= 2
        assert [i for i in p.parent.handled_ids if i in ids] == ids
        assert p.child.store.pending_ids() == []
    finally:
        p.stop()
