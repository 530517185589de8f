"""Collecting errors and warnings into one problem event, and rate-limiting problem reports."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Literal

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from gwproactor.message import ProblemEvent

#: Longest ``Details`` text :meth:`Problems.problem_event` produces (characters).
MAX_DETAILS_CHARS = 4000
#: How many entries :class:`Problems` keeps; later ones are only counted.
MAX_ENTRIES = 50


def describe(problem: BaseException | Failure | str) -> str:
    """One line naming ``problem``: ``"Type: message"`` for exceptions and failures, the text for a str."""
    if isinstance(problem, Failure):
        kind = problem.type.__name__ if problem.type is not None else "Failure"
        return f"{kind}: {problem.getErrorMessage()}"
    if isinstance(problem, BaseException):
        text = str(problem)
        return f"{type(problem).__name__}: {text}" if text else type(problem).__name__
    return str(problem)


@attrs.define(eq=False)
class Problems:
    """Errors and warnings collected while doing one thing, turned into ONE problem event.

    ::

        problems = Problems()
        for frame in frames:
            try:
                handle(frame)
            except DecodeError as e:
                problems.add_error(e, summary="bad frame")
        if problems:
            proactor.generate_event(problems.problem_event(proactor.name, "frames rejected"))

    :param max_entries: entries kept; more are counted in :attr:`dropped`.
    :param max_details_chars: bound of the ``Details`` text.
    """

    max_entries: int = MAX_ENTRIES
    max_details_chars: int = MAX_DETAILS_CHARS
    errors: list[str] = attrs.field(factory=list, init=False)
    warnings: list[str] = attrs.field(factory=list, init=False)
    #: Entries not kept because :attr:`max_entries` was reached.
    dropped: int = attrs.field(default=0, init=False)

    def _add(self, bucket: list[str], problem: BaseException | Failure | str, summary: str | None) -> Problems:
        if len(self.errors) + len(self.warnings) >= self.max_entries:
            self.dropped += 1
            return self
        text = describe(problem)
        bucket.append(f"{summary}: {text}" if summary else text)
        return self

    def add_error(self, problem: BaseException | Failure | str, summary: str | None = None) -> Problems:
        """Record an error (an exception, a Failure or a text); returns ``self`` for chaining."""
        return self._add(self.errors, problem, summary)

    def add_warning(self, problem: BaseException | Failure | str, summary: str | None = None) -> Problems:
        """Record a warning (an exception, a Failure or a text); returns ``self`` for chaining."""
        return self._add(self.warnings, problem, summary)

    def extend(self, other: Problems) -> Problems:
        """Add the entries of ``other`` (errors stay errors); returns ``self``."""
        for text in other.errors:
            self.add_error(text)
        for text in other.warnings:
            self.add_warning(text)
        self.dropped += other.dropped
        return self

    def __bool__(self) -> bool:
        return bool(self.errors or self.warnings or self.dropped)

    def __len__(self) -> int:
        return len(self.errors) + len(self.warnings) + self.dropped

    @property
    def problem_type(self) -> Literal["error", "warning"] | None:
        """``"error"`` if any error was added, else ``"warning"`` if any warning, else None."""
        if self.errors:
            return "error"
        if self.warnings or self.dropped:
            return "warning"
        return None

    def details(self) -> str:
        """The entries, one per line (errors first), cut to :attr:`max_details_chars`."""
        lines = [f"error: {text}" for text in self.errors] + [f"warning: {text}" for text in self.warnings]
        if self.dropped:
            lines.append(f"({self.dropped} more not kept)")
        text = "\n".join(lines)
        if len(text) > self.max_details_chars:
            marker = f"\n... ({len(text) - self.max_details_chars} more characters cut)"
            text = text[: max(0, self.max_details_chars - len(marker))] + marker
        return text

    def __str__(self) -> str:
        return self.details()

    def problem_event(self, src: str, summary: str, **kwargs: Any) -> ProblemEvent:
        """ONE :class:`~gwproactor.message.ProblemEvent` describing every entry.

        ``problem_type`` is ``"error"`` if any error was added, else
        ``"warning"``.  ``kwargs`` go to the event (``message_id``,
        ``time_created_ms``).  Raises ValueError when nothing was added.
        """
        problem_type = self.problem_type
        if problem_type is None:
            raise ValueError("no problems were added: check bool(problems) before calling problem_event")
        return ProblemEvent(src=src, problem_type=problem_type, summary=summary, details=self.details(), **kwargs)


@attrs.define
class _Window:
    start: float
    allowed: int = 0
    suppressed: int = 0


@attrs.define(eq=False)
class RateLimiter:
    """At most ``max_per_period`` reports per key per ``period_s`` (fixed windows); the rest are counted.

    ::

        if limiter.allow(("bad_frame", link_name)):
            extra = limiter.take_suppressed(("bad_frame", link_name))
            report(..., details=f"{details} ({extra} similar suppressed)")

    :param clock: provides ``seconds``.
    :param max_keys: bound on remembered keys; the oldest windows are forgotten first.
    """

    clock: IReactorTime
    max_per_period: int = 5
    period_s: float = 60.0
    max_keys: int = 1000
    #: Reports allowed / suppressed, over all keys, since creation.
    allowed_total: int = attrs.field(default=0, init=False)
    suppressed_total: int = attrs.field(default=0, init=False)
    _windows: dict[Hashable, _Window] = attrs.field(factory=dict, init=False)
    _pending_suppressed: dict[Hashable, int] = attrs.field(factory=dict, init=False)

    def allow(self, key: Hashable) -> bool:
        """True if a report for ``key`` may go out now (and count it); False counts it as suppressed."""
        now = self.clock.seconds()
        window = self._windows.get(key)
        if window is None or now - window.start >= self.period_s:
            if window is None and len(self._windows) >= self.max_keys:
                self._forget_oldest()
            window = self._windows[key] = _Window(start=now)
        if window.allowed < self.max_per_period:
            window.allowed += 1
            self.allowed_total += 1
            return True
        window.suppressed += 1
        self.suppressed_total += 1
        self._pending_suppressed[key] = self._pending_suppressed.get(key, 0) + 1
        return False

    def take_suppressed(self, key: Hashable) -> int:
        """How many reports for ``key`` were suppressed since the last call (and reset that count)."""
        return self._pending_suppressed.pop(key, 0)

    def suppressed(self, key: Hashable) -> int:
        """Reports for ``key`` suppressed and not yet taken with :meth:`take_suppressed`."""
        return self._pending_suppressed.get(key, 0)

    def _forget_oldest(self) -> None:
        oldest = min(self._windows, key=lambda k: self._windows[k].start)
        del self._windows[oldest]

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the counters."""
        return {
            "allowed": self.allowed_total,
            "suppressed": self.suppressed_total,
            "keys": len(self._windows),
            "max_per_period": self.max_per_period,
            "period_s": self.period_s,
        }
