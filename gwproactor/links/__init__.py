"""Links to peer processes: the pure communication-state machine, ack tracking and liveness timers."""

from __future__ import annotations

from gwproactor.links.acks import AckTracker, RttStats
from gwproactor.links.liveness import Liveness
from gwproactor.links.machine import (
    CONNECTED_STATES,
    TRANSITIONS,
    LinkInput,
    LinkMachine,
    LinkState,
    Step,
    Transition,
)

__all__ = [
    "CONNECTED_STATES",
    "TRANSITIONS",
    "AckTracker",
    "LinkInput",
    "LinkMachine",
    "LinkState",
    "Liveness",
    "RttStats",
    "Step",
    "Transition",
]
