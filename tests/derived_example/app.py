"""A small derived application: a home SCADA (child) reporting events to a cloud node (parent).

Application code only: it imports the library, never a test helper (its test settings are in the test module).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from gwproactor.message import ProblemEvent
from gwproactor.proactor import Proactor

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
