"""Monotonic reactor time: timers that a wall-clock step (NTP at boot, ``date -s``) neither fires nor freezes.

Twisted's reactors (the default one and ``twisted.internet.asyncioreactor``) keep every
``DelayedCall`` at an absolute ``reactor.seconds()`` time, and ``seconds()`` is ``time.time()``:
``callLater(delay)`` stores ``seconds() + delay``; ``timeout()`` (how long the reactor may sleep,
which the asyncio reactor also turns into its ``loop.call_at``) is ``first.time - seconds()``; and
``runUntilCurrent`` runs the calls whose time is ``<= seconds()``.  When the wall clock steps
forward every pending call is due at once (ack timeouts, receive deadlines, keepalives); when it
steps back they all wait for the length of the step (a dead peer stays "active").

:func:`use_monotonic_time` makes a reactor's ``seconds()`` :func:`time.monotonic` and moves the
calls already scheduled onto that clock.  :class:`~gwproactor.proactor.Proactor` calls it when it
starts, and the runners (``gwproactor run``, ``twist gwproactor``) before the reactor runs; set
``ProactorSettings.monotonic_time`` to False to keep the wall clock (see ``docs/embedding.rst``).
Timestamps (``TimeCreatedMs``, the event store's record times) never come from ``seconds()``:
they are ``time.time()``.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.base import ReactorBase
from twisted.internet.task import LoopingCall
from twisted.python.runtime import seconds as _wall_seconds

__all__ = ["is_monotonic", "use_monotonic_time"]


def is_monotonic(reactor: Any) -> bool:
    """True if ``reactor`` is a real reactor whose ``seconds()`` is :func:`time.monotonic`."""
    return isinstance(reactor, ReactorBase) and reactor.seconds is time.monotonic


def use_monotonic_time(reactor: Any) -> bool:
    """Make ``reactor.seconds()`` :func:`time.monotonic`, keeping every call already scheduled on time.

    Returns True when the reactor's timers run on the monotonic clock after the call (also when
    they already did: calling it again changes nothing).  Returns False, and changes nothing, for
    anything else: a :class:`twisted.internet.task.Clock` or another test clock (their time is the
    test's), an object that is not a Twisted reactor, or a reactor whose ``seconds`` someone has
    already replaced with another function.

    Each pending ``DelayedCall`` (scheduled, and new ones not yet in the reactor's heap) keeps its
    remaining delay: its time moves by ``monotonic() - time()`` (the same shift for all, so their
    order is unchanged) and it reads the new clock for ``reset``/``delay``.  A
    :class:`~twisted.internet.task.LoopingCall` on this reactor whose next run is scheduled has its
    start time moved too, so its interval (and ``withCount``'s count) stays right.

    Call it from the reactor thread, or before the reactor runs.
    """
    if not isinstance(reactor, ReactorBase):
        return False
    if reactor.seconds is time.monotonic:
        return True
    if reactor.seconds is not _wall_seconds:
        return False
    wall = time.time()
    shift = time.monotonic() - wall
    loops = set()
    for call in (*reactor._pendingTimedCalls, *reactor._newTimedCalls):
        call.time += shift
        call.seconds = time.monotonic
        func = getattr(call, "func", None)  # a cancelled call has none
        if isinstance(func, LoopingCall) and func.clock is reactor:
            loops.add(func)
    for loop in loops:
        if loop.starttime is not None:
            loop.starttime += shift
        if loop._realLastTime is not None:
            loop._realLastTime += shift
    # An instance attribute: callLater binds it into each new DelayedCall (seconds=self.seconds),
    # and timeout() / runUntilCurrent read it.  The class attribute (time.time) is untouched.
    reactor.seconds = time.monotonic
    return True
