"""Live interop with the real gridworks-proactor 4.1.13: each side as child and as parent, both start orders, a broker
restart mid-stream, and idle periods longer than 4.x's 60 s ping interval.

4.x runs in a virtualenv of its own (installed from the package index once per machine, see
:func:`gwproactor_test.interop4x.ensure_v4x_env`); the module is skipped only when that install is impossible.  Our
side runs in this process.  Every scenario has a private broker and checks that both links reach active, that every
event arrives, that the 4.x application (which does not drop duplicates) gets no event twice unless the broker took
its ack away (those are bounded by our outbox window), that our application gets none twice, that our side
generates no ``gridworks.event.comm.response.timeout`` once its link has been active, that 4.x never times out
waiting for an ack of ours (except for its own first ping, lost when it was sent before we subscribed: a 4.x
behaviour, see ``docs/interop_4x.rst``), and that neither side reports a frame it could not decode.  The idle
scenarios start together when the module starts and run in the background while the others run.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall

from gwproactor.demo.apps import Reading
from gwproactor_test.broker import PrivateBroker
from gwproactor_test.interop4x import INTEROP_LINK_SETTINGS, InteropPair, V4xEnv
from gwproactor_test.plugin import require_mosquitto
from gwproactor_test.wait import is_quiescent

pytestmark = pytest.mark.live

RESPONSE_TIMEOUT = "gridworks.event.comm.response.timeout"
PROBLEM = "gridworks.event.problem"
FIRST_WAITS_S = 3.0
"""How long the side started first waits for its peer before the peer starts."""
IDLE_S = 70.0
"""Idle period of the idle scenarios: longer than 4.x's 60 s ping interval."""
RATE_HZ = 50.0
"""Events per second our child generates while streaming."""


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v4x(v4x_env: V4xEnv) -> V4xEnv:
    """The gridworks-proactor 4.1.13 virtualenv (the plugin's ``v4x_env``; it skips when 4.x cannot be installed)."""
    require_mosquitto()
    return v4x_env


@attrs.define(eq=False)
class Outcome:
    """What one scenario saw, for its assertions and its summary line."""

    name: str
    expected: list[str] = attrs.field(factory=list)
    """Ids of the readings the child made durable (ours) or generated (4.x)."""
    delivered: Counter = attrs.field(factory=Counter)
    """How many times the receiving application got each event id (every event type)."""
    exposed: set[str] = attrs.field(factory=set)
    """Events whose ack a broker stop may have lost (they may legitimately arrive twice at a 4.x parent)."""
    window: int = 0
    ours_timeouts: list[Any] = attrs.field(factory=list)
    v4x_timeouts: list[Any] = attrs.field(factory=list)
    v4x_problems: list[Any] = attrs.field(factory=list)
    our_wire_errors: dict[str, int] = attrs.field(factory=dict)
    notes: dict[str, Any] = attrs.field(factory=dict)
    started: float = attrs.field(factory=time.monotonic)
    seconds: float = 0.0
    describe: str = ""

    @property
    def duplicates(self) -> dict[str, int]:
        return {i: n for i, n in self.delivered.items() if n > 1}

    def summary(self) -> str:
        return json.dumps({
            "scenario": self.name,
            "seconds": round(self.seconds, 1),
            "events": len(self.expected),
            "missing": len(set(self.expected) - set(self.delivered)),
            "duplicates": len(self.duplicates),
            "exposed": len(self.exposed),
            "response_timeouts_after_active": {"ours": len(self.ours_timeouts)},
            "v4x_ack_timeouts_not_stale_pings": len(self.v4x_timeouts),
            **self.notes,
        })


def _broker(tmp: Path, certs: Any) -> PrivateBroker:
    return PrivateBroker(tmp / "broker", certs=certs, reactor=_reactor(), mosquitto=require_mosquitto())


# --- scenario steps --------------------------------------------------------------------------------------


