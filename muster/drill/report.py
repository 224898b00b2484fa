"""The drill report: JSON, a terminal summary, and a self-contained HTML page with a timeline chart.

Per incident and requirement: time to first acceptance, time to fill (seconds from opening), level
reached, waves, call-outs by state, acceptance rate by level, messages by channel and delivery
failures (dispatch's figures, ``GET /incidents/{id}/report``), plus what the phones saw. The
``integrity`` section (:mod:`muster.drill.integrity`) must be all zeros, and the scenario's
expectations must hold, for ``ok`` to be true.

The HTML page embeds plotly.js (no network needed to open it).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from muster.drill.scenario import Scenario
from shared.vocabulary import Level

__all__ = ["INTEGRITY_KEYS", "build_report", "check_expectations", "print_summary", "write_report"]

INTEGRITY_KEYS = ("duplicate_messages", "duplicate_stand_downs", "lost_callouts", "lost_replies",
                  "overfilled_requirements")
_ORDER = [Level.VILLAGE, Level.TOWN, Level.COUNTY, Level.CITY]


def _level_index(value: str | None) -> int:
    return _ORDER.index(Level(value)) if value else -1


def check_expectations(scenario: Scenario, incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate the scenario's expectations against the incidents' figures.

    Returns:
        One ``{"name", "expected", "actual", "ok"}`` per expectation that the scenario states.

    """
    exp = scenario.expectations
    reqs = [r for inc in incidents for r in inc["figures"].get("requirements", [])]
    results: list[dict[str, Any]] = []
    reached = max((_level_index(inc["figures"].get("level_reached")) for inc in incidents), default=-1)
    reached_name = _ORDER[reached].value if reached >= 0 else None
    if exp.all_filled:
        unfilled = [r for r in reqs if r["filled"] < r["count"]]
        results.append({"name": "all_filled", "expected": True, "actual": not unfilled, "ok": not unfilled})
    if exp.filled_within_seconds is not None:
        times = [r.get("time_to_fill_s") for r in reqs]
        worst = max((t for t in times if t is not None), default=None)
        ok = all(t is not None and t <= exp.filled_within_seconds for t in times)
        results.append({"name": "filled_within_seconds", "expected": exp.filled_within_seconds, "actual": worst,
                        "ok": ok})
    if exp.min_level_reached is not None:
        ok = reached >= _ORDER.index(exp.min_level_reached)
        results.append({"name": "min_level_reached", "expected": exp.min_level_reached.value,
                        "actual": reached_name, "ok": ok})
    if exp.max_level_reached is not None:
        ok = 0 <= reached <= _ORDER.index(exp.max_level_reached)
        results.append({"name": "max_level_reached", "expected": exp.max_level_reached.value,
                        "actual": reached_name, "ok": ok})
    circles = [inc["figures"]["circle"] for inc in incidents if "circle" in inc["figures"]]
    if exp.min_aed_runs:
        runs = sum(c["aed_runs"] for c in circles)
        results.append({"name": "min_aed_runs", "expected": exp.min_aed_runs, "actual": runs,
                        "ok": runs >= exp.min_aed_runs})
    if exp.aed_on_scene_within_seconds is not None:
        times = [c["seconds_to_aed_on_scene"] for c in circles if c["seconds_to_aed_on_scene"] is not None]
        best = min(times, default=None)
        results.append({"name": "aed_on_scene_within_seconds", "expected": exp.aed_on_scene_within_seconds,
                        "actual": best, "ok": best is not None and best <= exp.aed_on_scene_within_seconds})
    if exp.min_unfilled_requirements:
        n = sum(1 for r in reqs if r["filled"] < r["count"])
        results.append({"name": "min_unfilled_requirements", "expected": exp.min_unfilled_requirements,
                        "actual": n, "ok": n >= exp.min_unfilled_requirements})
    return results


