"""Log levels by category (the 4.x ``gridworks.proactor.dbg`` categories), changeable at run time, and the
runner's log output formats (text with millisecond timestamps, or one JSON object per line).

Categories map to twisted.logger namespaces; a
:class:`~twisted.logger.LogLevelFilterPredicate` in front of the log observers
applies them.  The runner installs one; an embedding application can pass its own.
"""

from __future__ import annotations

import datetime
from typing import IO, Any, Mapping

import attrs
from twisted.logger import (
    FileLogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsJSON,
    formatEvent,
    formatEventAsClassicLogText,
)

__all__ = [
    "CATEGORY_NAMESPACES",
    "LOG_FORMATS",
    "LogLevels",
    "format_time_ms",
    "json_log_observer",
    "level_from_name",
    "level_from_python",
    "log_observer",
    "text_log_observer",
]

#: The ``--log-format`` choices of ``gwproactor run``.
LOG_FORMATS = ("text", "json")


def format_time_ms(when: float | None) -> str:
    """``2026-12-01T21:13:54.123+0000``: local time with milliseconds and the UTC offset (``-`` for None)."""
    if when is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(when).astimezone()
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}{moment:%z}"


def text_log_observer(stream: IO[Any]) -> FileLogObserver:
    """Twisted's classic text lines (``<time> [<namespace>#<level>] <text>``) with millisecond timestamps."""
    return FileLogObserver(stream, lambda event: formatEventAsClassicLogText(event, formatTime=format_time_ms))


def _as_json_line(event: LogEvent) -> str:
    extra: dict[str, Any] = {"log_text": formatEvent(event)}
    failure = event.get("log_failure")
    if failure is not None:
        try:
            extra["log_traceback"] = failure.getTraceback()
        except Exception:  # pragma: no cover - a broken failure object must not lose the event
            extra["log_traceback"] = repr(failure)
    return eventAsJSON({**event, **extra}) + "\n"


def json_log_observer(stream: IO[Any]) -> FileLogObserver:
    """One JSON object per line: :func:`twisted.logger.eventAsJSON` of the event (its structured fields,
    ``log_namespace``, ``log_level``, ``log_format``, ``log_time`` ...) plus ``log_text`` (the formatted
    message) and, for a failure, ``log_traceback``.  No record separator: every line parses on its own, and
    :func:`twisted.logger.eventsFromJSONLogFile` reads the file back."""
    return FileLogObserver(stream, _as_json_line)


def log_observer(log_format: str, stream: IO[Any]) -> FileLogObserver:
    """The observer for ``log_format`` (one of :data:`LOG_FORMATS`) writing to ``stream``."""
    if log_format == "json":
        return json_log_observer(stream)
    if log_format == "text":
        return text_log_observer(stream)
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}; got {log_format!r}")

#: Which twisted.logger namespaces each category covers (namespaces are hierarchical).
CATEGORY_NAMESPACES: Mapping[str, tuple[str, ...]] = {
    "lifecycle": ("gwproactor.proactor", "gwproactor.runner", "gwproactor.store"),
    "comm_event": ("gwproactor.link", "gwproactor.links"),
    "message_summary": ("gwproactor.message_summary",),
    "io_loop": ("gwproactor.mqtt", "gwproactor.router", "gwproactor.outbox"),
}


def level_from_python(level: int) -> LogLevel:
    """The twisted level for a Python ``logging`` number (10 debug, 20 info, 30 warn, 40 error, 50 critical)."""
    if level <= 10:
        return LogLevel.debug
    if level <= 20:
        return LogLevel.info
    if level <= 30:
        return LogLevel.warn
    if level <= 40:
        return LogLevel.error
    return LogLevel.critical


def level_from_name(name: str) -> LogLevel:
    """``"DEBUG"`` / ``"info"`` / ``"WARNING"`` ... to a twisted level."""
    name = name.strip().lower()
    return LogLevel.levelWithName({"warning": "warn", "fatal": "critical"}.get(name, name))


@attrs.define(eq=False)
class LogLevels:
    """Per-category log levels applied to a :class:`~twisted.logger.LogLevelFilterPredicate`.

    :param predicate: the predicate in front of the log observers.
    :param default: level for every other namespace.
    """

    predicate: LogLevelFilterPredicate = attrs.field(factory=lambda: LogLevelFilterPredicate(LogLevel.info))
    levels: dict[str, LogLevel] = attrs.field(factory=dict)

    def set_category(self, category: str, level: LogLevel) -> None:
        """Set the level of ``category`` (an unknown category names a namespace directly)."""
        self.levels[category] = level
        for namespace in CATEGORY_NAMESPACES.get(category, (category,)):
            self.predicate.setLogLevelForNamespace(namespace, level)

    def set_default(self, level: LogLevel) -> None:
        """Set the level of every namespace not set by a category."""
        self.predicate.defaultLogLevel = level

    def apply_python_levels(self, levels: Mapping[str, int]) -> dict[str, str]:
        """Apply a 4.x DBG ``Levels`` mapping (Python numbers; negative means "leave as is"); return what changed."""
        changed = {}
        for category, number in levels.items():
            if not isinstance(number, int) or isinstance(number, bool) or number < 0:
                continue
            level = level_from_python(number)
            self.set_category(category, level)
            changed[category] = level.name
        return changed

    def enabled(self, category: str, level: LogLevel) -> bool:
        """Would an event of ``level`` in ``category`` pass?"""
        namespaces = CATEGORY_NAMESPACES.get(category, (category,))
        threshold = self.predicate.logLevelForNamespace(namespaces[0])
        return level >= threshold

    def snapshot(self) -> dict[str, Any]:
        """The levels in force, by category, as names."""
        return {category: self.predicate.logLevelForNamespace(ns[0]).name for category, ns in CATEGORY_NAMESPACES.items()}
