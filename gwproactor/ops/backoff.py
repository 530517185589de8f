"""Retry delays: exponential backoff with a cap, and full jitter (pure, no I/O).

The one backoff of gwproactor: broker reconnects (:class:`~gwproactor.mqtt.BrokerConnection`, through
:meth:`Backoff.retry_policy`, Twisted's ``ClientService`` retry policy), REST poller failures
(:class:`~gwproactor.web.poller.RestPoller`) and actor restarts (:class:`~gwproactor.actors.supervision.RestartPolicy`).
The jittered :meth:`Backoff.delay` draws from a ``random.Random`` the caller passes (seed it in tests);
:meth:`Backoff.ceiling` is the deterministic delay, for callers that want no jitter.
"""

from __future__ import annotations

import random
from typing import Callable

import attrs

__all__ = ["Backoff"]


def _positive(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ValueError(f"Backoff.{attribute.name} must be > 0, got {value!r}")


@attrs.define(frozen=True)
class Backoff:
    """Exponential backoff with a cap and (optional) full jitter.

    The ceiling for attempt ``n`` (0-based) is ``min(cap, initial * factor ** n)``;
    :meth:`delay` draws uniformly from ``[0, ceiling]`` ("full jitter"), so many
    clients that lost the same broker do not reconnect in lock-step.  The caller
    counts attempts and resets its count to 0 after a success (for a broker
    connection: an accepting CONNACK).

    :param initial: ceiling of the first retry, seconds.
    :param factor: growth of the ceiling per failed attempt (>= 1).
    :param cap: largest ceiling, seconds.
    """

    initial: float = attrs.field(default=0.5, validator=_positive)
    factor: float = attrs.field(default=2.0, validator=_positive)
    cap: float = attrs.field(default=60.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.factor < 1:
            raise ValueError(f"Backoff.factor must be >= 1, got {self.factor!r}")
        if self.cap < self.initial:
            raise ValueError(f"Backoff.cap ({self.cap!r}) must be >= initial ({self.initial!r})")

    def ceiling(self, attempt: int) -> float:
        """Return the largest delay for ``attempt`` (0-based), never above :attr:`cap`."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt!r}")
        ceiling = self.initial
        if self.factor == 1:
            return min(ceiling, self.cap)
        # Multiply step by step so huge attempt counts never overflow a float power.
        for _ in range(attempt):
            ceiling *= self.factor
            if ceiling >= self.cap:
                return self.cap
        return min(ceiling, self.cap)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Return the delay before retry ``attempt`` (0-based): uniform in ``[0, ceiling(attempt)]``."""
        return rng.uniform(0.0, self.ceiling(attempt))

    def retry_policy(self, rng: random.Random) -> Callable[[int], float]:
        """Return a retry policy for :class:`twisted.application.internet.ClientService`.

        ``ClientService`` calls it with the number of failed attempts in a row (1 for the first retry);
        the policy returns :meth:`delay` of the 0-based attempt, drawn from ``rng``.
        """

        def policy(failed_attempts: int) -> float:
            return self.delay(max(0, failed_attempts - 1), rng)

        return policy
