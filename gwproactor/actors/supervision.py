"""Supervision of actors: restart a failed actor with backoff, and escalate when it keeps failing."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import attrs
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gwproactor.ops.backoff import Backoff

#: Outcomes of :meth:`Supervisor.failed` (the value its Deferred fires with).
RESTARTED = "restarted"
ESCALATED = "escalated"
IGNORED = "ignored"


@attrs.define(frozen=True)
class RestartPolicy:
    """How often a failing actor is restarted before the failure is escalated.

    An actor may be restarted ``max_restarts`` times within any ``period_s``
    window; the next failure in that window is escalated.  Before the n-th
    restart in the window the supervisor waits
    ``min(backoff_cap_s, backoff_initial_s * 2 ** (n - 1))``.  A ``stopService``
    that does not finish within ``stop_timeout_s`` is escalated too.
    """

    max_restarts: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    period_s: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    backoff_initial_s: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    backoff_cap_s: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    stop_timeout_s: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))

    def backoff(self, n: int) -> float:
        """Seconds to wait before the ``n``-th restart (``n`` ≥ 1) within the window."""
        initial = min(self.backoff_initial_s, self.backoff_cap_s)
        if not initial > 0:
            return 0.0  # a zero initial delay or cap: restart at once (Backoff itself wants delays > 0)
        return Backoff(initial=initial, factor=2.0, cap=self.backoff_cap_s).ceiling(max(0, n - 1))


@attrs.define
class _ActorRecord:
    recent: deque = attrs.field(factory=deque)
    restarts: int = 0
    failures: int = 0
    escalated: bool = False
    restarting: bool = False
    call: Any = None
    wait: Any = None
    held: deque = attrs.field(factory=deque)
    held_dropped: int = 0


@attrs.define(eq=False)
class Supervisor:
    """Restarts failed actors under a :class:`RestartPolicy`; escalates past it.

    The proactor calls :meth:`failed` when an actor's ``receive`` fails (the
    router's ``on_failure``).  Within the policy the actor is restarted:
    ``stopService`` → wait for its Deferred → wait the backoff → ``startService``,
    then ``on_restart(actor, count, failure)``.  Past the policy (or when
    stopping or starting it fails) ``on_escalate(actor, reason)`` is called once
    for that actor; the proactor then shuts down with a non-zero exit code.

    Messages for a restarting actor: the router may consult :meth:`hold`; while
    the actor restarts, held messages are queued here (up to ``max_held`` per
    actor; more are dropped and counted) and handed, in order, to ``redeliver``
    once it has started again (dropped if the failure is escalated).  A router
    that does not consult :meth:`hold` keeps delivering to the actor object
    while it restarts.

    :param clock: provides ``callLater`` and ``seconds``.
    """

    clock: Any
    policy: RestartPolicy = attrs.field(factory=RestartPolicy)
    on_escalate: Callable[[Any, str], None] = lambda actor, reason: None
    on_restart: Callable[[Any, int, Failure], None] | None = None
    redeliver: Callable[[Any], None] | None = None
    max_held: int = 10_000
    _records: dict[str, _ActorRecord] = attrs.field(factory=dict, init=False)
    _stopped: bool = attrs.field(default=False, init=False)
    log: Logger = attrs.field(factory=lambda: Logger(namespace="gwproactor.supervision"), init=False, repr=False)

    def _record(self, name: str) -> _ActorRecord:
        record = self._records.get(name)
        if record is None:
            record = self._records[name] = _ActorRecord()
        return record

    # --- queries ---------------------------------------------------------------

    def is_restarting(self, name: str) -> bool:
        """True while the actor ``name`` is being stopped, waited for, or started again."""
        record = self._records.get(name)
        return record is not None and record.restarting

    def restarts(self, name: str) -> int:
        """Total restarts of the actor ``name``."""
        record = self._records.get(name)
        return 0 if record is None else record.restarts

    def stats(self) -> dict[str, Any]:
        """JSON-ready counters per actor."""
        return {
            name: {
                "failures": r.failures,
                "restarts": r.restarts,
                "restarting": r.restarting,
                "escalated": r.escalated,
                "held": len(r.held),
                "held_dropped": r.held_dropped,
            }
            for name, r in self._records.items()
        }

    # --- messages during a restart -------------------------------------------

    def hold(self, message: Any) -> bool:
        """Keep ``message`` if its destination is restarting (returns True); False means deliver it now."""
        record = self._records.get(message.header.dst)
        if record is None or not record.restarting:
            return False
        if len(record.held) >= self.max_held:
            record.held_dropped += 1
        else:
            record.held.append(message)
        return True

    # --- failures -------------------------------------------------------------

    def failed(self, actor: Any, failure: Failure) -> Deferred:
        """Handle a failure of ``actor``: restart it within the policy, else escalate.

        Returns a Deferred that fires with :data:`RESTARTED` once the actor has
        started again, :data:`ESCALATED`, or :data:`IGNORED` (a failure during a
        restart, after escalation, or after :meth:`stop`).
        """
        record = self._record(actor.name)
        record.failures += 1
        if self._stopped or record.escalated or record.restarting:
            return _fired(IGNORED)
        now = self.clock.seconds()
        while record.recent and now - record.recent[0] >= self.policy.period_s:
            record.recent.popleft()
        if len(record.recent) >= self.policy.max_restarts:
            reason = (
                f"actor {actor.name!r} failed again after {len(record.recent)} restarts within "
                f"{self.policy.period_s:g} s: {failure.getErrorMessage()}"
            )
            return _fired(self._escalate(actor, record, reason))
        record.recent.append(now)
        record.restarting = True
        return Deferred.fromCoroutine(self._restart(actor, record, len(record.recent), failure))

    async def _restart(self, actor: Any, record: _ActorRecord, n: int, failure: Failure) -> str:
        delay = self.policy.backoff(n)
        self.log.warn(
            "restarting actor {actor} in {delay} s (restart {n} of {max} within {period} s) after: {error}",
            actor=actor.name,
            delay=delay,
            n=n,
            max=self.policy.max_restarts,
            period=self.policy.period_s,
            error=failure.getErrorMessage(),
        )
        try:
            stopping = maybeDeferred(actor.stopService)
            stopping.addTimeout(self.policy.stop_timeout_s, self.clock)
            await stopping
        except Exception as e:
            return self._escalate(actor, record, f"stopping actor {actor.name!r} for a restart failed: {_text(e)}")
        if self._stopped:
            return self._abandon(record)
        wait: Deferred = Deferred(lambda d: record.call.cancel() if record.call and record.call.active() else None)
        record.wait = wait
        record.call = self.clock.callLater(delay, wait.callback, None)
        try:
            await wait
        except CancelledError:
            return self._abandon(record)
        finally:
            record.call = record.wait = None
        if self._stopped:
            return self._abandon(record)
        try:
            actor.startService()
        except Exception as e:
            record.restarting = False
            self.log.failure("actor {actor} failed to start again", actor=actor.name)
            return await self.failed(actor, Failure(e))
        record.restarting = False
        record.restarts += 1
        if self.on_restart is not None:
            try:
                self.on_restart(actor, record.restarts, failure)
            except Exception:
                self.log.failure("on_restart callback failed for actor {actor}", actor=actor.name)
        self._release(record)
        self.log.info("actor {actor} restarted ({count} restarts so far)", actor=actor.name, count=record.restarts)
        return RESTARTED

    def _release(self, record: _ActorRecord) -> None:
        held, record.held = record.held, deque()
        if self.redeliver is None:
            record.held_dropped += len(held)
            return
        for message in held:
            try:
                self.redeliver(message)
            except Exception:
                record.held_dropped += 1
                self.log.failure("redelivering a held message failed")

    def _abandon(self, record: _ActorRecord) -> str:
        record.restarting = False
        record.held_dropped += len(record.held)
        record.held.clear()
        return IGNORED

    def _escalate(self, actor: Any, record: _ActorRecord, reason: str) -> str:
        record.escalated = True
        record.restarting = False
        record.held_dropped += len(record.held)
        record.held.clear()
        self.log.error("escalating failure of actor {actor}: {reason}", actor=actor.name, reason=reason)
        try:
            self.on_escalate(actor, reason)
        except Exception:
            self.log.failure("on_escalate callback failed for actor {actor}", actor=actor.name)
        return ESCALATED

    def stop(self) -> None:
        """Stop supervising (the proactor is shutting down): cancel pending restarts, ignore later failures."""
        self._stopped = True
        for record in self._records.values():
            if record.wait is not None and not record.wait.called:
                record.wait.cancel()


def _fired(value: str) -> Deferred:
    d: Deferred = Deferred()
    d.callback(value)
    return d


def _text(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
