"""Log levels by category (the 4.x ``gridworks.proactor.dbg`` categories), changeable at run time.

Categories map to twisted.logger namespaces; a
:class:`~twisted.logger.LogLevelFilterPredicate` in front of the log observers
applies them.  The runner installs one; an embedding application can pass its own.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs
from twisted.logger import LogLevel, LogLevelFilterPredicate

__all__ = ["CATEGORY_NAMESPACES", "LogLevels", "level_from_python", "level_from_name"]

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
