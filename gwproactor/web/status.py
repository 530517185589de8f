"""The live status page (``GET /`` and ``GET /status``) and the JSON it polls (``GET /status.json``).

The page is one HTML document with its CSS and JavaScript inline (no external assets: it works offline, on
a plant network).  Its script fetches ``/status.json`` every second and redraws the tables; it writes every
value with ``textContent`` (never ``innerHTML``), so text from peers or settings cannot become markup.  The
proactor's name, the only value written into the HTML on the server, is escaped with :func:`html.escape`.

``/status.json`` is a view made for the page: ages in seconds computed on the server (the links' times are
on the reactor's clock, which the browser cannot read), one entry per link, the store, the outbox, the
recent state changes of all links, newest first, and the problem counts by kind.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from gwproactor.web.metrics import StatsSource

#: How often the page polls ``/status.json`` (milliseconds).
POLL_INTERVAL_MS = 1000
#: Most recent link state changes shown.
MAX_RECENT = 20
#: The outbox counters the page shows.
OUTBOX_KEYS = ("queued", "in_flight", "sent", "acked", "resent", "parked")


def _age(now: float, then: Any) -> float | None:
    return round(max(0.0, now - then), 3) if isinstance(then, (int, float)) else None


def status_view(proactor: StatsSource) -> dict[str, Any]:
    """The JSON of ``/status.json`` for ``proactor`` (its ``stats()`` plus the links' clocks)."""
    stats = proactor.stats()
    links_stats = stats.get("links") or {}
    links = []
    recent = []
    for name, summary in links_stats.items():
        link = getattr(proactor, "links", {}).get(name)
        clock = getattr(link, "clock", None)
        now = clock.seconds() if clock is not None else None
        transitions = summary.get("recent_transitions") or []
        since = transitions[-1][0] if transitions else None
        liveness = getattr(link, "liveness", None)
        running = summary.get("state") not in ("not_started", "stopped")
        heard = getattr(liveness, "last_received", None) if running else None
        rtt = summary.get("rtt") or {}
        links.append(
            {
                "name": name,
                "peer": summary.get("peer"),
                "upstream": summary.get("upstream"),
                "state": summary.get("state"),
                "since_s": _age(now, since) if now is not None else None,
                "last_heard_s": _age(now, heard) if now is not None else None,
                "rtt_last_s": rtt.get("last"),
                "rtt_p50_s": rtt.get("p50"),
                "rtt_p99_s": rtt.get("p99"),
                "in_flight": summary.get("in_flight"),
                "last_down_reason": summary.get("last_down_reason"),
            }
        )
        for at, link_input, state in reversed(transitions):  # newest first, also among equal ages
            age = _age(now, at) if now is not None else None
            recent.append({"age_s": age, "link": name, "input": link_input, "state": state})
    recent.sort(key=lambda r: r["age_s"] if r["age_s"] is not None else float("inf"))
    store = stats.get("store") or {}
    outbox = stats.get("outbox")
    counters = stats.get("counters") or {}
    return {
        "name": stats.get("name"),
        "links": links,
        "store": {k: store.get(k) for k in ("pending", "pending_bytes", "oldest_age_s", "parked")},
        "outbox": None if not outbox else {k: outbox.get(k) for k in OUTBOX_KEYS},
        "recent": recent[:MAX_RECENT],
        "problems": {k[len("problems.") :]: n for k, n in sorted(counters.items()) if k.startswith("problems.")},
    }


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__NAME__ — gwproactor status</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
 h1 { font-size: 1.3em; margin: 0 0 .2em; } h2 { font-size: 1.05em; margin: 1.2em 0 .4em; }
 table { border-collapse: collapse; background: #fff; } th, td { padding: .25em .7em; border: 1px solid #ddd; text-align: left; }
 th { background: #f0f0f0; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
 .state { font-weight: 600; padding: .1em .5em; border-radius: .6em; }
 .state.active { background: #d6f5d6; color: #185c18; } .state.inactive { background: #fde2c8; color: #8a3a00; }
 .state.stopped, .state.not_started { background: #eee; color: #555; }
 #conn { font-size: .9em; color: #666; } #conn.error { color: #b00020; font-weight: 600; }
 .empty { color: #888; font-style: italic; }
</style>
</head>
<body>
<h1>__NAME__</h1>
<div id="conn">loading…</div>
<h2>Links</h2>
<table id="links"><thead><tr><th>link</th><th>peer</th><th>state</th><th>since</th><th>ack RTT (last / p50)</th>
<th>last heard</th><th>in flight</th></tr></thead><tbody></tbody></table>
<h2>Event store</h2>
<table id="store"><thead><tr><th>pending</th><th>pending bytes</th><th>oldest pending</th><th>parked</th>
<th>outbox queued</th><th>outbox in flight</th></tr></thead><tbody></tbody></table>
<h2>Problems by kind</h2>
<table id="problems"><thead><tr><th>kind</th><th>count</th></tr></thead><tbody></tbody></table>
<h2>Recent link state changes</h2>
<table id="recent"><thead><tr><th>when</th><th>link</th><th>input</th><th>new state</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
const POLL_MS = __POLL_MS__;
function ago(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return s.toFixed(1) + " s ago";
  if (s < 3600) return (s / 60).toFixed(1) + " min ago";
  return (s / 3600).toFixed(1) + " h ago";
}
function ms(s) { return (s === null || s === undefined) ? "—" : (s * 1000).toFixed(1) + " ms"; }
function num(v) { return (v === null || v === undefined) ? "—" : String(v); }
function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;  // text only: nothing from the server becomes markup
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}
function fill(id, rows, columns, empty) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  if (!rows.length) {
    const tr = body.insertRow(); const td = cell(tr, empty, "empty"); td.colSpan = columns; return;
  }
  for (const row of rows) {
    const tr = body.insertRow();
    for (const [text, cls] of row) cell(tr, text, cls);
  }
}
function render(s) {
  fill("links", s.links.map(l => [
    [l.name], [num(l.peer)], [l.state, "state " + (l.state === "active" ? "active" :
      (l.state === "stopped" || l.state === "not_started") ? l.state : "inactive")],
    [ago(l.since_s)], [ms(l.rtt_last_s) + " / " + ms(l.rtt_p50_s), "num"], [ago(l.last_heard_s)],
    [num(l.in_flight), "num"]]), 7, "no links");
  document.querySelectorAll("#links tbody tr").forEach((tr, i) => {
    if (s.links[i]) tr.dataset.link = s.links[i].name;
  });
  const st = s.store, ob = s.outbox || {};
  fill("store", [[[num(st.pending), "num"], [num(st.pending_bytes), "num"],
    [st.pending ? ago(st.oldest_age_s).replace(" ago", "") : "—"], [num(st.parked), "num"],
    [num(ob.queued), "num"], [num(ob.in_flight), "num"]]], 6, "");
  fill("problems", Object.entries(s.problems).map(([k, n]) => [[k], [String(n), "num"]]), 2, "none");
  fill("recent", s.recent.map(r => [[ago(r.age_s)], [r.link], [r.input], [r.state]]), 4, "none yet");
}
let polls = 0;
async function poll() {
  const conn = document.getElementById("conn");
  try {
    const answer = await fetch("status.json", {cache: "no-store"});
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    render(await answer.json());
    polls += 1;
    conn.className = "";
    conn.textContent = "updated " + new Date().toLocaleTimeString() + " (every " + POLL_MS / 1000 + " s)";
  } catch (e) {
    conn.className = "error";
    conn.textContent = "cannot reach the proactor: " + e.message + " (retrying)";
  } finally {
    document.body.dataset.polls = String(polls);
    setTimeout(poll, POLL_MS);
  }
}
poll();
</script>
</body>
</html>
"""


def status_page(name: str, poll_interval_ms: int = POLL_INTERVAL_MS) -> bytes:
    """The HTML of the status page for the proactor named ``name`` (escaped)."""
    page = _PAGE.replace("__POLL_MS__", str(int(poll_interval_ms))).replace("__NAME__", html.escape(name))
    return page.encode("utf-8")
