"""``GET /metrics``: a live proactor scraped over real HTTP, parsed with prometheus_client's own parser."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq

from gwproactor.config import LinkSettings
from gwproactor.demo.apps import Reading
from gwproactor.links.machine import LinkState
from gwproactor.ops.lag import ReactorLag
from gwproactor.proactor import Proactor
from tests.test_live_links import proactor
from gwproactor.web.metrics import MISSING_EXTRA
from gwproactor.web.server import WebService, make_site
from gwproactor_test.wait import await_for

parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client (the test extra) is not installed")

PARENT, CHILD = "d1.metrics", "d1.metrics.child"


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _proactor(broker: Any, tmp: Path, long: str, short: str, links: dict[str, LinkSettings]) -> Proactor:
    return proactor(Proactor, broker, tmp, long, short, links)


async def scrape(url: str, accept: bytes | None = None) -> tuple[int, bytes, bytes]:
    headers = {b"accept": [accept]} if accept else None
    response = await treq.get(url, headers=headers, persistent=False)
    body = await treq.content(response)
    return response.code, response.headers.getRawHeaders(b"content-type")[0], body


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition by (name, sorted labels)."""
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in parser.text_string_to_metric_families(text)}


@pytest.mark.live
@pytest_twisted.ensureDeferred
async def test_metrics_of_a_live_proactor_match_its_stats(private_broker: Any, tmp_path: Path) -> None:
    """A child that sent three events is scraped over HTTP: link state, RTT, outbox, store and events match stats()."""
    parent = _proactor(private_broker, tmp_path, PARENT, "mp", {"child": LinkSettings(peer_long_name=CHILD, peer_short_name="mc")})
    child = _proactor(
        private_broker, tmp_path, CHILD, "mc", {"parent": LinkSettings(peer_long_name=PARENT, peer_short_name="mp", upstream=True)}
    )
    lag = ReactorLag(_reactor(), interval_s=0.05)
    web = WebService(child, "tcp:0:interface=127.0.0.1", lag=lag)
    parent.startService()
    child.startService()
    web.startService()
    lag.start()
    try:
        port = await web.when_listening()
        url = f"http://127.0.0.1:{port.getHost().port}/metrics"
        await await_for(lambda: child.link_states() == {"parent": "active"}, 15, describe=lambda: str(child.link_states()))
        for seq in range(3):
            await child.generate_event(Reading(src=CHILD, seq=seq, value=1.5))
        await await_for(lambda: child.outbox.stats.acked >= 3 and lag.samples > 0, 15, describe=lambda: str(child.stats()["outbox"]))

        before = child.stats()
        code, content_type, body = await scrape(url)
        after = child.stats()
        assert code == 200 and content_type.startswith(b"text/plain; version=0.0.4"), (code, content_type)
        text = body.decode("utf-8")
        got = samples(text)
        kinds = families(text)

        for state in LinkState:  # one gauge per link and state, 1 for the current one
            assert got[("gwproactor_link_state", (("link", "parent"), ("state", state.value)))] == (
                1 if state is LinkState.active else 0
            )
        link = after["links"]["parent"]
        assert got[("gwproactor_link_transitions_total", (("link", "parent"),))] == link["stats"]["transitions"]
        assert kinds["gwproactor_link_ack_rtt_seconds"] == "summary"
        rtt_count = got[("gwproactor_link_ack_rtt_seconds_count", (("link", "parent"),))]
        assert before["links"]["parent"]["rtt"]["count"] <= rtt_count <= link["rtt"]["count"] and rtt_count >= 3
        assert got[("gwproactor_link_ack_rtt_seconds", (("link", "parent"), ("quantile", "0.5")))] > 0

        outbox = after["outbox"]
        for key in ("sent", "acked", "resent", "resent_without_cause", "parked"):
            assert got[(f"gwproactor_events_{key}_total", ())] == outbox[key], key
        assert got[("gwproactor_events_acked_total", ())] >= 3
        assert got[("gwproactor_events_generated_total", (("type_name", Reading.TYPE_NAME),))] == 3
        assert got[("gwproactor_link_duplicates_dropped_total", (("link", "parent"),))] == link["stats"]["duplicates_dropped"]

        store = after["store"]
        assert got[("gwproactor_store_pending_events", ())] == store["pending"]
        assert got[("gwproactor_store_pending_bytes", ())] == store["pending_bytes"]
        assert ("gwproactor_store_oldest_pending_age_seconds", ()) in got
        assert kinds["gwproactor_problems"] == "counter"
        assert kinds["gwproactor_reactor_lag_seconds"] == "histogram"
        assert got[("gwproactor_reactor_lag_seconds_count", ())] >= 1
        assert got[("gwproactor_http_connections_open", ())] >= 1

        # A scraper asking for OpenMetrics gets it (with the # EOF terminator).
        code, content_type, body = await scrape(url, b"application/openmetrics-text; version=1.0.0")
        assert code == 200 and content_type.startswith(b"application/openmetrics-text"), content_type
        assert body.rstrip().endswith(b"# EOF")
    finally:
        lag.stop()
        await web.stopService()
        await child.stopService()
        await parent.stopService()


class _Stub:
    name = "d1.stub"

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "links": {},
            "outbox": None,
            "store": {"pending": 0},
            "counters": {"problems.error": 2, "problems.warning": 1},
        }


@pytest_twisted.ensureDeferred
async def test_problems_are_counted_by_kind() -> None:
    """Problem counters become gwproactor_problems_total with one sample per kind."""
    port = _reactor().listenTCP(0, make_site(_Stub()), interface="127.0.0.1")
    try:
        code, _, body = await scrape(f"http://127.0.0.1:{port.getHost().port}/metrics")
        got = samples(body.decode("utf-8"))
        assert code == 200
        assert got[("gwproactor_problems_total", (("kind", "error"),))] == 2
        assert got[("gwproactor_problems_total", (("kind", "warning"),))] == 1
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_metrics_without_prometheus_client_is_a_json_501(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without prometheus_client installed, /metrics answers a JSON 501 naming the extra to install."""
    for name in [m for m in sys.modules if m == "prometheus_client" or m.startswith("prometheus_client.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import prometheus_client raises ImportError
    port = _reactor().listenTCP(0, make_site(_Stub()), interface="127.0.0.1")
    try:
        code, content_type, body = await scrape(f"http://127.0.0.1:{port.getHost().port}/metrics")
        assert (code, content_type) == (501, b"application/json; charset=utf-8")
        assert json.loads(body) == {"error": MISSING_EXTRA} and "gwproactor[metrics]" in MISSING_EXTRA
    finally:
        await port.stopListening()


def test_serving_the_site_does_not_import_prometheus_client() -> None:
    """prometheus_client is imported lazily: building a site (without a scrape) leaves it unimported."""
    import subprocess

    code = (
        "import sys\n"
        "from gwproactor.web.server import make_site\n"
        "class P:\n    name = 'd1.x'\n"
        "make_site(P(), reactor=object())\n"
        "print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
