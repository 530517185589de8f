"""Fixtures shared by this project's own tests (derived projects get theirs from the gwproactor_test plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.logger import globalLogPublisher


@pytest.fixture
def log_events() -> Iterator[list[dict]]:
    """Every event logged on the global log publisher during the test."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)
