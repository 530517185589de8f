"""The README's derived-application example is the file docs/examples/home_scada.py, and it works."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from gwproactor.config import LinkSettings, ProactorSettings
from gwproactor.proactor import Proactor
from gwproactor.store import MemoryEventStore
from gwproactor_test.fakes import FakeBroker

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "home_scada.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("home_scada", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["home_scada"] = module
    spec.loader.exec_module(module)
    return module


def test_readme_shows_the_example_file() -> None:
    """The Python block in README.rst is exactly docs/examples/home_scada.py."""
    readme = (ROOT / "README.rst").read_text()
    match = re.search(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", readme)
    assert match, "README.rst has no python code block"
    block = "\n".join(line[4:] for line in match.group(1).rstrip().splitlines())
    assert block.strip() == EXAMPLE.read_text().strip()


def test_example_readings_reach_the_parent() -> None:
    """HomeScada's thermometer readings are delivered to a parent once the link is active."""
    module = load_example()
    clock = Clock()
    hub = FakeBroker(clock)
    seen: list[Any] = []

    class Parent(Proactor):
        def handle_event(self, link: Any, event: Any) -> Any:
            seen.append(event)

    child = module.HomeScada(
        ProactorSettings(
            long_name="d1.home.scada",
            short_name="s",
            links={"parent": LinkSettings(peer_long_name="d1.home", peer_short_name="a", upstream=True)},
        ),
        reactor=clock,
        store=MemoryEventStore(clock=clock),
        brokers={"default": hub.client("child")},
    )
    parent = Parent(
        ProactorSettings(
            long_name="d1.home", short_name="a", links={"scada": LinkSettings(peer_long_name="d1.home.scada", peer_short_name="s")}
        ),
        reactor=clock,
        store=MemoryEventStore(clock=clock),
        brokers={"default": hub.client("parent")},
    )
    child.startService()
    parent.startService()
    hub.connect_all()
    for _ in range(3):
        clock.advance(10)
        for _ in range(10):
            clock.advance(0)
    readings = [e for e in seen if isinstance(e, module.TemperatureReading)]
    assert len(readings) >= 3 and readings[0].celsius == 21.5
    child.stopService()
    parent.stopService()