@attrs.define(eq=False)
class Streamer:
    """Our child generating readings at ``rate`` per second until stopped; :attr:`ids` are the durable ones."""

    proactor: Any
    rate: float = RATE_HZ
    ids: list[str] = attrs.field(factory=list)
    generated: int = 0
    _loop: Any = None

    def start(self) -> None:
        self._loop = LoopingCall(self._one)
        self._loop.clock = _reactor()
        self._loop.start(1.0 / self.rate, now=True)

    def _one(self) -> None:
        self.generated += 1
        event = Reading(src=self.proactor.name, seq=self.generated, value=float(self.generated))
        self.proactor.generate_event(event).addCallback(self.ids.append)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    @property
    def all_durable(self) -> bool:
        return len(self.ids) == self.generated


async def settle(pair: InteropPair) -> None:
    """Observe past the last activation of either side for longer than an ack timeout (so a stale ack timer would
    have fired), then wait until nothing is in flight on our side."""
    ours = [t for t, _n, _o, new, _i, _e in pair.proactor.transitions if new == "active"]
    theirs = [line["t"] for line in pair.peer.records.of("state") if line["new"] == "active"]
    last = max(ours + theirs, default=time.time())
    remaining = last + INTEROP_LINK_SETTINGS["ack_timeout_s"] + 1.5 - time.time()
    if remaining > 0:
        await pair.pause(remaining)
    await pair.wait(lambda: is_quiescent(pair.proactor), 30, "our side quiescent")


async def wait_delivered(pair: InteropPair, expected: list[str], timeout: float = 60) -> None:
    """Wait until the receiving application has every expected event."""
    if pair.ours == "child":

        def delivered() -> bool:
            return set(expected) <= set(pair.peer.records.received())
    else:

        def delivered() -> bool:
            return set(expected) <= set(pair.proactor.handled_ids)

    await pair.wait(delivered, timeout, f"{len(expected)} events delivered")


def collect(pair: InteropPair, outcome: Outcome) -> Outcome:
    """Fill ``outcome`` from both sides' records."""
    link = pair.link
    records = pair.peer.records
    outcome.delivered = records.received() if pair.ours == "child" else Counter(pair.proactor.handled_ids)
    outcome.exposed = set(pair.proactor.exposed)
    outcome.window = pair.proactor.settings.links[pair.link_name].window
    outcome.ours_timeouts = pair.proactor.timeouts_after_active(pair.link_name)
    first = records.first_active(pair.peer.link_name)
    after_active = [line for line in records.of("timeout") if first is not None and line["t"] > first]
    stale = records.stale_pings(pair.peer.link_name)
    # A ping 4.x sent before its peer was there times out even after the link became active: 4.x's own
    # behaviour, which flaps its link once.  Any other ack timeout means our side did not ack in time.
    outcome.v4x_timeouts = [line for line in after_active if line["id"] not in stale]
    outcome.notes["v4x_stale_ping_timeouts_after_active"] = len(after_active) - len(outcome.v4x_timeouts)
    outcome.notes["v4x_response_timeouts_after_active"] = (
        len(records.generated(RESPONSE_TIMEOUT, after=first)) if first is not None else 0)
    outcome.v4x_problems = records.generated(PROBLEM)
    stats = link.stats
    outcome.our_wire_errors = {"decode_errors": stats.decode_errors, "rejected": stats.rejected}
    outcome.notes.setdefault("ours_dedup_dropped", pair.proactor.counts.total("deduplicated"))
    outcome.notes.setdefault("v4x_ack_timeouts", len(records.of("timeout")))
    outcome.seconds = time.monotonic() - outcome.started
    outcome.describe = pair.describe()
    return outcome


