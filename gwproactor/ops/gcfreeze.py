"""Keeping full garbage collections short in a long-running proactor process.

CPython's full (generation 2) collection walks every container object the
process holds: modules, classes, functions, settings, actors, Twisted's
machinery.  In a proactor process that is tens of thousands of objects that
live as long as the process, and a full collection stalls the reactor for it:
13 to 17 ms at a time in the delivery benchmark on the 2-vCPU development VM,
a few times a minute under steady traffic, which is the whole tail of the idle
round trip.

:func:`freeze_after_start` collects once and then moves every object that
exists into the permanent generation (:func:`gc.freeze`), so later collections
only walk what was created after start.  Objects that die by reference count
are still freed; what is lost is the collection of *reference cycles* among
frozen objects, so freeze once, after start, in a process you own:
``gwproactor run`` and ``twist gwproactor`` do it (``--no-gc-freeze`` turns it
off); an application that embeds a proactor in its own service calls it once
its services have started, if it wants it.  Test suites should not: objects of
earlier tests would be frozen too.
"""

from __future__ import annotations

import gc

from twisted.logger import Logger

__all__ = ["freeze_after_start"]

log = Logger(namespace="gwproactor.ops")


def freeze_after_start() -> dict[str, int]:
    """Collect garbage, then freeze every object that exists now (see the module docstring).

    :return: ``{"collected": unreachable objects found, "frozen": objects in the permanent generation}``.
    """
    collected = gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("gc: froze {frozen} objects after start ({collected} unreachable collected first)",
             frozen=frozen, collected=collected)
    return {"collected": collected, "frozen": frozen}
