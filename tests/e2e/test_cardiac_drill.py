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

    # the console's board shows the circle: its rings and who did CPR or fetched which AED
    await _console_shows_the_circle(incident["incident_id"], len(roles), len(aeds), circle["rings"])


async def _console_shows_the_circle(incident_id: str, n_roles: int, n_aeds: int, rings: list[dict]) -> None:
    import shutil

    from playwright.async_api import async_playwright

    from muster.drill.runner import DISPATCH, _operator_token

    token = await _operator_token("e2e-cardiac-console")
    shots = Path(__file__).resolve().parents[2] / "reports" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                           args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
        await page.add_init_script(f"sessionStorage.setItem('muster.operator.token', {json.dumps(token)})")
        await page.goto(f"{DISPATCH}/console/incidents/{incident_id}")
        await page.wait_for_selector("#circle:not([hidden]) #roles tbody tr[data-role]")
        note = await page.text_content("#circle-note")
        rings_called = sum(r["alerted"] > 0 for r in rings)
        assert note is not None and note.count("●") == rings_called and "●700 米" in note
        kinds = await page.eval_on_selector_all("#timeline li", "lis => lis.map(l => l.textContent)")
        assert kinds and not [k for k in kinds if "ring_called" in k or "cardiac_role" in k], kinds
        assert await page.locator("#roles tr[data-role='cpr']").count() >= 1
        assert await page.locator("#roles tr[data-role='fetch_aed']").count() == n_aeds
        assert await page.locator("#roles tbody tr[data-role]").count() == n_roles
        await page.screenshot(path=str(shots / "09-cardiac-circle.png"), full_page=True)
        await browser.close()


def _museum_open() -> bool:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo("Asia/Shanghai")).time()
    return now.hour * 60 + now.minute >= 8 * 60 + 30 and now.hour < 17