def check(outcome: Outcome) -> None:
    """The guarantees every scenario pins."""
    print(outcome.summary())
    context = f"{outcome.summary()}\n{outcome.describe}"
    missing = set(outcome.expected) - set(outcome.delivered)
    assert not missing, f"{len(missing)} of {len(outcome.expected)} events never reached the application\n{context}"
    # An event whose ack the broker outage may have taken may arrive once more; nothing else may.
    unexplained = {i: n for i, n in outcome.duplicates.items() if n > (2 if i in outcome.exposed else 1)}
    assert not unexplained, (
        f"{len(unexplained)} events reached the application more often than a lost ack explains "
        f"(duplicates {len(outcome.duplicates)}, exposed to the outage {len(outcome.exposed)})\n{context}"
    )
    assert len(outcome.duplicates) <= outcome.window, f"more duplicates than the outbox window\n{context}"
    assert not outcome.ours_timeouts, f"our side generated {RESPONSE_TIMEOUT} after its link was active: " \
                                      f"{outcome.ours_timeouts}\n{context}"
    assert not outcome.v4x_timeouts, (f"4.x timed out waiting for our acks after its link was active: "
                                      f"{outcome.v4x_timeouts}\n{context}")
    assert not outcome.v4x_problems, f"4.x reported problems: {outcome.v4x_problems}\n{context}"
    assert outcome.our_wire_errors == {"decode_errors": 0, "rejected": 0}, context


def make_pair(v4x: V4xEnv, broker: PrivateBroker, tmp: Path, ours: str, **kwargs: Any) -> InteropPair:
    return InteropPair(v4x, broker, tmp / "pair", ours=ours, reactor=_reactor(), **kwargs)


async def run_start_order(v4x: V4xEnv, tmp: Path, certs: Any, ours: str, first: str, tls: bool) -> Outcome:
    """Start one side, let it wait for its peer, start the peer; stream events across the activation."""
    outcome = Outcome(f"{'our child -> 4.x parent' if ours == 'child' else '4.x child -> our parent'}, "
                      f"{first} first{', TLS' if tls else ''}")
    broker = _broker(tmp, certs)
    await broker.start()
    pair = make_pair(v4x, broker, tmp, ours, tls=tls)
    streamer = Streamer(pair.proactor)
    try:
        if first == "ours":
            pair.start_ours()
            if ours == "child":
                streamer.start()
            await pair.wait(lambda: pair.link.state.value == "awaiting_peer", 20, "ours awaiting_peer")
            await pair.pause(FIRST_WAITS_S)
            await pair.start_peer()
            if ours == "parent":
                pair.peer.generate(400, 1.0 / RATE_HZ)
        else:
            await pair.start_peer()
            if ours == "parent":
                pair.peer.generate(400, 1.0 / RATE_HZ)
            await pair.wait(lambda: pair.peer.state == "awaiting_peer", 20, "4.x awaiting_peer")
            await pair.pause(FIRST_WAITS_S)
            pair.start_ours()
            if ours == "child":
                streamer.start()
        await pair.wait_active(30)
        outcome.notes["active_after_s"] = round(time.monotonic() - outcome.started, 1)
        return await finish_stream(pair, ours, streamer, outcome)
    finally:
        streamer.stop()
        await pair.stop()
        await broker.stop()


async def finish_stream(pair: InteropPair, ours: str, streamer: Any, outcome: Outcome) -> Outcome:
    """End a streaming scenario: stream on past an ack timeout (ours) or let 4.x finish, then check delivery."""
    if ours == "child":
        # Keep streaming for longer than an ack timeout past the activation.
        await pair.pause(INTEROP_LINK_SETTINGS["ack_timeout_s"] + 1.0)
        streamer.stop()
        await pair.wait(lambda: streamer.all_durable, 10, "all durable")
        outcome.expected = list(streamer.ids)
    else:
        await pair.wait(lambda: bool(pair.peer.records.of("done")), 30, "4.x done generating")
        outcome.expected = pair.peer.records.made_ids()
    await wait_delivered(pair, outcome.expected)
    await settle(pair)
    return collect(pair, outcome)


async def start_4x_then_ours(pair: InteropPair) -> None:
    """Start the 4.x side, let the ack timeout of the ping it sends when subscribed expire (no peer acks it), then
    start ours: neither side then has a stale ping whose timeout could fire once the link is active."""
    await pair.start_peer()
    await pair.wait(lambda: bool(pair.peer.records.of("timeout")), 20, "4.x's first ping timed out")
    pair.start_ours()


