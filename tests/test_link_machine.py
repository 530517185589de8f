"""Tests of the pure link communication-state machine (gwproactor.links.machine)."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import attrs
import docutils.core
import docutils.nodes
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gwproactor.links import machine as machine_module
from gwproactor.links.machine import (
    COMM_MQTT_CONNECT,
    COMM_MQTT_DISCONNECT,
    COMM_MQTT_FULLY_SUBSCRIBED,
    COMM_PEER_ACTIVE,
    COMM_RESPONSE_TIMEOUT,
    CONNECTED_STATES,
    TRANSITIONS,
    LinkInput,
    LinkMachine,
    LinkState,
    Step,
    Transition,
    transition_table_rst,
)

S = LinkState
I = LinkInput  # noqa: E741
ALL_PAIRS = list(itertools.product(LinkState, LinkInput))
DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "comm_state.rst"


# -- an independent model of the semantics, written from the definition of the states --------------


@attrs.define
class Model:
    """Flags-based model: the state is a function of (started, stopped, connected, subscribed, heard)."""

    started: bool = False
    stopped: bool = False
    connected: bool = False
    subscribed: bool = False
    heard: bool = False

    @classmethod
    def of(cls, state: LinkState) -> Model:
        flags = {
            S.not_started: cls(),
            S.connecting: cls(started=True),
            S.awaiting_setup_and_peer: cls(started=True, connected=True),
            S.awaiting_setup: cls(started=True, connected=True, heard=True),
            S.awaiting_peer: cls(started=True, connected=True, subscribed=True),
            S.active: cls(started=True, connected=True, subscribed=True, heard=True),
            S.stopped: cls(started=True, stopped=True),
        }
        return flags[state]

    def state(self) -> LinkState:
        if self.stopped:
            return S.stopped
        if not self.started:
            return S.not_started
        if not self.connected:
            return S.connecting
        if not self.subscribed:
            return S.awaiting_setup if self.heard else S.awaiting_setup_and_peer
        return S.active if self.heard else S.awaiting_peer

    def apply(self, inp: LinkInput) -> tuple[str, ...]:
        was_active = self.state() is S.active
        events: list[str] = []
        if self.stopped:
            return ()
        if inp is I.stop:
            self.stopped = True
        elif not self.started:
            if inp is I.start:
                self.started = True
        elif inp is I.broker_connected and not self.connected:
            self.connected = True
            events.append(COMM_MQTT_CONNECT)
        elif inp is I.broker_disconnected and self.connected:
            self.connected = self.subscribed = self.heard = False
            events.append(COMM_MQTT_DISCONNECT)
        elif inp is I.fully_subscribed and self.connected and not self.subscribed:
            self.subscribed = True
            events.append(COMM_MQTT_FULLY_SUBSCRIBED)
        elif inp is I.subscription_lost and self.connected:
            self.subscribed = False
        elif inp is I.message_from_peer and self.connected:
            self.heard = True
        elif inp in (I.ack_timeout, I.receive_deadline_expired, I.peer_gone) and self.heard:
            self.heard = False
            events.append(COMM_RESPONSE_TIMEOUT)
        if self.state() is S.active and not was_active:
            events.append(COMM_PEER_ACTIVE)
        return tuple(events)


def expected_transition(state: LinkState, inp: LinkInput) -> Transition:
    model = Model.of(state)
    events = model.apply(inp)
    return Transition(old=state, new=model.state(), input=inp, comm_events=events)


# -- every pair --------------------------------------------------------------------------------------


def test_model_round_trips_every_state() -> None:
    """The test model maps every state to flags and back to the same state."""
    assert [Model.of(s).state() for s in LinkState] == list(LinkState)


def test_transitions_cover_every_pair() -> None:
    """TRANSITIONS holds exactly one Step for each (state, input) pair and is read-only."""
    assert set(TRANSITIONS) == set(ALL_PAIRS)
    assert all(isinstance(step, Step) for step in TRANSITIONS.values())
    with pytest.raises(TypeError):
        TRANSITIONS[(S.active, I.stop)] = Step(S.active)  # type: ignore[index]


@pytest.mark.parametrize(("state", "inp"), ALL_PAIRS, ids=[f"{s.value}-{i.value}" for s, i in ALL_PAIRS])
def test_every_pair_matches_the_semantics_and_the_table(state: LinkState, inp: LinkInput) -> None:
    """Each (state, input) pair gives the next state and outputs the semantics define and TRANSITIONS documents."""
    machine = LinkMachine(state=state)
    transition = machine.handle(inp)
    expected = expected_transition(state, inp)
    assert transition == expected
    assert machine.state is expected.new
    assert TRANSITIONS[(state, inp)] == Step(expected.new, expected.comm_events)
    assert transition.changed is (expected.new is not state)
    assert transition.entered_active is (expected.new is S.active and state is not S.active)
    assert transition.left_active is (state is S.active and expected.new is not S.active)
    assert transition.send_ready is (expected.new in CONNECTED_STATES and state not in CONNECTED_STATES)
    assert machine.is_active is (expected.new is S.active)
    assert machine.is_connected is (expected.new in CONNECTED_STATES)


def test_send_ready_only_on_broker_connected_from_connecting() -> None:
    """send_ready is true for exactly one pair: broker_connected in connecting."""
    ready = [(s, i) for s, i in ALL_PAIRS if LinkMachine(state=s).handle(i).send_ready]
    assert ready == [(S.connecting, I.broker_connected)]


def test_comm_event_names_are_gridworks_type_names() -> None:
    """Comm events use the gridworks 4.x TypeNames of WIRE.md."""
    names = {e for step in TRANSITIONS.values() for e in step.comm_events}
    assert names == {
        "gridworks.event.comm.mqtt.connect",
        "gridworks.event.comm.mqtt.disconnect",
        "gridworks.event.comm.mqtt.fully.subscribed",
        "gridworks.event.comm.peer.active",
        "gridworks.event.comm.response.timeout",
    }


def test_state_and_input_values_are_the_user_visible_names() -> None:
    """Enum values are the documented state and input names."""
    assert [s.value for s in LinkState] == [
        "not_started",
        "connecting",
        "awaiting_setup_and_peer",
        "awaiting_setup",
        "awaiting_peer",
        "active",
        "stopped",
    ]
    assert [i.value for i in LinkInput] == [
        "start",
        "stop",
        "broker_connected",
        "broker_disconnected",
        "fully_subscribed",
        "subscription_lost",
        "message_from_peer",
        "ack_timeout",
        "receive_deadline_expired",
        "peer_gone",
    ]
    assert str(S.awaiting_peer) == "awaiting_peer"


def test_handle_rejects_a_non_input_with_type_error() -> None:
    """Passing something that is not a LinkInput is a programming error: TypeError, state unchanged."""
    machine = LinkMachine()
    with pytest.raises(TypeError, match="LinkInput"):
        machine.handle("start")  # type: ignore[arg-type]
    assert machine.state is S.not_started


def test_transition_is_frozen() -> None:
    """Transition values cannot be mutated."""
    transition = LinkMachine().handle(I.start)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        transition.new = S.active  # type: ignore[misc]


@given(st.lists(st.sampled_from(list(LinkInput)), max_size=60))
def test_random_input_sequences_follow_the_model(inputs: list[LinkInput]) -> None:
    """Any sequence of inputs keeps machine and model in the same state with the same comm events."""
    machine = LinkMachine()
    model = Model()
    for inp in inputs:
        events = model.apply(inp)
        transition = machine.handle(inp)
        assert transition.new is model.state()
        assert transition.comm_events == events


# -- scenarios -----------------------------------------------------------------------------------------


def run(machine: LinkMachine, *inputs: LinkInput) -> list[Transition]:
    return [machine.handle(i) for i in inputs]


def test_scenario_normal_life_with_an_ack_timeout() -> None:
    """start → connecting → awaiting_setup_and_peer → awaiting_peer → active → awaiting_peer (ack timeout) → active."""
    machine = LinkMachine()
    assert machine.state is S.not_started
    steps = run(
        machine,
        I.start,
        I.broker_connected,
        I.fully_subscribed,
        I.message_from_peer,
        I.ack_timeout,
        I.message_from_peer,
    )
    assert [t.new for t in steps] == [
        S.connecting,
        S.awaiting_setup_and_peer,
        S.awaiting_peer,
        S.active,
        S.awaiting_peer,
        S.active,
    ]
    assert [t.comm_events for t in steps] == [
        (),
        (COMM_MQTT_CONNECT,),
        (COMM_MQTT_FULLY_SUBSCRIBED,),
        (COMM_PEER_ACTIVE,),
        (COMM_RESPONSE_TIMEOUT,),
        (COMM_PEER_ACTIVE,),
    ]
    assert [t.entered_active for t in steps] == [False, False, False, True, False, True]
    assert [t.left_active for t in steps] == [False, False, False, False, True, False]
    assert [t.send_ready for t in steps] == [False, True, False, False, False, False]


def test_scenario_message_before_suback() -> None:
    """A peer message before the SUBACKs leads to awaiting_setup, then fully_subscribed makes the link active."""
    machine = LinkMachine()
    steps = run(machine, I.start, I.broker_connected, I.message_from_peer, I.fully_subscribed)
    assert [t.new for t in steps] == [S.connecting, S.awaiting_setup_and_peer, S.awaiting_setup, S.active]
    assert steps[-1].comm_events == (COMM_MQTT_FULLY_SUBSCRIBED, COMM_PEER_ACTIVE)
    assert steps[-1].entered_active


def test_scenario_receive_deadline_in_awaiting_setup_forgets_the_peer() -> None:
    """The receive deadline in awaiting_setup goes back to awaiting_setup_and_peer with a response timeout."""
    machine = LinkMachine(state=S.awaiting_setup)
    transition = machine.handle(I.receive_deadline_expired)
    assert transition.new is S.awaiting_setup_and_peer
    assert transition.comm_events == (COMM_RESPONSE_TIMEOUT,)
    assert machine.handle(I.fully_subscribed).new is S.awaiting_peer


def test_scenario_disconnect_from_active_then_reconnect() -> None:
    """Losing the broker from active goes to connecting; reconnecting needs SUBACKs and the peer again."""
    machine = LinkMachine(state=S.active)
    lost = machine.handle(I.broker_disconnected)
    assert (lost.new, lost.comm_events, lost.left_active) == (S.connecting, (COMM_MQTT_DISCONNECT,), True)
    # late inputs from the old connection are no-ops
    for late in (I.broker_disconnected, I.message_from_peer, I.ack_timeout, I.fully_subscribed):
        transition = machine.handle(late)
        assert not transition.changed
        assert transition.comm_events == ()
    steps = run(machine, I.broker_connected, I.fully_subscribed, I.message_from_peer)
    assert [t.new for t in steps] == [S.awaiting_setup_and_peer, S.awaiting_peer, S.active]


def test_scenario_subscription_lost_from_active() -> None:
    """A lost subscription in active keeps the peer heard: awaiting_setup, and back to active on resubscribe."""
    machine = LinkMachine(state=S.active)
    steps = run(machine, I.subscription_lost, I.fully_subscribed)
    assert [t.new for t in steps] == [S.awaiting_setup, S.active]
    assert steps[0].left_active and steps[1].entered_active


@pytest.mark.parametrize("state", list(LinkState), ids=[s.value for s in LinkState])
def test_stop_from_anywhere_is_final(state: LinkState) -> None:
    """stop from any state gives stopped, and afterwards every input is a no-op without comm events."""
    machine = LinkMachine(state=state)
    stop = machine.handle(I.stop)
    assert stop.new is S.stopped
    assert stop.comm_events == ()
    assert stop.left_active is (state is S.active)
    for inp in LinkInput:
        transition = machine.handle(inp)
        assert (transition.old, transition.new, transition.changed, transition.comm_events) == (
            S.stopped,
            S.stopped,
            False,
            (),
        )


def test_duplicate_inputs_are_reported_as_no_ops() -> None:
    """A repeated input reports changed=False and no comm events instead of raising."""
    machine = LinkMachine()
    run(machine, I.start, I.broker_connected, I.fully_subscribed, I.message_from_peer)
    for inp in (I.start, I.broker_connected, I.fully_subscribed, I.message_from_peer):
        transition = machine.handle(inp)
        assert transition == Transition(old=S.active, new=S.active, input=inp, comm_events=())
        assert not transition.changed


# -- purity and documentation ---------------------------------------------------------------------------


def test_machine_module_imports_no_twisted() -> None:
    """machine.py imports nothing from Twisted (it is pure: no reactor, no clock, no I/O)."""
    tree = ast.parse(Path(machine_module.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not [name for name in imported if name.split(".")[0] == "twisted"]
    assert imported <= {"__future__", "enum", "collections.abc", "types", "attrs"}


def _table_rows(rst: str) -> list[list[str]]:
    """Parse a reST document and return the body rows of its last table as lists of cell texts."""
    doctree = docutils.core.publish_doctree(rst, settings_overrides={"report_level": 2, "halt_level": 2})
    table = list(doctree.findall(docutils.nodes.table))[-1]
    rows = []
    for row in table.findall(docutils.nodes.row):
        if isinstance(row.parent, docutils.nodes.tbody):
            rows.append([entry.astext() for entry in row.findall(docutils.nodes.entry)])
    return rows


def test_rendered_table_documents_every_pair() -> None:
    """The reST table from transition_table_rst() parses and states every pair's next state and comm events."""
    seen: dict[tuple[LinkState, LinkInput], Step] = {}
    for state_cell, input_cell, next_cell, events_cell in _table_rows(transition_table_rst()):
        state = LinkState(state_cell)
        inputs = [LinkInput(name.strip()) for name in input_cell.replace("\n", " ").split(",")]
        new = state if next_cell == "(no change)" else LinkState(next_cell)
        events = tuple(
            "gridworks.event.comm." + e.strip() for e in events_cell.replace("\n", " ").split(",") if e.strip()
        )
        for inp in inputs:
            assert (state, inp) not in seen
            seen[(state, inp)] = Step(new, events)
    assert seen == dict(TRANSITIONS)


def test_module_docstring_holds_the_current_table() -> None:
    """The module docstring carries exactly the table transition_table_rst() renders, and is valid reST."""
    doc = machine_module.__doc__ or ""
    assert "\n" + transition_table_rst() in doc
    docutils.core.publish_doctree(
        doc.replace(":class:", "").replace(":data:", "").replace(":func:", ""),
        settings_overrides={"report_level": 2, "halt_level": 2},
    )


def test_docs_page_holds_the_current_table() -> None:
    """docs/comm_state.rst carries exactly the table transition_table_rst() renders."""
    text = DOC_PATH.read_text(encoding="utf-8")
    assert transition_table_rst() in text
