"""A small derived application: a home SCADA (child) reporting events to a cloud node (parent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

from gwproactor.config import ProactorSettings
from gwproactor.message import ProblemEvent
from gwproactor.proactor import Proactor
from gwproactor_test.dummies import test_settings

HOME_LONG_NAME, HOME_SHORT_NAME = "d1.isone.ct.newhaven.home1.scada", "h"
CLOUD_LONG_NAME, CLOUD_SHORT_NAME = "d1.isone.ct.newhaven.home1", "c"


class HomeScada(Proactor):
    """The home SCADA: its upstream link is ``cloud``; it counts how often the link came up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cloud_ups = 0

    def link_activated(self, link: Any) -> None:
        """Count the activations of the cloud link."""
        self.cloud_ups += 1

    def report(self, summary: str) -> Deferred:
        """Record a warning for the cloud; fires once it is durable."""
        return self.generate_event(ProblemEvent(src=self.name, problem_type="warning", summary=summary, details=""))


class CloudNode(Proactor):
    """The cloud node: archives every event it accepts, by source, through link ``home``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.archive: dict[str, list[str]] = {}

    def handle_event(self, link: Any, event: Any) -> Any:
        """Archive ``event``."""
        self.archive.setdefault(event.src, []).append(event.message_id)
        return super().handle_event(link, event)


def home_settings(broker_endpoint: str, store_dir: Path | str, **link_overrides: Any) -> ProactorSettings:
    """Settings of the home SCADA in tests."""
    return test_settings(HOME_LONG_NAME, HOME_SHORT_NAME, broker_endpoint, store_dir,
                         {"cloud": (CLOUD_LONG_NAME, CLOUD_SHORT_NAME, True)}, link_overrides)


def cloud_settings(broker_endpoint: str, store_dir: Path | str, **link_overrides: Any) -> ProactorSettings:
    """Settings of the cloud node in tests."""
    return test_settings(CLOUD_LONG_NAME, CLOUD_SHORT_NAME, broker_endpoint, store_dir,
                         {"home": (HOME_LONG_NAME, HOME_SHORT_NAME, False)}, link_overrides)
