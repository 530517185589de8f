"""Validation of MQTT topic names and topic filters (MQTT 3.1.1 section 4.7): pure functions, no I/O.

:mod:`gwproactor.mqtt._paho` re-exports them next to :class:`~gwproactor.mqtt._paho.TopicFilters`.
"""

from __future__ import annotations

__all__ = ["topic_filter_error", "topic_name_error"]


def topic_filter_error(topic_filter: str) -> str | None:
    """Return why ``topic_filter`` is not a valid MQTT subscription filter, or None if it is."""
    if not isinstance(topic_filter, str) or not topic_filter:
        return "a topic filter must be a non-empty str"
    if "\x00" in topic_filter:
        return "a topic filter must not contain NUL"
    if len(topic_filter.encode("utf-8")) > 65535:
        return "a topic filter must be at most 65535 bytes"
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


def topic_name_error(topic: str) -> str | None:
    """Return why ``topic`` is not a valid topic to publish to, or None if it is."""
    if not isinstance(topic, str) or not topic:
        return "a topic must be a non-empty str"
    if "+" in topic or "#" in topic:
        return "a topic to publish to must not contain wildcards ('+', '#')"
    if "\x00" in topic:
        return "a topic must not contain NUL"
    if len(topic.encode("utf-8")) > 65535:
        return "a topic must be at most 65535 bytes"
    return None
