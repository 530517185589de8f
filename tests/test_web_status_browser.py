"""The status page in a real headless browser (Debian's chromium + chromedriver, driven by selenium).

Selenium's calls block, so each runs in a thread (``deferToThread``) while the reactor keeps serving the
page and its polls.  Missing chromium/chromedriver skips these tests, or fails them when
``GWPROACTOR_REQUIRE_BROWSER=1`` (``.ci/run`` sets it after installing the browser).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import pytest
import pytest_twisted
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from gwproactor.config import LinkSettings
from gwproactor.demo.apps import Reading
from gwproactor.proactor import Proactor
from tests.test_live_links import proactor
from gwproactor.web.server import WebService, make_site
from gwproactor_test.wait import await_for

REQUIRE_BROWSER_ENV = "GWPROACTOR_REQUIRE_BROWSER"
#: When set, the live test also saves its screenshot of the page there (docs/_static/status-page.png).
SCREENSHOT_ENV = "GWPROACTOR_STATUS_SCREENSHOT"
PATIENCE_S = 15.0
FAST = dict(ack_timeout_s=1.0, heartbeat_s=0.5, receive_deadline_s=2.0)


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium under chromedriver for the module (skipped, or failed in CI, when missing)."""
    chromium = _find("chromium", "chromium-browser", "/usr/lib/chromium/chromium")
    driver_path = _find("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if chromium is None or driver_path is None:
        reason = "no headless browser: install chromium and chromium-driver (apt) and selenium (the test extra)"
        if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_BROWSER_ENV}=1 requires it")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1100,760", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(PATIENCE_S)
    driver.set_script_timeout(PATIENCE_S)
    try:
        yield driver
    finally:
        driver.quit()


async def in_browser(fn: Callable[[], Any]) -> Any:
    """Run the blocking selenium call ``fn`` in a thread; the reactor goes on serving meanwhile."""
    return await deferToThread(fn)


async def dom_until(driver: Any, script: str, condition: Callable[[Any], bool], what: str) -> Any:
    """Evaluate ``script`` in the page every 0.1 s until ``condition(result)``; fail after PATIENCE_S."""
    reactor = _reactor()
    deadline = reactor.seconds() + PATIENCE_S
    while True:
        value = await in_browser(lambda: driver.execute_script(script))
        if condition(value):
            return value
        if reactor.seconds() > deadline:
            raise AssertionError(f"the page did not show {what} within {PATIENCE_S} s; last: {value!r}")
        await deferLater(reactor, 0.1, lambda: None)


def link_row(name: str) -> str:
    """A script returning the cells of link ``name``'s row (or null)."""
    return (
        "const tr = document.querySelector('#links tbody tr[data-link=\"%s\"]');"
        "return tr ? Array.from(tr.cells, c => c.textContent) : null;" % name
    )


def _proactor(broker: Any, tmp: Path, long: str, short: str, links: dict[str, LinkSettings]) -> Proactor:
    return proactor(Proactor, broker, tmp, long, short, links)


@pytest.mark.live
@pytest_twisted.ensureDeferred
async def test_status_page_follows_the_link_without_a_reload(browser: Any, fresh_broker: Any, tmp_path: Path) -> None:
    """The page shows the link active; once the broker is stopped it shows it not active, in the same page load."""
    parent = _proactor(fresh_broker, tmp_path, "d1.status", "sp", {"child": LinkSettings(peer_long_name="d1.status.c", peer_short_name="sc", **FAST)})
    child = _proactor(
        fresh_broker, tmp_path, "d1.status.c", "sc",
        {"parent": LinkSettings(peer_long_name="d1.status", peer_short_name="sp", upstream=True, **FAST)},
    )
    web = WebService(parent, "tcp:0:interface=127.0.0.1")
    parent.startService()
    child.startService()
    web.startService()
    try:
        port = await web.when_listening()
        url = f"http://127.0.0.1:{port.getHost().port}/status"
        await await_for(lambda: parent.link_states() == {"child": "active"}, PATIENCE_S, describe=lambda: str(parent.link_states()))
        for seq in range(3):
            await child.generate_event(Reading(src="d1.status.c", seq=seq, value=20.5 + seq))

        await in_browser(lambda: browser.get(url))
        await in_browser(lambda: browser.execute_script("window.loadedOnce = true;"))  # gone if the page reloads
        row = await dom_until(browser, link_row("child"), lambda r: r is not None and r[2] == "active", "the link active")
        assert row[0] == "child" and row[1] == "d1.status.c"
        await dom_until(
            browser, "return document.querySelector('#recent tbody').textContent;", lambda t: "active" in t,
            "the link's state changes",
        )
        screenshot = await in_browser(browser.get_screenshot_as_png)
        assert screenshot.startswith(b"\x89PNG")
        (tmp_path / "status-page.png").write_bytes(screenshot)
        if os.environ.get(SCREENSHOT_ENV):
            Path(os.environ[SCREENSHOT_ENV]).write_bytes(screenshot)

        await fresh_broker.stop()
        row = await dom_until(
            browser, link_row("child"), lambda r: r is not None and r[2] != "active", "the link not active"
        )
        assert row[2] in ("connecting", "awaiting_setup_and_peer", "awaiting_peer", "awaiting_setup"), row
        assert await in_browser(lambda: browser.execute_script("return window.loadedOnce === true;")), "the page reloaded"
    finally:
        await web.stopService()
        await child.stopService()
        await parent.stopService()


class _Hostile:
    """A proactor whose name and link text carry markup, as text from peers could."""

    name = "<script>window.pwned = 'name'</script>d1.hostile"
    links: ClassVar[dict[str, Any]] = {}

    def stats(self) -> dict[str, Any]:
        link = '<img src=x onerror="window.pwned = \'link\'">'
        return {
            "name": self.name,
            "links": {link: {"state": "active", "peer": "<b>peer</b>", "recent_transitions": [[0.0, "<i>in</i>", "active"]]}},
            "outbox": None,
            "store": {"pending": 0},
            "counters": {"problems.<u>kind</u>": 1},
        }


@pytest_twisted.ensureDeferred
async def test_status_page_shows_markup_as_text(browser: Any) -> None:
    """Markup in the proactor's name, a link's name, its peer or a problem kind is shown as text, never run."""
    port = _reactor().listenTCP(0, make_site(_Hostile()), interface="127.0.0.1")
    try:
        await in_browser(lambda: browser.get(f"http://127.0.0.1:{port.getHost().port}/"))
        await dom_until(browser, "return document.body.dataset.polls || '0';", lambda n: int(n) >= 1, "one poll")
        seen = await in_browser(lambda: browser.execute_script(
            "return {pwned: window.pwned || null, imgs: document.querySelectorAll('img, b, i, u').length,"
            " h1: document.querySelector('h1').textContent, text: document.body.innerText};"
        ))
        assert seen["pwned"] is None and seen["imgs"] == 0, seen
        assert seen["h1"] == _Hostile.name
        for text in ('<img src=x onerror="window.pwned = \'link\'">', "<b>peer</b>", "<i>in</i>", "<u>kind</u>"):
            assert text in seen["text"], text
    finally:
        await port.stopListening()
