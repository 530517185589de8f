"""The derived example runs gwproactor_test's live suites against its own proactor classes."""

from pathlib import Path
from typing import Any

from gwproactor.config import ProactorSettings
from gwproactor_test import suites
from gwproactor_test.dummies import test_settings

from . import app


def home_settings(broker_endpoint: str, store_dir: Path | str, **link_overrides: Any) -> ProactorSettings:
    """Settings of the home SCADA in tests (quick live-test timings)."""
    return test_settings(app.HOME_LONG_NAME, app.HOME_SHORT_NAME, broker_endpoint, store_dir,
                         {"cloud": (app.CLOUD_LONG_NAME, app.CLOUD_SHORT_NAME, True)}, link_overrides)


def cloud_settings(broker_endpoint: str, store_dir: Path | str, **link_overrides: Any) -> ProactorSettings:
    """Settings of the cloud node in tests."""
    return test_settings(app.CLOUD_LONG_NAME, app.CLOUD_SHORT_NAME, broker_endpoint, store_dir,
                         {"home": (app.HOME_LONG_NAME, app.HOME_SHORT_NAME, False)}, link_overrides)


class TestHomeAndCloud(suites.PairSuites):
    """Every pair suite against HomeScada (child) and CloudNode (parent)."""

    child_cls, parent_cls = app.HomeScada, app.CloudNode
    child_settings, parent_settings = staticmethod(home_settings), staticmethod(cloud_settings)
    child_link, parent_link = "cloud", "home"

    async def test_cloud_archives_home_reports(self) -> None:
        """A report of the home SCADA lands in the cloud's archive once."""
        pair = await self.active_pair()
        event_id = await pair.child.report("boiler pressure low")
        await self.wait_handled(pair.parent, [event_id])
        assert pair.parent.archive[app.HOME_LONG_NAME].count(event_id) == 1
