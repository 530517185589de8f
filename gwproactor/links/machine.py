"""The pure communication-state machine of one link: states, inputs, and the table that joins them.

It does no I/O and keeps no clock; the link service feeds it inputs and acts on the :class:`Transition` it returns.

.. rubric:: Theory of operation

A link is *active* when, at the same time:

* its broker connection is connected,
* every subscription of the link has a successful SUBACK ("fully subscribed"),
* a message from the peer arrived within the receive deadline, and
* no ack timeout happened since the last message from the peer.

The last two conditions together are "peer heard".  The machine tracks the three
facts *connected*, *fully subscribed* and *peer heard* through its state:

=========================== ========= ================ ==========
State                       connected fully subscribed peer heard
=========================== ========= ================ ==========
``not_started``             no        no               no
``connecting``              no        no               no
``awaiting_setup_and_peer`` yes       no               no
``awaiting_setup``          yes       no               yes
``awaiting_peer``           yes       yes              no
``active``                  yes       yes              yes
``stopped``                 no        no               no
=========================== ========= ================ ==========

Rules: ``start`` acts only in ``not_started``; ``stop`` leads to ``stopped`` from
every other state, and every input is a no-op in ``stopped``.  ``broker_disconnected``
forgets the subscriptions and the peer.  ``ack_timeout``,
``receive_deadline_expired`` and ``peer_gone`` forget the peer.  ``subscription_lost`` (a
subscription refused or lost) forgets the subscriptions.  Every input is legal in
every state: an input that changes nothing (late, duplicate, or meaningless in
that state) returns a :class:`Transition` with ``changed`` false, never an exception.

.. rubric:: Which ack timeouts count

``ack_timeout`` means "the peer, as last heard, has gone silent", so the link feeds
it only when a timeout is evidence of that (:class:`AckEvidence` decides; it is pure
too).  A timeout of a frame that was sent

* before the peer was last heard again (a ping sent while we waited for the peer,
  or before a broker reconnect, whose ack was lost with the old connection), or
* before an ack that has since arrived (the peer acks later frames: this one frame
  was lost, or the peer's application refused it)

is not evidence.  It still fails that frame's Deferred with ``AckTimeout`` (the
outbox retries, then parks, such an event), and it is counted as discounted in the
link's stats, but the link stays ``active``.  Any other timeout is first confirmed:
the link sends one ping (a *probe*) and feeds ``ack_timeout`` only if that probe
times out too, with no ack received meanwhile.  So a peer that went silent is
noticed within two ack timeouts (or the receive deadline, whichever comes first),
and a single frame the peer never acks does not take the link out of ``active``.

Note that ``broker_connected`` is a no-op in ``not_started``: a link started on a
broker connection that is already connected must feed ``broker_connected`` (and
``fully_subscribed`` when so) right after ``start``.

.. rubric:: Transition table

Every (state, input) pair, as held in :data:`TRANSITIONS`.  Comm events are
gridworks ``TypeName`` s without their common prefix ``gridworks.event.comm.``;
"(no change)" rows are no-ops.  The other outputs of a :class:`Transition` follow
from the old and new states: ``entered_active`` / ``left_active`` when the link
enters or leaves ``active``, ``send_ready`` when it enters a connected state from
a disconnected one (the link may publish from then on).

.. transition-table-start

=========================== ============================== =========================== ==================================
State                       Input                          Next state                  Comm events
=========================== ============================== =========================== ==================================
``not_started``             ``start``                      ``connecting``
``not_started``             ``stop``                       ``stopped``
``not_started``             ``broker_connected``,          (no change)
                            ``broker_disconnected``,
                            ``fully_subscribed``,
                            ``subscription_lost``,
                            ``message_from_peer``,
                            ``ack_timeout``,
                            ``receive_deadline_expired``,
                            ``peer_gone``
``connecting``              ``stop``                       ``stopped``
``connecting``              ``broker_connected``           ``awaiting_setup_and_peer`` ``mqtt.connect``
``connecting``              ``start``,                     (no change)
                            ``broker_disconnected``,
                            ``fully_subscribed``,
                            ``subscription_lost``,
                            ``message_from_peer``,
                            ``ack_timeout``,
                            ``receive_deadline_expired``,
                            ``peer_gone``
``awaiting_setup_and_peer`` ``stop``                       ``stopped``
``awaiting_setup_and_peer`` ``broker_disconnected``        ``connecting``              ``mqtt.disconnect``
``awaiting_setup_and_peer`` ``fully_subscribed``           ``awaiting_peer``           ``mqtt.fully.subscribed``
``awaiting_setup_and_peer`` ``message_from_peer``          ``awaiting_setup``
``awaiting_setup_and_peer`` ``start``,                     (no change)
                            ``broker_connected``,
                            ``subscription_lost``,
                            ``ack_timeout``,
                            ``receive_deadline_expired``,
                            ``peer_gone``
``awaiting_setup``          ``stop``                       ``stopped``
``awaiting_setup``          ``broker_disconnected``        ``connecting``              ``mqtt.disconnect``
``awaiting_setup``          ``fully_subscribed``           ``active``                  ``mqtt.fully.subscribed``,
                                                                                       ``peer.active``
``awaiting_setup``          ``ack_timeout``                ``awaiting_setup_and_peer`` ``response.timeout``
``awaiting_setup``          ``receive_deadline_expired``   ``awaiting_setup_and_peer`` ``response.timeout``
``awaiting_setup``          ``peer_gone``                  ``awaiting_setup_and_peer`` ``response.timeout``
``awaiting_setup``          ``start``,                     (no change)
                            ``broker_connected``,
                            ``subscription_lost``,
                            ``message_from_peer``
``awaiting_peer``           ``stop``                       ``stopped``
``awaiting_peer``           ``broker_disconnected``        ``connecting``              ``mqtt.disconnect``
``awaiting_peer``           ``subscription_lost``          ``awaiting_setup_and_peer``
``awaiting_peer``           ``message_from_peer``          ``active``                  ``peer.active``
``awaiting_peer``           ``start``,                     (no change)
                            ``broker_connected``,
                            ``fully_subscribed``,
                            ``ack_timeout``,
                            ``receive_deadline_expired``,
                            ``peer_gone``
``active``                  ``stop``                       ``stopped``
``active``                  ``broker_disconnected``        ``connecting``              ``mqtt.disconnect``
``active``                  ``subscription_lost``          ``awaiting_setup``
``active``                  ``ack_timeout``                ``awaiting_peer``           ``response.timeout``
``active``                  ``receive_deadline_expired``   ``awaiting_peer``           ``response.timeout``
``active``                  ``peer_gone``                  ``awaiting_peer``           ``response.timeout``
``active``                  ``start``,                     (no change)
                            ``broker_connected``,
                            ``fully_subscribed``,
                            ``message_from_peer``
``stopped``                 ``start``,                     (no change)
                            ``stop``,
                            ``broker_connected``,
                            ``broker_disconnected``,
                            ``fully_subscribed``,
                            ``subscription_lost``,
                            ``message_from_peer``,
                            ``ack_timeout``,
                            ``receive_deadline_expired``,
                            ``peer_gone``
=========================== ============================== =========================== ==================================

.. transition-table-end

(The table is produced by :func:`transition_table_rst`; a test keeps this copy
and the one in ``docs/comm_state.rst`` equal to it.)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

import attrs

__all__ = [
    "COMM_MQTT_CONNECT",
    "COMM_MQTT_DISCONNECT",
    "COMM_MQTT_FULLY_SUBSCRIBED",
    "COMM_PEER_ACTIVE",
    "COMM_RESPONSE_TIMEOUT",
    "CONNECTED_STATES",
    "PEER_HEARD_STATES",
    "AckEvidence",
    "TRANSITIONS",
    "LinkInput",
    "LinkMachine",
    "LinkState",
    "Step",
    "Transition",
    "transition_table_rst",
]


class LinkState(str, enum.Enum):
    """The communication state of a link; the values are the names users see in logs and stats."""

    not_started = "not_started"
    connecting = "connecting"
    awaiting_setup_and_peer = "awaiting_setup_and_peer"
    awaiting_setup = "awaiting_setup"
    awaiting_peer = "awaiting_peer"
    active = "active"
    stopped = "stopped"

    def __str__(self) -> str:
        return self.value


class LinkInput(str, enum.Enum):
    """What can happen to a link."""

    start = "start"
    """The link service starts."""
    stop = "stop"
    """The link service stops (final)."""
    broker_connected = "broker_connected"
    """The broker connection got an accepting CONNACK."""
    broker_disconnected = "broker_disconnected"
    """The broker connection was lost or closed."""
    fully_subscribed = "fully_subscribed"
    """Every subscription of the link has a successful SUBACK."""
    subscription_lost = "subscription_lost"
    """A subscription of the link was refused (SUBACK failure) or removed."""
    message_from_peer = "message_from_peer"
    """A frame from the peer was received (any frame: pings and acks count)."""
    ack_timeout = "ack_timeout"
    """An ack-required message sent to the peer got no ack in time."""
    receive_deadline_expired = "receive_deadline_expired"
    """Nothing was received from the peer for the receive deadline."""
    peer_gone = "peer_gone"
    """The peer's process announced it is gone: its MQTT Last Will (it died, or its connection dropped
    without a DISCONNECT), or its own announcement as it stopped."""

    def __str__(self) -> str:
        return self.value


COMM_MQTT_CONNECT = "gridworks.event.comm.mqtt.connect"
COMM_MQTT_DISCONNECT = "gridworks.event.comm.mqtt.disconnect"
COMM_MQTT_FULLY_SUBSCRIBED = "gridworks.event.comm.mqtt.fully.subscribed"
COMM_PEER_ACTIVE = "gridworks.event.comm.peer.active"
COMM_RESPONSE_TIMEOUT = "gridworks.event.comm.response.timeout"

_COMM_PREFIX = "gridworks.event.comm."

CONNECTED_STATES: frozenset[LinkState] = frozenset(
    {
        LinkState.awaiting_setup_and_peer,
        LinkState.awaiting_setup,
        LinkState.awaiting_peer,
        LinkState.active,
    }
)
"""States in which the broker connection is up: the link may publish."""


PEER_HEARD_STATES: frozenset[LinkState] = frozenset({LinkState.awaiting_setup, LinkState.active})
"""States in which the peer counts as heard."""


@attrs.define
class AckEvidence:
    """Decides whether an ack timeout is evidence that the peer has gone silent (see the module docstring).

    Frames are numbered in send order: :meth:`frame_sent` returns the number to give the
    ack tracker; :meth:`ack_received` and :meth:`peer_heard_again` record how far the
    sending had got when an ack arrived and when the peer was heard again.

    >>> e = AckEvidence()
    >>> ping = e.frame_sent()          # sent while waiting for the peer
    >>> e.peer_heard_again()           # the peer appears: the link becomes active
    >>> e.is_evidence(ping)
    False
    >>> event = e.frame_sent()
    >>> e.is_evidence(event)           # nothing heard since it was sent
    True
    """

    sent: int = 0
    """Ack-required frames sent so far."""
    acked_through: int = 0
    """How many frames had been sent when the latest ack arrived."""
    heard_from: int = 0
    """How many frames had been sent when the peer was last heard again."""

    def frame_sent(self) -> int:
        """Number the next ack-required frame."""
        self.sent += 1
        return self.sent

    def ack_received(self) -> None:
        """An ack arrived: every frame sent so far was sent before it."""
        self.acked_through = self.sent

    def peer_heard_again(self) -> None:
        """The link entered a state where the peer is heard, from one where it was not."""
        self.heard_from = self.sent

    def is_evidence(self, number: object) -> bool:
        """True if the timeout of frame ``number`` should count against the link."""
        if not isinstance(number, int):
            return True
        return number > self.acked_through and number > self.heard_from


@attrs.frozen
class Step:
    """One cell of the transition table: the next state and the comm events to generate."""

    new: LinkState
    comm_events: tuple[str, ...] = ()


_S = LinkState
_I = LinkInput

# The transitions that change something.  Every pair not listed here is a no-op
# (same state, no comm event); TRANSITIONS below holds all pairs explicitly.
_CHANGES: dict[tuple[LinkState, LinkInput], Step] = {
    (_S.not_started, _I.start): Step(_S.connecting),
    (_S.not_started, _I.stop): Step(_S.stopped),
    (_S.connecting, _I.stop): Step(_S.stopped),
    (_S.connecting, _I.broker_connected): Step(_S.awaiting_setup_and_peer, (COMM_MQTT_CONNECT,)),
    (_S.awaiting_setup_and_peer, _I.stop): Step(_S.stopped),
    (_S.awaiting_setup_and_peer, _I.broker_disconnected): Step(_S.connecting, (COMM_MQTT_DISCONNECT,)),
    (_S.awaiting_setup_and_peer, _I.fully_subscribed): Step(_S.awaiting_peer, (COMM_MQTT_FULLY_SUBSCRIBED,)),
    (_S.awaiting_setup_and_peer, _I.message_from_peer): Step(_S.awaiting_setup),
    (_S.awaiting_setup, _I.stop): Step(_S.stopped),
    (_S.awaiting_setup, _I.broker_disconnected): Step(_S.connecting, (COMM_MQTT_DISCONNECT,)),
    (_S.awaiting_setup, _I.fully_subscribed): Step(_S.active, (COMM_MQTT_FULLY_SUBSCRIBED, COMM_PEER_ACTIVE)),
    (_S.awaiting_setup, _I.ack_timeout): Step(_S.awaiting_setup_and_peer, (COMM_RESPONSE_TIMEOUT,)),
    (_S.awaiting_setup, _I.receive_deadline_expired): Step(_S.awaiting_setup_and_peer, (COMM_RESPONSE_TIMEOUT,)),
    (_S.awaiting_setup, _I.peer_gone): Step(_S.awaiting_setup_and_peer, (COMM_RESPONSE_TIMEOUT,)),
    (_S.awaiting_peer, _I.stop): Step(_S.stopped),
    (_S.awaiting_peer, _I.broker_disconnected): Step(_S.connecting, (COMM_MQTT_DISCONNECT,)),
    (_S.awaiting_peer, _I.subscription_lost): Step(_S.awaiting_setup_and_peer),
    (_S.awaiting_peer, _I.message_from_peer): Step(_S.active, (COMM_PEER_ACTIVE,)),
    (_S.active, _I.stop): Step(_S.stopped),
    (_S.active, _I.broker_disconnected): Step(_S.connecting, (COMM_MQTT_DISCONNECT,)),
    (_S.active, _I.subscription_lost): Step(_S.awaiting_setup),
    (_S.active, _I.ack_timeout): Step(_S.awaiting_peer, (COMM_RESPONSE_TIMEOUT,)),
    (_S.active, _I.receive_deadline_expired): Step(_S.awaiting_peer, (COMM_RESPONSE_TIMEOUT,)),
    (_S.active, _I.peer_gone): Step(_S.awaiting_peer, (COMM_RESPONSE_TIMEOUT,)),
}

TRANSITIONS: Mapping[tuple[LinkState, LinkInput], Step] = MappingProxyType(
    {(state, inp): _CHANGES.get((state, inp), Step(state)) for state in LinkState for inp in LinkInput}
)
"""Every (state, input) pair → :class:`Step`.  Read-only."""


@attrs.frozen
class Transition:
    """What one input did to a :class:`LinkMachine`, and what the link must do about it."""

    old: LinkState
    new: LinkState
    input: LinkInput
    comm_events: tuple[str, ...] = ()
    """gridworks ``TypeName`` s of the comm events to generate, in order."""

    @property
    def changed(self) -> bool:
        """False for a no-op (late, duplicate or meaningless input)."""
        return self.old is not self.new

    @property
    def entered_active(self) -> bool:
        """The link just became active."""
        return self.new is LinkState.active and self.old is not LinkState.active

    @property
    def left_active(self) -> bool:
        """The link was active and no longer is."""
        return self.old is LinkState.active and self.new is not LinkState.active

    @property
    def send_ready(self) -> bool:
        """The link just entered a connected state: it may publish from now on."""
        return self.new in CONNECTED_STATES and self.old not in CONNECTED_STATES


@attrs.define(eq=False)
class LinkMachine:
    """The communication state of one link.

    >>> m = LinkMachine()
    >>> m.handle(LinkInput.start).new
    <LinkState.connecting: 'connecting'>
    """

    _state: LinkState = attrs.field(default=LinkState.not_started, converter=LinkState)

    @property
    def state(self) -> LinkState:
        """The current state."""
        return self._state

    @property
    def is_active(self) -> bool:
        """True in ``active``."""
        return self._state is LinkState.active

    @property
    def is_connected(self) -> bool:
        """True in a state whose broker connection is up (see :data:`CONNECTED_STATES`)."""
        return self._state in CONNECTED_STATES

    def handle(self, link_input: LinkInput) -> Transition:
        """Apply ``link_input`` and return what it did.  Never raises for a legal :class:`LinkInput`.

        :raises TypeError: if ``link_input`` is not a :class:`LinkInput` member (a programming error).
        """
        if not isinstance(link_input, LinkInput):
            raise TypeError(f"LinkMachine.handle() needs a LinkInput, got {link_input!r}")
        old = self._state
        transition = _TRANSITION_OBJECTS[(old, link_input)]
        if transition.new is not old:
            self._state = transition.new
        return transition


_TRANSITION_OBJECTS: dict[tuple[LinkState, LinkInput], Transition] = {
    key: Transition(old=key[0], new=step.new, input=key[1], comm_events=step.comm_events)
    for key, step in TRANSITIONS.items()
}
"""One frozen :class:`Transition` per (state, input), built once: a frame from the peer costs no allocation."""


def transition_table_rst() -> str:
    """Return :data:`TRANSITIONS` as a reST simple table (as in the module docstring and the docs).

    Per state: one row per input that changes something, then one row listing
    every no-op input.
    """
    widths = (27, 30, 27, 34)
    header = ("State", "Input", "Next state", "Comm events")

    def line(cells: tuple[str, ...]) -> str:
        return " ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    def lit(text: str) -> str:
        return f"``{text}``"

    rule = " ".join("=" * w for w in widths)
    out = [rule, line(header), rule]
    for state in LinkState:
        noops = []
        for inp in LinkInput:
            step = TRANSITIONS[(state, inp)]
            if step.new is state:
                noops.append(inp)
                continue
            input_lines = [lit(inp.value)]
            event_lines = [lit(e.removeprefix(_COMM_PREFIX)) for e in step.comm_events]
            event_lines = [e + "," for e in event_lines[:-1]] + event_lines[-1:]
            rows = max(len(input_lines), len(event_lines), 1)
            for i in range(rows):
                out.append(
                    line(
                        (
                            lit(state.value) if i == 0 else "",
                            input_lines[i] if i < len(input_lines) else "",
                            lit(step.new.value) if i == 0 else "",
                            event_lines[i] if i < len(event_lines) else "",
                        )
                    )
                )
        for i, inp in enumerate(noops):
            cell = lit(inp.value) + ("," if i < len(noops) - 1 else "")
            out.append(line((lit(state.value) if i == 0 else "", cell, "(no change)" if i == 0 else "", "")))
    out.append(rule)
    return "\n".join(out) + "\n"
