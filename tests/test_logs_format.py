"""Tests of the runner's log formats: text lines with millisecond timestamps, and one JSON object per line."""

from __future__ import annotations

import io
import json
import re

from twisted.logger import Logger, eventsFromJSONLogFile

from gwproactor.logs import format_time_ms, json_log_observer, text_log_observer


def test_format_time_ms_has_milliseconds() -> None:
    """Timestamps carry milliseconds and the UTC offset; None is '-'."""
    text = format_time_ms(1_700_000_000.1234)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.123[+-]\d{4}", text), text
    assert format_time_ms(None) == "-"


def test_log_observers_text_and_json() -> None:
    """The text observer writes millisecond lines; the JSON one one object per line with fields and the text."""
    text, data = io.StringIO(), io.StringIO()
    log = Logger(namespace="gwproactor.test", observer=lambda e: (text_log_observer(text)(e), json_log_observer(data)(e)))
    log.info("link {link_name}: {old} -> {new}", link_name="parent", old="connecting", new="active")
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        log.failure("it broke for {who}", who="pump")
    assert re.match(r"\S+\.\d{3}\S* \[gwproactor.test#info\] link parent: connecting -> active\n", text.getvalue())
    lines = data.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert (first["link_name"], first["old"], first["new"]) == ("parent", "connecting", "active")
    assert first["log_text"] == "link parent: connecting -> active" and first["log_level"]["name"] == "info"
    assert second["who"] == "pump" and "ValueError: line one" in second["log_traceback"]
    assert [e["log_text"] for e in eventsFromJSONLogFile(io.StringIO(data.getvalue()))] == [
        "link parent: connecting -> active", "it broke for pump"]
