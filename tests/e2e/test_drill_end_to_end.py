"""A small drill on the real stack: services running, driven like a user, report checked against the phones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from deploy import stack as local_stack
from muster.drill.runner import SIMULATOR, classify, run_drill
from muster.drill.scenario import load_scenario

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def services(stack):
    """The simulator and the three services, started as background processes (reused when running)."""
    local_stack.services_up()
    return stack


async def test_small_drill_report_matches_what_the_phones_saw(services, tmp_path):
    scenario = load_scenario(HERE / "small_drill.yaml")
    report_path = tmp_path / "report.json"
    ok = await run_drill(scenario, report_path=report_path, start=False)
    report = json.loads(report_path.read_text())
    assert report_path.with_suffix(".html").read_text().startswith("<!doctype html>")

    async with httpx.AsyncClient(timeout=30) as http:
        items, after = [], 0
        while True:
            page = (await http.get(f"{SIMULATOR}/sim/messages", params={"after": after, "limit": 5000, "wait": 0})).json()["messages"]
            if not page:
                break
            items += page
            after = max(m["seq"] for m in page)

    # What the report says the phones received is what the simulator delivered.
    assert report["phones"]["messages_received"] == len(items)
    kinds = {k: sum(1 for m in items if classify(m["text"]) == k) for k in ("callout", "assigned", "stand_down")}
    assert report["phones"]["messages_by_kind"].get("callout", 0) == kinds["callout"]
    [incident] = report["incidents"]
    figures = incident["figures"]
    called = sum(v["called"] for v in figures["acceptance_rate_by_level"].values())
    assert called == kinds["callout"], "every call-out on the board reached exactly one phone"
    assigned = sum(r["filled"] for r in figures["requirements"])
    assert assigned == 3 and kinds["assigned"] >= 3
    # The provider puts the SMS signature 【…】 in front; the body starts with 演练.
    bodies = [re.sub(r"^【[^】]*】", "", m["text"]) for m in items]
    assert bodies and all(b.startswith("演练") for b in bodies), "drill messages say 演练 first"
    assert {k: report["integrity"][k] for k in ("duplicate_messages", "lost_replies", "overfilled_requirements")} == {
        "duplicate_messages": 0, "lost_replies": 0, "overfilled_requirements": 0}
    assert ok, report["expectations"]
