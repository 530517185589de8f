"""The derived example runs gwproactor_test's live suites against its own proactor classes."""

from gwproactor_test import suites

from . import app


class TestHomeAndCloud(suites.PairSuites):
    """Every pair suite against HomeScada (child) and CloudNode (parent)."""

    child_cls, parent_cls = app.HomeScada, app.CloudNode
    child_settings, parent_settings = app.home_settings, app.cloud_settings
    child_link, parent_link = "cloud", "home"

    async def test_cloud_archives_home_reports(self) -> None:
        """A report of the home SCADA lands in the cloud's archive once."""
        pair = await self.active_pair()
        event_id = await pair.child.report("boiler pressure low")
        await self.wait_handled(pair.parent, [event_id])
        assert pair.parent.archive[app.HOME_LONG_NAME].count(event_id) == 1