def build_report(scenario: Scenario, state: Any, final: dict[str, dict[str, Any]], counts: dict[str, Any],
                 *, boards_seen: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble the report dict (JSON-ready) from what the runner gathered."""
    by_volunteer_channel: Counter[str] = Counter()
    for m in state.messages:
        by_volunteer_channel[m.get("channel", "?")] += 1
    incidents = []
    for incident_id, data in final.items():
        plan = data["plan"]
        board = data["board"]
        figures = data["report"].get("figures", data["report"])
        incidents.append({
            "incident_id": incident_id,
            "title": plan["title"],
            "kind": plan["kind"],
            "mode": plan["mode"],
            "figures": figures,
            "requirements": board.get("requirements", []),
            "timeline": board.get("timeline", []),
            "callouts": len(data["callouts"]),
        })
    expectations = check_expectations(scenario, incidents)
    integrity_ok = all(int(counts[k]) == 0 for k in INTEGRITY_KEYS)
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "started_at": state.started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "wall_seconds": round(state.offset(), 1),
        "incidents": incidents,
        "phones": {
            "messages_received": len(state.messages),
            "messages_by_channel": dict(by_volunteer_channel),
            "messages_by_kind": dict(Counter(m.get("kind", "?") for m in state.messages)),
            "replies_sent": len(state.sent),
            "replies_sent_by_action": dict(Counter(m.get("response", "none") for m in state.messages
                                                   if m.get("kind") == "callout")),
        },
        "integrity": counts,
        "expectations": expectations,
        "errors": state.errors[:100],
        "ok": integrity_ok and all(e["ok"] for e in expectations),
    }


def _default_path(report: dict[str, Any]) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("reports") / f"drill-{stamp}.json"


def write_report(report: dict[str, Any], path: Path | None) -> tuple[Path, Path]:
    """Write the JSON report and the HTML page beside it; return both paths."""
    json_path = Path(path) if path else _default_path(report)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    html_path = json_path.with_suffix(".html")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


def _timeline_figure(report: dict[str, Any]) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    start = datetime.fromisoformat(report["started_at"])
    for inc in report["incidents"]:
        xs, texts = [], []
        for entry in inc["timeline"]:
            at = entry.get("at") or entry.get("occurred_at")
            if not at:
                continue
            xs.append((datetime.fromisoformat(str(at).replace("Z", "+00:00")) - start).total_seconds())
            texts.append(entry.get("text") or entry.get("kind") or entry.get("event") or "")
        fig.add_trace(go.Scatter(x=xs, y=[inc["title"]] * len(xs), mode="markers", name=inc["title"],
                                 text=texts, hovertemplate="%{x:.1f} s: %{text}<extra></extra>",
                                 marker={"size": 10}))
    fig.update_layout(title="Timeline (seconds from the start of the drill)", xaxis_title="seconds",
                      height=200 + 60 * len(report["incidents"]), margin={"l": 200})
    html: str = fig.to_html(full_html=False, include_plotlyjs=True)
    return html


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page of the report (plotly.js embedded)."""
    from jinja2 import Environment, select_autoescape

    env = Environment(autoescape=select_autoescape(default=True))
    template = env.from_string(_HTML)
    return template.render(r=report, chart=_timeline_figure(report), keys=INTEGRITY_KEYS)


_HTML = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{{ r.scenario }} — drill report</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.ok{color:#080}.bad{color:#b00;font-weight:bold}</style>
</head><body>
<h1>{{ r.scenario }}</h1><p>{{ r.description }}</p>
<p>Started {{ r.started_at }}, {{ r.wall_seconds }} s. Result:
<span class="{{ 'ok' if r.ok else 'bad' }}">{{ 'PASS' if r.ok else 'FAIL' }}</span></p>
<h2>Integrity</h2><table>{% for k in keys %}<tr><th>{{ k }}</th>
<td class="{{ 'ok' if r.integrity[k] == 0 else 'bad' }}">{{ r.integrity[k] }}</td></tr>{% endfor %}</table>
<h2>Expectations</h2><table><tr><th>expectation</th><th>expected</th><th>actual</th><th></th></tr>
{% for e in r.expectations %}<tr><td>{{ e.name }}</td><td>{{ e.expected }}</td><td>{{ e.actual }}</td>
<td class="{{ 'ok' if e.ok else 'bad' }}">{{ 'ok' if e.ok else 'not met' }}</td></tr>{% endfor %}</table>
{{ chart | safe }}
{% for inc in r.incidents %}<h2>{{ inc.title }} <small>({{ inc.kind }}, {{ inc.mode }})</small></h2>
<p>Level reached: <b>{{ inc.figures.level_reached }}</b>; waves: {{ inc.figures.waves }};
time to first acceptance: {{ inc.figures.time_to_first_acceptance_s }} s; delivery failures:
{{ inc.figures.delivery_failures }}; messages by channel: {{ inc.figures.messages_by_channel }}</p>
<table><tr><th>requirement</th><th>count</th><th>filled</th><th>time to fill (s)</th><th>level</th></tr>
{% for q in inc.figures.requirements %}<tr><td>{{ q.skill or q.team_type or q.requirement_id }}</td><td>{{ q.count }}</td>
<td>{{ q.filled }}</td><td>{{ q.time_to_fill_s }}</td><td>{{ q.level }}</td></tr>{% endfor %}</table>
<table><tr><th>level</th><th>called</th><th>accepted</th><th>rate</th></tr>
{% for lvl, a in inc.figures.acceptance_rate_by_level.items() %}<tr><td>{{ lvl }}</td><td>{{ a.called }}</td>
<td>{{ a.accepted }}</td><td>{{ '%.0f%%' % (a.rate * 100) }}</td></tr>{% endfor %}</table>
<p>Call-outs by state: {{ inc.figures.callouts_by_state }}</p>{% endfor %}
<h2>Phones</h2><pre>{{ r.phones }}</pre>
{% if r.errors %}<h2>Errors</h2><pre>{{ r.errors | join('\\n') }}</pre>{% endif %}
</body></html>
"""


def print_summary(report: dict[str, Any], paths: tuple[Path, Path]) -> None:
    """A readable terminal summary, then the paths of the JSON and HTML reports."""
    print()
    print(f"== {report['scenario']} — {'PASS' if report['ok'] else 'FAIL'} ({report['wall_seconds']} s)")
    for inc in report["incidents"]:
        f = inc["figures"]
        print(f"-- {inc['title']}: level reached {f.get('level_reached')}, waves {f.get('waves')}, "
              f"first acceptance {f.get('time_to_first_acceptance_s')} s")
        for q in f.get("requirements", []):
            print(f"   requirement {q.get('skill') or q.get('team_type') or q['requirement_id'][:8]}: "
                  f"{q['filled']}/{q['count']} filled, time to fill {q.get('time_to_fill_s')} s, level {q.get('level')}")
        rates = ", ".join(f"{k} {v['accepted']}/{v['called']}" for k, v in f.get("acceptance_rate_by_level", {}).items())
        print(f"   acceptances by level: {rates}")
        print(f"   call-outs by state: {f.get('callouts_by_state')}; messages by channel: "
              f"{f.get('messages_by_channel')}; delivery failures: {f.get('delivery_failures')}")
    print("integrity: " + ", ".join(f"{k}={report['integrity'][k]}" for k in INTEGRITY_KEYS))
    for e in report["expectations"]:
        print(f"expectation {e['name']}: expected {e['expected']}, actual {e['actual']} -> {'ok' if e['ok'] else 'NOT MET'}")
    if report["errors"]:
        print(f"errors ({len(report['errors'])}): {report['errors'][:3]}")
    print(f"report: {paths[0]}")
    print(f"html:   {paths[1]}")
    console = console_url()
    print(f"console: {console}")
    for inc in report["incidents"]:
        print(f"console report: {console}incidents/{inc['incident_id']}/report")


def console_url() -> str:
    """The operator console's address on this stack (``http://127.0.0.1:<dispatch port>/console/``)."""
    from deploy.stack import StackSettings

    return StackSettings().url("dispatch").rstrip("/") + "/console/"
