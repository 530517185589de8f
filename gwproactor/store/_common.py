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
    write: Callable[[int, bytes], int] = os.write
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


class BoundedStore:
    """Mixin: the size bound of a store and its full policy.

    The host class provides ``_max_bytes``, ``_full_policy``, ``_pending_bytes``, ``_dropped``,
    ``_rejected``, ``_on_problem`` and ``_drop_oldest() -> int`` (forget the oldest pending event,
    return its size).
    """

    __slots__ = ()

    def _rejects(self, size: int) -> bool:
        """True if the full policy would reject a record of ``size`` bytes now (changes nothing)."""
        limit = self._max_bytes
        return (limit is not None and self._pending_bytes + size > limit
                and (self._full_policy == "reject_new" or size > limit))

    def _make_room(self, event_id: str, size: int) -> bool:
        """Apply the full policy so that a record of ``size`` bytes fits; False means reject it."""
        limit = self._max_bytes
        if limit is None or self._pending_bytes + size <= limit:
            return True
        if self._full_policy == "reject_new" or size > limit:
            self._rejected += 1
            report_problem(
                self._on_problem,
                "event store full: rejected a new event",
                f"rejected event {event_id} ({size} bytes): {self._pending_bytes} of {limit} bytes pending, "
                f"policy {self._full_policy}; rejected so far: {self._rejected}, dropped so far: {self._dropped}",
            )
            return False
        count = 0
        freed = 0
        while self._pending_bytes + size > limit:
            freed += self._drop_oldest()
            count += 1
        self._dropped += count
        report_problem(
            self._on_problem,
            f"event store full: dropped {count} oldest events",
            f"dropped {count} oldest pending events ({freed} bytes) to store event {event_id} ({size} bytes) "
            f"within {limit} bytes, policy drop_oldest; dropped so far: {self._dropped}, "
            f"rejected so far: {self._rejected}",
        )
        return True
