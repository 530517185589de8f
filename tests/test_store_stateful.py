"""Hypothesis stateful test: append / ack / set_aside / reopen sequences leave exactly the model's pending events."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from twisted.internet.task import Clock

from gwproactor.store import FileEventStore
from gwproactor.store._format import record_size

IDS = st.sampled_from([f"id-{i}" for i in range(12)])
PAYLOADS = st.binary(min_size=0, max_size=120)
MAX_BYTES = 900


class StoreMachine(RuleBasedStateMachine):
    """The file store against an ordered dict model (drop_oldest bound, small segments)."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="gwp-store-")
        self.clock = Clock()
        self.model: dict[str, bytes] = {}
        self.store = self._open()

    def _open(self) -> FileEventStore:
        return FileEventStore.open(self.directory, clock=self.clock, sync="group", fsync=lambda fd: None,
                                   segment_bytes=300, max_bytes=MAX_BYTES)

    @rule(event_id=IDS, payload=PAYLOADS)
    def append(self, event_id: str, payload: bytes) -> None:
        self.store.append(event_id, payload)
        if event_id in self.model:
            return
        size = record_size(event_id, payload)
        pending = sum(record_size(k, v) for k, v in self.model.items())
        while pending + size > MAX_BYTES:
            oldest = next(iter(self.model))
            pending -= record_size(oldest, self.model.pop(oldest))
        self.model[event_id] = payload

    @rule(event_id=IDS)
    def ack(self, event_id: str) -> None:
        assert self.store.ack(event_id) == (event_id in self.model)
        self.model.pop(event_id, None)

    @rule(event_id=IDS)
    def set_aside(self, event_id: str) -> None:
        if event_id in self.model:
            self.store.set_aside(event_id, "test")
            del self.model[event_id]

    @rule(seconds=st.sampled_from([0.001, 0.02]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self._open()

    @invariant()
    def pending_matches_model(self) -> None:
        assert self.store.pending_ids() == list(self.model)
        for event_id, payload in self.model.items():
            assert self.store.read(event_id) == payload
        assert self.store.stats()["pending_bytes"] == sum(record_size(k, v) for k, v in self.model.items())

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)


StoreMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.__doc__ = "Pending ids and payloads after any append/ack/set_aside/reopen sequence equal the model."