async def run_broker_restart(v4x: V4xEnv, tmp: Path, certs: Any, ours: str) -> Outcome:
    """Both sides active and streaming; the broker stops for a second and starts again on the same ports."""
    outcome = Outcome(f"broker restart, {'our child -> 4.x parent' if ours == 'child' else '4.x child -> our parent'}")
    broker = _broker(tmp, certs)
    await broker.start()
    pair = make_pair(v4x, broker, tmp, ours)
    streamer = Streamer(pair.proactor)
    try:
        await start_4x_then_ours(pair)
        await pair.wait_active(30)
        if ours == "child":
            streamer.start()
        else:
            pair.peer.generate(400, 1.0 / RATE_HZ)
        await pair.pause(1.5)
        ours_before, theirs_before = len(pair.proactor.transitions), len(pair.peer.records.of("state"))
        pair.proactor.mark_outage()
        await broker.stop()

        def both_noticed() -> bool:
            return (any(old == "active" for _t, _n, old, *_ in pair.proactor.transitions[ours_before:])
                    and any(line["old"] == "active" for line in pair.peer.records.of("state")[theirs_before:]))

        await pair.wait(both_noticed, 10, "both sides noticed the broker stop")
        await pair.pause(1.0)
        await broker.start()
        restarted = time.monotonic()
        await pair.wait_active(30)
        outcome.notes["active_again_after_s"] = round(time.monotonic() - restarted, 1)
        return await finish_stream(pair, ours, streamer, outcome)
    finally:
        streamer.stop()
        await pair.stop()
        await broker.stop()


@attrs.define(eq=False)
class IdleRun:
    """An idle scenario running in the background: ``ready`` fires once it is active and idle, ``done`` with its
    :class:`Outcome`."""

    ready: Deferred
    done: Deferred


def start_idle(v4x: V4xEnv, tmp: Path, certs: Any, ours: str, heartbeat: str) -> IdleRun:
    """Start an idle scenario: active, a burst, ``IDLE_S`` of silence, another burst."""
    ready: Deferred = Deferred()
    overrides = dict(INTEROP_LINK_SETTINGS)
    if heartbeat == "hb65":
        # Our heartbeat beyond 4.x's 60 s: 4.x's own ping is the only traffic of the idle period.
        overrides.update(heartbeat_s=65.0, receive_deadline_s=100.0)
    else:
        overrides.update(heartbeat_s=10.0, receive_deadline_s=30.0)

    async def burst(pair: InteropPair, count: int) -> list[str]:
        if ours == "child":
            ids = [await pair.proactor.generate_event(Reading(src=pair.proactor.name, seq=i)) for i in range(count)]
        else:
            before = len(pair.peer.records.made_ids())
            pair.peer.generate(count, 0.0)
            await pair.wait(lambda: len(pair.peer.records.made_ids()) == before + count, 20, "4.x generated")
            ids = pair.peer.records.made_ids()[before:]
        await wait_delivered(pair, ids)
        return ids

    async def run() -> Outcome:
        outcome = Outcome(f"idle {IDLE_S:.0f} s ({heartbeat}), "
                          f"{'our child -> 4.x parent' if ours == 'child' else '4.x child -> our parent'}")
        broker = _broker(tmp, certs)
        pair: InteropPair | None = None
        try:
            await broker.start()
            pair = make_pair(v4x, broker, tmp, ours, link_overrides=overrides)
            await start_4x_then_ours(pair)
            await pair.wait_active(30)
            outcome.expected = await burst(pair, 50)
            await settle(pair)
            ready.callback(None)
            idle_from = time.time()
            ours_before = len(pair.proactor.transitions)
            theirs_before = len(pair.peer.records.of("state"))
            await pair.pause(IDLE_S)
            idle_to = time.time()
            outcome.notes["transitions_during_idle"] = {
                "ours": pair.proactor.transitions[ours_before:],
                "4.x": pair.peer.records.of("state")[theirs_before:],
            }
            outcome.notes["pings_from_4x_during_idle"] = len(
                [t for t, _ in pair.proactor.pings_received if idle_from <= t <= idle_to])
            outcome.notes["pings_by_4x_during_idle"] = len(
                [line for line in pair.peer.records.of("sent") if idle_from <= line["t"] <= idle_to])
            outcome.expected += await burst(pair, 50)
            await settle(pair)
            return collect(pair, outcome)
        finally:
            if not ready.called:
                ready.callback(None)
            if pair is not None:
                await pair.stop()
            await broker.stop()

    return IdleRun(ready, Deferred.fromCoroutine(run()))


