"""Monotonic reactor time: timers that a wall-clock step (NTP at boot, ``date -s``) neither fires nor freezes.

Twisted's reactors (the default one and ``twisted.internet.asyncioreactor``) keep every
``DelayedCall`` at an absolute ``reactor.seconds()`` time, and ``seconds()`` is ``time.time()``:
``callLater(delay)`` stores ``seconds() + delay``; ``timeout()`` (how long the reactor may sleep,
which the asyncio reactor also turns into its ``loop.call_at``) is ``first.time - seconds()``; and
``runUntilCurrent`` runs the calls whose time is ``<= seconds()``.  When the wall clock steps
forward every pending call is due at once (ack timeouts, receive deadlines, keepalives); when it
steps back they all wait for the length of the step (a dead peer stays "active").

:func:`use_monotonic_time` replaces a reactor's ``seconds`` with :func:`time.monotonic` plus a
constant: the wall time at the moment of the switch minus the monotonic time then.  From then on
``seconds()`` only moves forward at the rate of the monotonic clock, whatever the wall clock does.
:class:`~gwproactor.proactor.Proactor` calls it when it starts, and the runners (``gwproactor
run``, ``twist gwproactor``) before the reactor runs; set ``ProactorSettings.monotonic_time`` to
False to keep the wall clock (see ``docs/embedding.rst``).

Timestamps never come from ``seconds()``: after a step it is off by the step (after an NTP boot
step, by months).  ``TimeCreatedMs``, the event store's record times and the HTTP access log use
:func:`time.time`.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.base import ReactorBase
from twisted.python.runtime import seconds as _wall_seconds

__all__ = ["MonotonicSeconds", "is_monotonic", "use_monotonic_time"]


class MonotonicSeconds:
    """A ``seconds()`` callable: :func:`time.monotonic` plus a fixed offset.

    :param offset: added to every reading; :func:`use_monotonic_time` uses the wall time minus the
        monotonic time at the switch, so the first readings match the wall clock's.
    """

    __slots__ = ("offset",)

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def __repr__(self) -> str:
        return f"<MonotonicSeconds offset={self.offset:.6f}>"


def is_monotonic(reactor: Any) -> bool:
    """True if ``reactor`` is a Twisted reactor whose ``seconds`` is a :class:`MonotonicSeconds`."""
    return isinstance(reactor, ReactorBase) and isinstance(reactor.seconds, MonotonicSeconds)


def use_monotonic_time(reactor: Any) -> bool:
    """Make ``reactor.seconds()`` monotonic; every call already scheduled stays on time.

    Returns True when the reactor's timers run on the monotonic clock after the call (also when
    they already did: calling it again changes nothing).  Returns False, and changes nothing, for
    anything else: a :class:`twisted.internet.task.Clock` or another test clock (their time is the
    test's), an object that is not a Twisted reactor, or a reactor whose ``seconds`` someone has
    already replaced with another function.

    The new clock reads the same as the wall clock at the moment of the switch, so nothing
    scheduled or measured before it moves: neither the pending ``DelayedCall`` times (nor a
    ``LoopingCall``'s start time, nor a deadline an application computed from ``seconds()``), nor
    the time that a ``runUntilCurrent`` in progress compares them with (the switch may happen
    inside a timed call: a proactor started from a timer, or a test).  Each pending call (in the
    reactor's heap and among the new calls not yet in it) is given the new clock for its own
    ``reset()`` / ``delay()``.

    Call it from the reactor thread, or before the reactor runs.
    """
    if not isinstance(reactor, ReactorBase):
        return False
    if isinstance(reactor.seconds, MonotonicSeconds):
        return True
    if reactor.seconds is not _wall_seconds:
        return False
    seconds = MonotonicSeconds(time.time() - time.monotonic())
    for call in (*reactor._pendingTimedCalls, *reactor._newTimedCalls):
        call.seconds = seconds
    # An instance attribute: callLater binds it into each new DelayedCall (seconds=self.seconds),
    # and timeout() / runUntilCurrent read it.  The class attribute (time.time) is untouched.
    reactor.seconds = seconds
    return True
