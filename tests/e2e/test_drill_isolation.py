"""A drill beside a live incident (issue #14): the drill passes, the live incident's call-outs get no answer
from the drill's phones, and the drill's operator token is revoked when it ends."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import pytest

from deploy import stack as local_stack
from deploy.stack import stack_env
from muster.drill.runner import DISPATCH, _seed_roster, _wait_projections, run_drill
from muster.drill.scenario import load_scenario

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def services(stack):
    local_stack.services_up()
    return stack


async def muster(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "muster", *args, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, args
    return out.decode()


async def test_a_drill_beside_a_live_incident_leaves_it_alone(services, tmp_path):
    scenario = load_scenario(HERE / "small_drill.yaml")
    before = {t["id"] for t in json.loads(await muster("incident", "token", "list", "--json"))}
    [plan] = scenario.incidents
    token = (await muster("incident", "token", "create", "--name", "live-duty", "--role", "city",
                          "--unit", "330600")).strip().splitlines()[-1].split()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as http:
        await _seed_roster(scenario, http)  # the live incident needs people to call, as the drill does
        await _wait_projections(stack_env()["KAFKA_BOOTSTRAP_SERVERS"])
        r = await http.post(f"{DISPATCH}/incidents", headers=headers, json={
            "kind": "fall", "title": "府山街道老人跌倒", "lat": plan.lat, "lon": plan.lon, "unit_code": plan.unit_code,
            "mode": "emergency", "requirements": [{"skill": "first_aid", "count": 2}],
            "policy": {"max_level": "county", "wave_deadline_seconds": 3600}})
        assert r.status_code == 201, r.text
        live = r.json()["incident"]["incident_id"]
        try:
            report_path = tmp_path / "report.json"
            ok = await run_drill(scenario, report_path=report_path, start=False)
            report = json.loads(report_path.read_text())
            assert ok, report["expectations"]
            assert {k: report["integrity"][k] for k in ("duplicate_messages", "lost_callouts", "lost_replies")} == {
                "duplicate_messages": 0, "lost_callouts": 0, "lost_replies": 0}

            callouts = (await http.get(f"{DISPATCH}/incidents/{live}/callouts", headers=headers)).json()
            assert callouts, "the live incident called people (the drill's phones could have answered them)"
            assert [c for c in callouts if c["replies"]] == []
            assert {c["state"] for c in callouts} == {"requested"}
        finally:
            await http.post(f"{DISPATCH}/incidents/{live}/close", headers=headers, json={"outcome": "test over"})
    tokens = json.loads(await muster("incident", "token", "list", "--json"))
    drill_tokens = [t for t in tokens if t["name"] == "drill-admin" and t["id"] not in before]
    assert len(drill_tokens) == 1 and drill_tokens[0]["revoked_at"], "the drill's token does not stay valid"
