"""Shared by the file and memory event stores: settings checks, the size bound with its full policies, problems."""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs
from twisted.logger import Logger

from gwproactor.errors import StoreError, StoreLocked, StoreWriteError  # noqa: F401  (re-exported)

SYNC_POLICIES = ("always", "group", "never")
FULL_POLICIES = ("drop_oldest", "reject_new")
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_WINDOW = 10_000

ProblemCallback = Callable[[str, str], object]


@attrs.frozen
class SysCalls:
    """The calls through which a file store and its received-id window open, write and duplicate descriptors.

    A private seam (``FileEventStore.open(_calls=...)``): tests inject failures (EMFILE from ``open``
    and ``dup``, ENOSPC or EIO from ``write``) without touching the process-wide :mod:`os` functions.
    """

    open: Callable[..., int] = os.open
    write: Callable[[int, bytes | memoryview], int] = os.write
    dup: Callable[[int], int] = os.dup

    def write_all(self, fd: int, data: bytes) -> None:
        """Write all of ``data`` (``write`` may write less than asked)."""
        view = memoryview(data)
        while view:
            view = view[self.write(fd, view):]


def undo_partial_write(fd: int, size: int) -> bool:
    """Cut a file back to ``size`` bytes after a failed write (part of a frame may be in it); True if done."""
    try:
        os.ftruncate(fd, size)
        return True
    except OSError:
        return False

_log = Logger(namespace="gwproactor.store")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def report_problem(on_problem: ProblemCallback | None, summary: str, details: str) -> None:
    """Log a store problem and hand it to ``on_problem``; an exception in the callback is logged, not raised."""
    _log.warn("{summary}: {details}", summary=summary, details=details)
    if on_problem is None:
        return
    try:
        on_problem(summary, details)
    except Exception:
        _log.failure("on_problem callback failed for {summary}", summary=summary)


class WriteErrors:
    """Counts and reports the failed OS calls of a file store (the ``write_errors`` counter).

    Shared by the store, its segment log and its group commit, so that each reports a failure the
    same way and the count covers all of them.

    :param on_problem: ``on_problem(summary, details)``, or None.
    """

    def __init__(self, on_problem: ProblemCallback | None) -> None:
        self._on_problem = on_problem
        self.count = 0
        """Failed OS calls reported so far."""

    def report(self, what: str, path: str, e: BaseException) -> StoreWriteError:
        """Count and report a failed OS call; return the StoreWriteError for whatever it fails.

        The summary is constant per ``what`` (the proactor rate-limits problems by summary); the
        details and the message name the file and the error.
        """
        self.count += 1
        report_problem(self._on_problem, f"event store {what} failed", f"{path}: {e}")
        return StoreWriteError(f"event store {what} failed on {path}: {e}", errno=getattr(e, "errno", None),
                               path=path)


class SizeBound:
    """The size bound of a store and its full policy, with the ``dropped`` and ``rejected`` counters.

    The store owns the pending events and their byte count; it passes ``pending_bytes`` in and, for
    ``drop_oldest``, a ``drop_oldest() -> int`` that forgets the oldest pending event and returns its
    size.

    :param max_bytes: bound on pending bytes, or None for no bound.
    :param full_policy: ``drop_oldest`` or ``reject_new``.
    :param on_problem: ``on_problem(summary, details)`` is called each time the policy applies.
    """

    __slots__ = ("max_bytes", "full_policy", "_on_problem", "dropped", "rejected")

    def __init__(self, max_bytes: int | None, full_policy: str, on_problem: ProblemCallback | None) -> None:
        self.max_bytes = max_bytes
        self.full_policy = full_policy
        self._on_problem = on_problem
        self.dropped = 0
        self.rejected = 0

    def rejects(self, size: int, pending_bytes: int) -> bool:
        """True if the full policy would reject a record of ``size`` bytes now (changes nothing)."""
        limit = self.max_bytes
        return (limit is not None and pending_bytes + size > limit
                and (self.full_policy == "reject_new" or size > limit))

    def make_room(self, event_id: str, size: int, pending_bytes: int, drop_oldest: Callable[[], int]) -> bool:
        """Apply the full policy so that a record of ``size`` bytes fits; False means reject it."""
        limit = self.max_bytes
        if limit is None or pending_bytes + size <= limit:
            return True
        if self.full_policy == "reject_new" or size > limit:
            self.rejected += 1
            report_problem(
                self._on_problem,
                "event store full: rejected a new event",
                f"rejected event {event_id} ({size} bytes): {pending_bytes} of {limit} bytes pending, "
                f"policy {self.full_policy}; rejected so far: {self.rejected}, dropped so far: {self.dropped}",
            )
            return False
        count = 0
        freed = 0
        while pending_bytes + size > limit:
            dropped = drop_oldest()
            freed += dropped
            pending_bytes -= dropped
            count += 1
        self.dropped += count
        report_problem(
            self._on_problem,
            f"event store full: dropped {count} oldest events",
            f"dropped {count} oldest pending events ({freed} bytes) to store event {event_id} ({size} bytes) "
            f"within {limit} bytes, policy drop_oldest; dropped so far: {self.dropped}, "
            f"rejected so far: {self.rejected}",
        )
        return True
