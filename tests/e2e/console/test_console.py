"""The operator console in a real browser (Debian's chromium driven by Playwright) against the running stack.

Sign in, open an incident from the form (first with errors shown beside the fields), watch a simulator
phone's reply reach the board without a reload, add a volunteer by hand and remove them, close, open
the report. Screenshots go to ``reports/screenshots/`` (look at them: Chinese must render).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.reply_path import Directory
from deploy import stack as local_stack
from deploy.stack import stack_env
from muster.drill.runner import DISPATCH, SIMULATOR, _operator_token, _seed_roster, _wait_projections
from muster.drill.scenario import load_scenario

playwright_api = pytest.importorskip("playwright.async_api")

HERE = Path(__file__).resolve().parent
SHOTS = Path(__file__).resolve().parents[3] / "reports" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT_MS = 60_000
# counts the console's beeps (each is one oscillator)
BEEP_COUNTER = """window.__beeps = 0; const _osc = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () { window.__beeps += 1; return _osc.call(this); };"""


@pytest.fixture(scope="module")
async def console(stack) -> AsyncIterator[dict[str, Any]]:
    """The services running with the small drill's roster, an operator token and a headless chromium page."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (apt-get install -y chromium fonts-noto-cjk)")
    local_stack.services_up()
    async with httpx.AsyncClient(timeout=60) as http:
        await _seed_roster(load_scenario(HERE.parent / "small_drill.yaml"), http)
    await _wait_projections(stack_env()["KAFKA_BOOTSTRAP_SERVERS"])
    token = await _operator_token("e2e-console")
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
        page.set_default_timeout(TIMEOUT_MS)
        await page.add_init_script(BEEP_COUNTER)
        yield {"page": page, "browser": browser, "token": token, "headers": {"Authorization": f"Bearer {token}"}}
        await browser.close()


