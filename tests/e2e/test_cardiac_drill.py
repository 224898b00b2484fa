"""The cardiac-arrest drill at 鲁迅故里 on the running stack (issue #17): circle, CPR, AED runs, figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from deploy import stack as local_stack
from muster.drill.runner import SIMULATOR, run_drill
from muster.drill.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "luxun_cardiac_arrest.yaml"


@pytest.fixture(scope="module")
def services(stack):
    """The simulator and the three services, started as background processes (reused when running)."""
    local_stack.services_up()
    return stack


async def test_cardiac_drill_calls_the_circle_sends_cpr_and_aed_runs(services, tmp_path):
    scenario = load_scenario(SCENARIO)
    report_path = tmp_path / "report.json"
    ok = await run_drill(scenario, report_path=report_path, start=False)
    report = json.loads(report_path.read_text())
    assert ok, (report["expectations"], report["integrity"])
    [incident] = report["incidents"]
    circle = incident["figures"]["circle"]
    roles = circle["roles"]
    assert [r["role"] for r in roles].count("cpr") >= 1 and roles[0]["role"] == "cpr"  # the first to accept: CPR
    aeds = [r["aed_id"] for r in roles if r["role"] == "fetch_aed"]
    assert aeds and len(aeds) == len(set(aeds))  # no AED sent for twice
    assert circle["rings"][0]["ring_m"] == 700.0 and circle["rings"][0]["alerted"] == 3  # the 3 nearest first
    assert sum(r["alerted"] for r in circle["rings"]) <= 30
    assert circle["seconds_to_first_alert_sent"] is not None and circle["seconds_to_aed_on_scene"] is not None

    async with httpx.AsyncClient(timeout=30) as http:
        items, after = [], 0
        while True:
            page = (await http.get(f"{SIMULATOR}/sim/messages", params={"after": after, "limit": 5000,
                                                                       "wait": 0})).json()["messages"]
            if not page:
                break
            items += page
            after = max(m["seq"] for m in page)
    bodies = [re.sub(r"^【[^】]*】", "", m["text"]) for m in items]
    assert any("为患者做心肺复苏CPR" in b and "uri.amap.com/marker?position=" in b for b in bodies)
    fetch = [b for b in bodies if "请先取AED：" in b]
    assert len(fetch) == len(aeds) and all("再送到" in b and "uri.amap.com/marker?position=" in b for b in fetch)
    assert not any("鲁迅纪念馆二楼楼梯口" in b for b in fetch) or _museum_open()  # closed at night: never fetched


def _museum_open() -> bool:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo("Asia/Shanghai")).time()
    return now.hour * 60 + now.minute >= 8 * 60 + 30 and now.hour < 17
