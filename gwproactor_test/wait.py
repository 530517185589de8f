"""Waiting in live tests: poll a condition with a deadline, and ready-made waits whose failures describe the proactors.

Everything returns a Deferred, so it works under pytest-twisted (``await``) and under trial.
"""

from __future__ import annotations

import json
from typing import Any, Callable, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

__all__ = [
    "WaitTimeout",
    "await_for",
    "describe_proactors",
    "is_quiescent",
    "wait_link_active",
    "wait_link_state",
    "wait_quiescent",
]


class WaitTimeout(AssertionError):
    """A condition did not become true within its deadline; the message describes what was observed."""


def _default_reactor() -> IReactorTime:
    from twisted.internet import reactor

    return cast(IReactorTime, reactor)


def _describe(describe: Callable[[], str] | str) -> str:
    if callable(describe):
        try:
            return describe()
        except Exception as e:  # a broken describe() must not hide the timeout
            return f"(describe() failed: {e!r})"
    return describe


def await_for(
    condition: Callable[[], bool],
    timeout: float,
    describe: Callable[[], str] | str = "",
    *,
    reactor: IReactorTime | None = None,
    interval: float = 0.01,
) -> Deferred[None]:
    """Poll ``condition()`` every ``interval`` seconds until it is true.

    The Deferred fires with ``None`` as soon as the condition holds (at once if
    it holds now) and fails with :class:`WaitTimeout` after ``timeout`` seconds,
    with ``describe()`` (or the string ``describe``) in the message.  An
    exception raised by ``condition`` fails the Deferred with that exception.
    Cancelling the Deferred stops the polling.

    :param reactor: provides ``seconds`` / ``callLater`` (the global reactor when ``None``).
    """
    if reactor is None:
        reactor = _default_reactor()
    try:
        if condition():
            return succeed(None)
    except Exception:
        from twisted.internet.defer import fail

        return fail()
    clock = reactor
    deadline = clock.seconds() + timeout
    pending: list[IDelayedCall] = []

    def cancel(d: Deferred[None]) -> None:
        for call in pending:
            if call.active():
                call.cancel()

    d: Deferred[None] = Deferred(cancel)

    def poll() -> None:
        pending.clear()
        try:
            done = condition()
        except Exception:
            d.errback(Failure())
            return
        if done:
            d.callback(None)
        elif clock.seconds() >= deadline:
            what = getattr(condition, "__name__", "condition")
            text = _describe(describe)
            d.errback(WaitTimeout(f"{what} not true within {timeout} s" + (f"\n{text}" if text else "")))
        else:
            pending.append(clock.callLater(interval, poll))

    pending.append(clock.callLater(interval, poll))
    return d


# --- describing proactors ---------------------------------------------------------------------


def _safe(f: Callable[[], Any], default: Any = None) -> Any:
    try:
        return f()
    except Exception:
        return default


def _pending_count(proactor: Any) -> int | None:
    return _safe(lambda: len(proactor.store.pending_ids()))


def _accepting_count(proactor: Any) -> int:
    """Events the proactor's inbox is still accepting (0 for an object without an inbox)."""
    inbox = getattr(proactor, "inbox", None)
    return 0 if inbox is None else len(inbox.accepting)


def describe_proactor(proactor: Any) -> dict[str, Any]:
    """A JSON-ready summary of one proactor for failure messages.

    Link states, in flight, last down reason, recent transitions, comm events
    and key link stats; store pending; outbox window; router queue; and the
    instrumented counters when the proactor has them.
    """
    links = {}
    for name, link in getattr(proactor, "links", {}).items():
        summary = _safe(link.summary, {})
        stats = summary.get("stats", {})
        links[name] = {
            "state": summary.get("state"),
            "in_flight": summary.get("in_flight"),
            "last_down_reason": summary.get("last_down_reason"),
            "recent_transitions": [f"{t:.3f} {inp} -> {new}" for t, inp, new in summary.get("recent_transitions", [])][-8:],
            "comm_events": stats.get("comm_events"),
            "messages_in": stats.get("messages_in"),
            "messages_out": stats.get("messages_out"),
            "acks": summary.get("acks"),
            "held": _safe(getattr(link.broker, "held_counts", dict), {}),
        }
    outbox = getattr(proactor, "outbox", None)
    out: dict[str, Any] = {
        "name": getattr(proactor, "name", repr(proactor)),
        "running": bool(getattr(proactor, "running", False)),
        "links": links,
        "store_pending": _pending_count(proactor),
        "outbox": _safe(outbox.summary) if outbox is not None else None,
        "router_queued": _safe(lambda: proactor.router.queued),
        "accepting": _accepting_count(proactor),
        "counters": dict(getattr(proactor, "counters", {})),
    }
    counts = getattr(proactor, "counts", None)
    if counts is not None:
        out["instrumented"] = _safe(counts.as_dict)
    return out


def describe_proactors(*proactors: Any) -> str:
    """A readable summary of each proactor (see :func:`describe_proactor`), one JSON block each."""
    return "\n".join(
        f"--- {getattr(p, 'name', p)!s}:\n{json.dumps(describe_proactor(p), indent=1, default=str)}" for p in proactors
    )


# --- ready-made waits ----------------------------------------------------------------------------


def wait_link_state(proactor: Any, link_name: str, state: str | Any, timeout: float = 10.0, *, reactor: Any = None,
                    others: tuple[Any, ...] = ()) -> Deferred:
    """Wait until link ``link_name`` of ``proactor`` is in ``state`` (a LinkState or its value).

    On timeout the message describes ``proactor`` and ``others``.
    """
    wanted = getattr(state, "value", state)
    link = proactor.get_link(link_name)

    def link_in_state() -> bool:
        return link.state.value == wanted

    link_in_state.__name__ = f"{proactor.name} link {link_name} {wanted}"
    return await_for(link_in_state, timeout, lambda: describe_proactors(proactor, *others), reactor=reactor)


def wait_link_active(proactor: Any, link_name: str, timeout: float = 10.0, *, reactor: Any = None,
                     others: tuple[Any, ...] = ()) -> Deferred:
    """Wait until link ``link_name`` of ``proactor`` is active."""
    return wait_link_state(proactor, link_name, "active", timeout, reactor=reactor, others=others)


def is_quiescent(*proactors: Any) -> bool:
    """True when no proactor has an event pending in its store, in its outbox, unacked on a link,
    being accepted, or a message queued in its router."""
    for p in proactors:
        if _pending_count(p) not in (0, None):
            return False
        outbox = getattr(p, "outbox", None)
        if outbox is not None and (outbox.in_flight or outbox.queued):
            return False
        if any(link.acks.in_flight for link in p.links.values()):
            return False
        if any(getattr(link.broker, "held_outgoing", None) or getattr(link.broker, "held_acks", None)
               for link in p.links.values()):
            return False
        if _accepting_count(p):
            return False
        if p.router.queued:
            return False
    return True


def wait_quiescent(*proactors: Any, timeout: float = 10.0, reactor: Any = None) -> Deferred:
    """Wait until :func:`is_quiescent` holds for every proactor given.

    Pings may be in flight for a moment at any time; the poll simply catches a moment without one.
    """

    def quiescent() -> bool:
        return is_quiescent(*proactors)

    return await_for(quiescent, timeout, lambda: describe_proactors(*proactors), reactor=reactor)