async def _until(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_wrong_token_is_refused_with_the_apis_reason(console) -> None:
    page = console["page"]
    await page.goto(f"{DISPATCH}/console/")
    await page.fill("#token", "not-a-token")
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_selector("#signin-error:has-text('unknown or revoked token')")


async def test_sign_in_shows_the_operator_and_the_incident_list(console) -> None:
    page = console["page"]
    await page.goto(f"{DISPATCH}/console/")
    await page.fill("#token", console["token"])
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_selector("#who:has-text('e2e-console')")
    await page.wait_for_selector("#incidents:not([hidden])")
    assert await page.evaluate("sessionStorage.getItem('muster.operator.token')") == console["token"]
    await page.screenshot(path=str(SHOTS / "01-incident-list.png"), full_page=True)


async def _fill_form(page: Any, title: str, deadline: str) -> None:
    await page.goto(f"{DISPATCH}/console/new")
    await page.wait_for_selector("#county option[value='330602']", state="attached")
    await page.select_option("select[name=mode]", "drill")
    await page.select_option("select[name=kind]", "cardiac_arrest")
    await page.fill("input[name=title]", title)
    await page.select_option("#county", "330602")
    await page.select_option("#town", "330602002")
    await page.select_option("#village", "330602002002")
    await page.fill("input[name=lat]", "29.9960")
    await page.fill("input[name=lon]", "120.5600")
    await page.select_option("select[name=req-what]", "skill:first_aid")
    await page.fill("input[name=req-count]", "2")
    await page.select_option("select[name=max_level]", "county")
    await page.fill("input[name=wave_deadline_seconds]", deadline)
    await page.fill("input[name=meeting_point]", "府山公园南门停车场")
    await page.fill("input[name=callback_phone]", "0575-85123456")


async def test_the_form_shows_the_apis_errors_beside_the_fields(console) -> None:
    page = console["page"]
    await _fill_form(page, "标题过长" * 30, "")  # 120 characters (pydantic 422) and a drill without a deadline
    await page.click("#new-form button[type=submit]")
    title_error = page.locator("[data-for=title]")
    await title_error.wait_for()
    await page.wait_for_function("document.querySelector('[data-for=title]').textContent.length > 0")
    assert "100" in await title_error.text_content()
    await page.screenshot(path=str(SHOTS / "02-open-form-error.png"), full_page=True)
    await page.fill("input[name=title]", "府山公园心脏骤停（控制台测试）")
    await page.click("#new-form button[type=submit]")
    await page.wait_for_function(
        "document.querySelector('[data-for=\"policy.wave_deadline_seconds\"]').textContent.length > 0")
    assert page.url.endswith("/console/new")  # nothing opened


async def test_open_watch_a_reply_add_remove_close_and_report(console) -> None:
    page, headers = console["page"], console["headers"]
    await _fill_form(page, "府山公园心脏骤停（控制台测试）", "600")
    await page.click("#new-form button[type=submit]")
    await page.wait_for_url("**/console/incidents/*")
    incident_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    await page.wait_for_selector("#conn.on")
    await page.wait_for_selector("#responders tbody tr")
    assert await page.is_visible("#drill-banner")
    await page.evaluate("window.__sameDocument = 'yes'")

    async with httpx.AsyncClient(timeout=30) as http:
        async def sms_delivered() -> Any:
            snap = (await http.get(f"{DISPATCH}/console/api/incidents/{incident_id}", headers=headers)).json()
            return next((r for r in snap["responders"] if r["state"] == "requested"
                         and any(m["channel"] == "sms" and m["status"] == "delivered" for m in r["messages"])), None)

        target = await _until(sms_delivered, "a call-out delivered by SMS")
        [mobile] = [p for p, v in (await Directory().phones(http, [target["volunteer_id"]])).items()
                    if p.startswith("+")][:1]
        await page.click("#sound")  # the operator turns the sound on (a first beep says it is on)
        await page.wait_for_function("window.__beeps === 1")
        r = await http.post(f"{SIMULATOR}/sim/phones/{mobile}/reply", json={"text": f"1{target['reply_code']} 10分钟到"})
        assert r.status_code < 300, r.text
        row = page.locator(f"tr[data-callout='{target['callout_id']}']")
        await row.locator("td.state:has-text('已接受')").wait_for()
        assert await page.evaluate("window.__sameDocument") == "yes"  # pushed, not reloaded
        await page.wait_for_function("window.__beeps >= 2")  # the new acceptance beeped
        await page.wait_for_selector(".req .filled:has-text('1')")
        assert "集合点：府山公园南门停车场" in await page.text_content("#b-meta")
        await page.screenshot(path=str(SHOTS / "03-board-drill.png"), full_page=True)

        # broadcast to the assigned (keyboard B): the accepted person's phone gets the text once
        await page.keyboard.press("b")
        await page.wait_for_selector("#confirm[open] textarea[name=text]")
        await page.select_option("#confirm select[name=audience]", "assigned")
        notice = f"集合点改到南门{uuid.uuid4().hex[:4]}"  # this run's: the phones keep earlier runs' messages
        await page.fill("#confirm textarea[name=text]", notice)
        await page.click("#confirm-ok")
        await page.wait_for_selector(".flash.ok:has-text('已发给 1 人')")

        async def broadcast_on_phone() -> Any:
            got = [m for m in (await http.get(f"{SIMULATOR}/sim/phones/{mobile}/messages")).json()
                   if notice in m["text"]]
            return got or None

        assert len(await _until(broadcast_on_phone, "the broadcast on the accepted phone")) == 1

        called = {r["volunteer_id"] for r in
                  (await http.get(f"{DISPATCH}/incidents/{incident_id}/callouts", headers=headers)).json()}

    # add by hand: search by town name, pick someone not yet called
    await page.keyboard.press("a")
    await page.wait_for_selector("#confirm[open]")
    await page.fill("#vol-q", "府山")
    await page.wait_for_selector("#vol-pick option", state="attached")
    values = await page.eval_on_selector_all("#vol-pick option", "els => els.map(e => e.value)")
    chosen = next(v for v in values if v not in called)
    await page.select_option("#vol-pick", chosen)
    await page.screenshot(path=str(SHOTS / "04-add-by-hand.png"))
    await page.click("#confirm-ok")
    await page.wait_for_selector(".flash.ok:has-text('手动加人')")
    added = page.locator("tr:has(small.tag)")
    await added.wait_for()
    callout_id = await added.get_attribute("data-callout")

    # remove them: confirm, then the row shows the stand-down
    await added.locator("[data-remove]").click()
    await page.wait_for_selector("#confirm[open]")
    await page.click("#confirm-ok")
    await page.locator(f"tr[data-callout='{callout_id}'] td.state:has-text('已撤回')").wait_for()

    # close with an outcome (keyboard C)
    await page.keyboard.press("c")
    await page.wait_for_selector("#confirm[open] textarea")
    await page.fill("#confirm textarea[name=outcome]", "患者已送医，演练结束")
    await page.click("#confirm-ok")
    await page.wait_for_selector("#b-meta .status.closed")
    await page.wait_for_selector("#b-meta:has-text('患者已送医')")
    await page.screenshot(path=str(SHOTS / "05-board-closed.png"), full_page=True)

    await page.goto(f"{DISPATCH}/console/incidents/{incident_id}/report")
    await page.wait_for_selector("#r-timeline tbody tr")
    text = await page.text_content("main")
    assert "结束事件" in text and "府山公园心脏骤停" in text
    kinds = await page.eval_on_selector_all("#r-timeline tbody tr td:nth-child(2)", "tds => tds.map(t => t.textContent)")
    assert "群发通知" in kinds and not [k for k in kinds if k.isascii()], kinds  # every entry named in Chinese
    needs = await page.eval_on_selector_all("#r-reqs tbody td:last-child", "tds => tds.map(t => t.textContent)")
    assert needs and "进行中" not in needs, needs  # a closed incident's unfilled need says so
    await page.screenshot(path=str(SHOTS / "06-report.png"), full_page=True)

    await page.goto(f"{DISPATCH}/console/")
    await page.fill("#closed-search", "控制台测试")
    await page.wait_for_selector(f"#closed-rows a[href='/console/incidents/{incident_id}']")


async def _token(role: str, unit: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "muster", "incident", "token", "create", "--name", f"console-{role}", "--role", role,
        "--unit", unit, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode().strip().splitlines()[-1].split()[-1]


async def _signed_in_page(console: dict[str, Any], token: str) -> Any:
    page = await console["browser"].new_page(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page.set_default_timeout(TIMEOUT_MS)
    await page.add_init_script(f"sessionStorage.setItem('muster.operator.token', {json.dumps(token)})")
    return page


async def _open_by_api(http: httpx.AsyncClient, headers: dict[str, str], title: str) -> dict[str, Any]:
    r = await http.post(f"{DISPATCH}/incidents", headers=headers, json={
        "kind": "drowning", "title": title, "lat": 29.996, "lon": 120.56, "unit_code": "330602002002", "mode": "drill",
        "requirements": [{"skill": "first_aid", "count": 1}],
        "policy": {"wave_deadline_seconds": 600, "max_level": "village"}})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_when_the_stream_is_blocked_the_board_polls_and_still_changes(console) -> None:
    page = await _signed_in_page(console, console["token"])
    await page.route("**/incidents/*/stream", lambda route: route.abort())
    async with httpx.AsyncClient(timeout=30) as http:
        board = await _open_by_api(http, console["headers"], "推送受阻测试")
        incident_id = board["incident"]["incident_id"]
        try:
            await page.goto(f"{DISPATCH}/console/incidents/{incident_id}")
            await page.wait_for_selector("#conn.poll")
            await page.wait_for_selector("#b-title:has-text('推送受阻测试')")
            r = await http.post(f"{DISPATCH}/incidents/{incident_id}/stand-down", headers=console["headers"])
            assert r.status_code == 200, r.text
            await page.wait_for_selector("#timeline li:has-text('全部撤回')")
            await page.screenshot(path=str(SHOTS / "07-board-polling.png"))
        finally:
            await http.post(f"{DISPATCH}/incidents/{incident_id}/close", headers=console["headers"],
                            json={"outcome": "测试结束"})
            await page.close()


async def test_a_stream_that_opens_and_ends_without_a_board_falls_back_to_polling(console) -> None:
    """Regression (break-it review): each connect reset the failure count, so a proxy cutting the stream at
    once kept the page reconnecting for ever with a blank board."""
    page = await _signed_in_page(console, console["token"])
    await page.route("**/incidents/*/stream", lambda route: route.fulfill(
        status=200, headers={"Content-Type": "text/event-stream"}, body="retry: 2000\n\n"))
    async with httpx.AsyncClient(timeout=30) as http:
        board = await _open_by_api(http, console["headers"], "推送被截断测试")
        incident_id = board["incident"]["incident_id"]
        try:
            await page.goto(f"{DISPATCH}/console/incidents/{incident_id}")
            await page.wait_for_selector("#conn.poll")
            await page.wait_for_selector("#b-title:has-text('推送被截断测试')")
        finally:
            await http.post(f"{DISPATCH}/incidents/{incident_id}/close", headers=console["headers"],
                            json={"outcome": "测试结束"})
            await page.close()


async def test_a_revoked_token_s_open_stream_ends(console) -> None:
    """Regression (break-it review): the stream checked the token only when it connected."""
    from services.dispatch.auth import TOKEN_ID_LENGTH, hash_token

    token = await _token("city", "330600")
    page = await _signed_in_page(console, token)
    async with httpx.AsyncClient(timeout=30) as http:
        board = await _open_by_api(http, console["headers"], "撤销令牌测试")
        incident_id = board["incident"]["incident_id"]
        try:
            await page.goto(f"{DISPATCH}/console/incidents/{incident_id}")
            await page.wait_for_selector("#conn.on")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "muster", "incident", "token", "revoke", "--id",
                hash_token(token)[:TOKEN_ID_LENGTH], stdout=asyncio.subprocess.DEVNULL)
            assert await proc.wait() == 0
            await page.wait_for_selector("#conn.off:has-text('令牌无效')", timeout=30_000)
            assert "令牌已被撤销" in await page.text_content("#flash")
        finally:
            await http.post(f"{DISPATCH}/incidents/{incident_id}/close", headers=console["headers"],
                            json={"outcome": "测试结束"})
            await page.close()


async def test_an_operator_of_another_county_is_told_why_and_a_viewer_gets_no_actions(console) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        board = await _open_by_api(http, console["headers"], "权限测试")
        incident_id = board["incident"]["incident_id"]
        try:
            page = await _signed_in_page(console, await _token("county", "330603"))  # 柯桥区: not 越城区
            await page.goto(f"{DISPATCH}/console/incidents/{incident_id}")
            await page.wait_for_selector("#flash:has-text('outside')")
            await page.wait_for_selector("#conn.off")
            await page.close()
            page = await _signed_in_page(console, await _token("viewer", "330602"))
            await page.goto(f"{DISPATCH}/console/incidents/{incident_id}")
            await page.wait_for_selector("#conn.on")
            assert not await page.is_visible("#act-close")
            await page.close()
        finally:
            await http.post(f"{DISPATCH}/incidents/{incident_id}/close", headers=console["headers"],
                            json={"outcome": "测试结束"})


async def test_the_service_record_shows_who_served_and_exports_the_star_ratings(console, tmp_path) -> None:
    """Issue #19: a volunteer who arrived at an emergency appears in the unit's service hours and star ratings,
    and the XLSX the page downloads (with the token, not in the URL) has their row."""
    page, headers = console["page"], console["headers"]
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{DISPATCH}/incidents", headers=headers, json={
            "kind": "drowning", "title": f"服务记录测试{uuid.uuid4().hex[:4]}", "lat": 29.9960, "lon": 120.5600,
            "unit_code": "330602002002", "mode": "emergency", "requirements": [{"skill": "first_aid", "count": 1}],
            "policy": {"max_level": "village", "wave_deadline_seconds": 600}})
        assert r.status_code == 201, r.text
        incident_id = r.json()["incident"]["incident_id"]

        async def sms_delivered() -> Any:
            cs = (await http.get(f"{DISPATCH}/console/api/incidents/{incident_id}", headers=headers)).json()
            return next((c for c in cs["responders"] if any(
                m["channel"] == "sms" and m["status"] == "delivered" for m in c["messages"])), None)

        target = await _until(sms_delivered, "a call-out delivered by SMS")
        [mobile] = [p for p in (await Directory().phones(http, [target["volunteer_id"]])) if p.startswith("+")][:1]
        for text in (f"1{target['reply_code']}", f"到了{target['reply_code']}"):
            assert (await http.post(f"{SIMULATOR}/sim/phones/{mobile}/reply", json={"text": text})).status_code < 300

        async def arrived() -> Any:
            cs = (await http.get(f"{DISPATCH}/incidents/{incident_id}/callouts", headers=headers)).json()
            return next((c for c in cs if c["callout_id"] == target["callout_id"] and c["state"] == "arrived"), None)

        await _until(arrived, "the volunteer's arrival")
        await http.post(f"{DISPATCH}/incidents/{incident_id}/close", headers=headers, json={"outcome": "测试结束"})
        record = (await http.get(f"{DISPATCH}/volunteers/{target['volunteer_id']}/service", headers=headers)).json()
        assert incident_id in {s["incident_id"] for s in record["spells"]}

    await page.goto(f"{DISPATCH}/console/")
    if not await page.evaluate("sessionStorage.getItem('muster.operator.token')"):
        await page.fill("#token", console["token"])
        await page.click("#signin-form button[type=submit]")
        await page.wait_for_selector("#who:has-text('e2e-console')")
    await page.goto(f"{DISPATCH}/console/service?unit_code=330602002")
    row = page.locator(f"#s-stars tr[data-volunteer='{target['volunteer_id']}']")
    await row.wait_for()
    assert "累计服务" in await row.text_content()
    assert "330602002002" in await page.locator("#s-units tbody").inner_html()  # the village's row
    await page.screenshot(path=str(SHOTS / "08-service-record.png"), full_page=True)
    async with page.expect_download() as got:
        await page.click("#s-export")
    path = tmp_path / "stars.xlsx"
    await (await got.value).save_as(path)
    import openpyxl

    ws = openpyxl.load_workbook(path).active
    assert ws is not None
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][:2] == ("姓名", "单位") and target["name"] in {r[0] for r in rows[1:]}
