"""What a proactor does when a hosted actor fails: report it, restart it within the policy, else shut down."""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure

from gwproactor.actors.router import Router
from gwproactor.actors.supervision import RestartPolicy, Supervisor


class ActorFailures:
    """The failures of one proactor's actors.

    :param proactor: the owner (its public API: ``report_problem``, ``actor_failed``, ``request_shutdown``,
        ``counters``, ``log``).
    :param router: the proactor's :class:`~gwproactor.actors.router.Router`; a failed delivery comes here, and
        the supervisor holds (and later redelivers) the messages of a restarting actor.
    :param policy: the :class:`~gwproactor.actors.supervision.RestartPolicy` (default: ``RestartPolicy()``).
    """

    def __init__(self, proactor: Any, router: Router, policy: RestartPolicy | None) -> None:
        self._proactor = proactor
        self.supervisor = Supervisor(
            clock=proactor.reactor,
            policy=policy if policy is not None else RestartPolicy(),
            on_escalate=self._escalated,
            on_restart=self._restarted,
            redeliver=router.send,
        )
        router.supervisor = self.supervisor
        router.on_failure = self.delivery_failed

    def delivery_failed(self, actor: Any, message: Any, failure: Failure) -> None:
        """A delivery to ``actor`` failed: report it and let the supervisor decide (``actor_failed``)."""
        p = self._proactor
        p.report_problem(
            "error",
            f"actor {actor.name} failed on a {message.header.message_type} message",
            failure.getTraceback(detail="brief")[-2000:],
        )
        p.actor_failed(actor, failure)

    def _restarted(self, actor: Any, count: int, failure: Failure) -> None:
        p = self._proactor
        p.counters["actor_restarts"] += 1
        p.report_problem("warning", f"actor {actor.name} restarted ({count} in the policy period)", failure.getErrorMessage())

    def _escalated(self, actor: Any, reason: str) -> None:
        p = self._proactor
        p.counters["actor_escalations"] += 1
        p.log.critical("actor {actor} keeps failing: {reason}; shutting down", actor=actor.name, reason=reason)
        p.report_problem("error", f"actor {actor.name} keeps failing; shutting down", reason)
        p.request_shutdown(f"actor {actor.name} keeps failing: {reason}", exit_code=1)
