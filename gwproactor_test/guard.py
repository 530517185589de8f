"""A delivery guard for test sessions: no outbox may send an event twice without a cause.

The outbox counts ``resent_without_cause`` (an event published again with no ack timeout, failed
publish or link loss since its previous send): in a correct library it stays 0.  The pytest plugin
checks every outbox built during a test and fails the test otherwise, unless the test is marked
``gwp_allow_resent_without_cause`` (a test of the counter itself).
"""

from __future__ import annotations

import weakref

from gwproactor.links.outbox import Outbox

__all__ = ["offenders", "start_watching", "take_outboxes"]

_outboxes: weakref.WeakSet[Outbox] = weakref.WeakSet()
_installed = False


def start_watching() -> None:
    """Remember every :class:`~gwproactor.links.outbox.Outbox` built from now on (idempotent)."""
    global _installed
    if _installed:
        return
    original = Outbox.__attrs_post_init__

    def post_init(self: Outbox) -> None:
        original(self)
        _outboxes.add(self)

    Outbox.__attrs_post_init__ = post_init  # type: ignore[method-assign]
    _installed = True


def take_outboxes() -> list[Outbox]:
    """The outboxes built since the last call (and still alive); forgets them."""
    out = list(_outboxes)
    _outboxes.clear()
    return out


def offenders(outboxes: list[Outbox]) -> list[str]:
    """One line per outbox whose ``resent_without_cause`` is not 0."""
    return [
        f"{getattr(o.link, 'link_name', o.link)}: {o.stats.resent_without_cause} events sent twice without cause "
        f"({o.summary()})"
        for o in outboxes
        if o.stats.resent_without_cause
    ]
