"""The status page's HTML and ``/status.json`` over real HTTP (the browser test is test_web_status_browser.py)."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import pytest_twisted
import treq

from gwproactor.web.server import make_site
from gwproactor.web.status import status_page


class _Stub:
    name = "d1.page"
    links: ClassVar[dict[str, Any]] = {}

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "links": {"up": {"state": "awaiting_peer", "peer": "d1", "in_flight": 2, "rtt": {"last": 0.01, "p50": 0.02},
                              "recent_transitions": [[1.0, "start", "connecting"], [2.0, "broker_connected", "awaiting_peer"]]}},
            "outbox": {"queued": 5, "in_flight": 2, "sent": 9, "acked": 7, "resent": 0, "parked": 0},
            "store": {"pending": 7, "pending_bytes": 700, "oldest_age_s": 3.5, "parked": 0},
            "counters": {"problems.warning": 3, "other": 1},
        }


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def test_page_has_no_external_assets() -> None:
    """The page loads nothing from elsewhere: no src/href attribute, no URL other than its own status.json."""
    page = status_page("d1.page").decode("utf-8")
    assert not re.search(r"\b(src|href)\s*=", page)
    assert re.findall(r"https?://", page) == []
    assert 'fetch("status.json"' in page and "setTimeout(poll, POLL_MS)" in page
    assert "innerHTML" not in page


def test_name_is_escaped_in_the_page() -> None:
    """The proactor's name is HTML-escaped where the server writes it into the page."""
    page = status_page("<b>&x</b>").decode("utf-8")
    assert "<b>&x</b>" not in page and "&lt;b&gt;&amp;x&lt;/b&gt;" in page


@pytest_twisted.ensureDeferred
async def test_page_and_status_json_over_http() -> None:
    """GET / and /status serve the page (with a CSP allowing only itself); /status.json is the page's view."""
    port = _reactor().listenTCP(0, make_site(_Stub()), interface="127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}"
    try:
        for path in ("/", "/status"):
            response = await treq.get(base + path, persistent=False)
            body = await treq.content(response)
            assert response.code == 200 and b"<h1>d1.page</h1>" in body
            assert response.headers.getRawHeaders(b"content-type") == [b"text/html; charset=utf-8"]
            assert b"default-src 'none'" in response.headers.getRawHeaders(b"content-security-policy")[0]
        response = await treq.get(base + "/status.json", persistent=False)
        view = json.loads(await treq.content(response))
        assert view["links"][0]["name"] == "up" and view["links"][0]["state"] == "awaiting_peer"
        assert view["links"][0]["in_flight"] == 2 and view["links"][0]["rtt_p50_s"] == 0.02
        assert [r["state"] for r in view["recent"]] == ["awaiting_peer", "connecting"]
        assert view["store"] == {"pending": 7, "pending_bytes": 700, "oldest_age_s": 3.5, "parked": 0}
        assert view["outbox"]["queued"] == 5 and view["problems"] == {"warning": 3}
    finally:
        await port.stopListening()