IDLE_CASES = [("child", "defaults"), ("parent", "defaults"), ("child", "hb65"), ("parent", "hb65")]


@pytest.fixture(scope="module")
def idle_runs(request: pytest.FixtureRequest, v4x: V4xEnv, tmp_path_factory: pytest.TempPathFactory,
              test_certs: Any) -> Any:
    """The idle scenarios, started together (when any idle test is selected) and left running in the background."""
    wanted = {item.callspec.params.get("case") for item in request.session.items
              if item.module is request.module and item.originalname == "test_idle" and hasattr(item, "callspec")}
    runs = {case: start_idle(v4x, tmp_path_factory.mktemp(f"idle-{case[0]}-{case[1]}"), test_certs, *case)
            for case in IDLE_CASES if case in wanted}
    # Let their start-up (4.x processes importing) pass before the other scenarios begin.
    pytest_twisted.blockon(DeferredList([r.ready for r in runs.values()], consumeErrors=True))
    yield runs
    pytest_twisted.blockon(DeferredList([r.done for r in runs.values()], consumeErrors=True))


@pytest.fixture(autouse=True)
def _idle_first(idle_runs: Any) -> None:
    """Every test of the module makes the idle scenarios start first, so their idle period overlaps the others."""


# --- tests -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["ours", "4x"])
@pytest_twisted.ensureDeferred
async def test_our_child_to_4x_parent(v4x: V4xEnv, tmp_path: Path, test_certs: Any, first: str) -> None:
    """Our child and a 4.x parent, either started first (4.x first over mutual TLS): every event once at 4.x."""
    check(await run_start_order(v4x, tmp_path, test_certs, "child", first, tls=first == "4x"))


@pytest.mark.parametrize("first", ["ours", "4x"])
@pytest_twisted.ensureDeferred
async def test_4x_child_to_our_parent(v4x: V4xEnv, tmp_path: Path, test_certs: Any, first: str) -> None:
    """A 4.x child and our parent, either started first (4.x first over mutual TLS): every event once at ours."""
    check(await run_start_order(v4x, tmp_path, test_certs, "parent", first, tls=first == "4x"))


@pytest.mark.parametrize("ours", ["child", "parent"])
@pytest_twisted.ensureDeferred
async def test_broker_restart_mid_stream(v4x: V4xEnv, tmp_path: Path, test_certs: Any, ours: str) -> None:
    """The broker stops for a second while events stream: both links come back, nothing is lost, and a 4.x parent
    gets twice only events whose ack the outage took."""
    check(await run_broker_restart(v4x, tmp_path, test_certs, ours))


@pytest.mark.parametrize("case", IDLE_CASES, ids=[f"{o}-{h}" for o, h in IDLE_CASES])
@pytest_twisted.ensureDeferred
async def test_idle(idle_runs: Any, case: tuple[str, str]) -> None:
    """An idle link longer than 4.x's 60 s ping interval stays active on both sides and loses nothing afterwards."""
    outcome = await idle_runs[case].done
    check(outcome)
    changes = outcome.notes["transitions_during_idle"]
    assert changes == {"ours": [], "4.x": []}, f"a link changed state while idle\n{outcome.describe}"
    if case[1] == "hb65":
        assert outcome.notes["pings_from_4x_during_idle"] >= 1, f"4.x never pinged while idle\n{outcome.describe}"
    else:
        # Our heartbeat pings every 10 s and 4.x's acks count as sending: 4.x never goes 60 s without sending.
        assert outcome.notes["pings_by_4x_during_idle"] == 0, outcome.describe
