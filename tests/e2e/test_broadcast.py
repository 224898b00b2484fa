"""Operator broadcast on the running stack (issue 14): each called person's phone gets it once.

dispatch (``POST /incidents/{id}/broadcasts``) → outbox → Kafka → notify → the provider simulator's phones.
Repeating the request with the same broadcast id sends nothing more; a second broadcast (a new id) is
the barrier after which any duplicate of the first would have arrived (per-volunteer order on the topic).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy import stack as local_stack
from muster.drill.runner import DISPATCH, SIMULATOR, _operator_token, _seed_roster
from muster.drill.scenario import load_scenario

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
async def services(stack: Any) -> Any:
    local_stack.services_up()
    async with httpx.AsyncClient(timeout=60) as http:
        await _seed_roster(load_scenario(HERE / "small_drill.yaml"), http)
    return stack


async def _phones(http: httpx.AsyncClient, marker: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (await http.get(f"{SIMULATOR}/sim/messages",
                               params={"after": after, "limit": 5000, "wait": 0})).json()["messages"]
        if not page:
            return [m for m in items if marker in m["text"]]
        items += page
        after = max(m["seq"] for m in page)


async def _until(http: httpx.AsyncClient, marker: str, text: str, n: int, timeout: float = 60.0) -> list[Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = [m for m in await _phones(http, marker) if text in m["text"]]
        if len(got) >= n or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.5)


async def test_each_called_persons_phone_gets_the_broadcast_once(services: Any) -> None:
    marker = f"广播测试{uuid.uuid4().hex[:4]}"
    headers = {"Authorization": f"Bearer {await _operator_token('e2e-broadcast')}"}
    async with httpx.AsyncClient(timeout=60) as http:
        r = await http.post(f"{DISPATCH}/incidents", headers=headers, json={
            "kind": "cardiac_arrest", "title": marker, "lat": 29.9960, "lon": 120.5600, "unit_code": "330602002002",
            "mode": "drill", "requirements": [{"skill": "first_aid", "count": 2}],
            "policy": {"wave_deadline_seconds": 600, "over_call_factor": 2, "max_level": "county"},
            "meeting_point": "府山公园南门", "callback_phone": "0575-85123456"})
        assert r.status_code == 201, r.text
        incident_id = r.json()["incident"]["incident_id"]
        try:
            callouts = (await http.get(f"{DISPATCH}/incidents/{incident_id}/callouts", headers=headers)).json()
            n = len(callouts)
            assert n >= 2 and all(c["state"] == "requested" for c in callouts), callouts
            called = await _until(http, marker, "回复1", n)
            assert len(called) == n, called
            recipients = {m["recipient"] for m in called}
            assert all("府山公园南门" in m["text"] and "uri.amap.com/marker?position=" in m["text"] for m in called)

            nobody = await http.post(f"{DISPATCH}/incidents/{incident_id}/broadcasts", headers=headers,
                                     json={"text": "无人已出勤", "audience": "assigned"})
            assert nobody.status_code == 201 and nobody.json()["recipients"] == 0, nobody.text

            bid = str(uuid.uuid4())
            body = {"text": "集合点改到南门", "audience": "called", "broadcast_id": bid}
            first = await http.post(f"{DISPATCH}/incidents/{incident_id}/broadcasts", headers=headers, json=body)
            assert first.status_code == 201 and first.json()["recipients"] == n, first.text
            again = await http.post(f"{DISPATCH}/incidents/{incident_id}/broadcasts", headers=headers, json=body)
            assert again.status_code == 200 and again.json() == {**first.json(), "created": False}, again.text
            barrier = await http.post(f"{DISPATCH}/incidents/{incident_id}/broadcasts", headers=headers,
                                      json={"text": "请带好急救包", "audience": "called"})
            assert barrier.status_code == 201, barrier.text
            assert len(await _until(http, marker, "请带好急救包", n)) == n

            got = [m for m in await _phones(http, marker) if "调度通知：集合点改到南门" in m["text"]]
            assert Counter(m["recipient"] for m in got) == dict.fromkeys(recipients, 1)
            assert all(m["text"].removeprefix(m["text"][: m["text"].find("】") + 1]).startswith("演练") for m in got)
            assert not [m for m in await _phones(http, marker) if "无人已出勤" in m["text"]]

            # an unrecognised reply: one automatic answer, and the operator's list shows it, flagged answered
            sms = sorted(m["recipient"] for m in called if m["channel"] == "sms")
            assert sms, "no SMS recipient among the called"
            for text in ("请问在哪里集合", "在哪"):
                r = await http.post(f"{SIMULATOR}/sim/phones/{sms[0]}/reply", json={"text": text})
                assert r.status_code == 200, r.text

            async def answered() -> list[Any]:
                rows = (await http.get(f"{DISPATCH}/incidents/{incident_id}/replies/unrecognised",
                                       headers=headers)).json()
                return rows if len(rows) == 2 and all(x["auto_answered"] for x in rows) else []

            deadline = asyncio.get_running_loop().time() + 60
            while not (rows := await answered()) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.5)
            assert sorted(x["text"] for x in rows) == sorted(["在哪", "请问在哪里集合"]), rows
            auto = [m for m in await _phones(http, marker) if "未能识别您的回复" in m["text"]]
            assert [m["recipient"] for m in auto] == [sms[0]] and "府山公园南门" in auto[0]["text"]

            audit = (await http.get(f"{DISPATCH}/audit", headers=headers,
                                    params={"incident_id": incident_id})).json()
            assert sum(a["action"] == "incident.broadcast" for a in audit) == 3
        finally:
            await http.post(f"{DISPATCH}/incidents/{incident_id}/close", headers=headers,
                            json={"outcome": "broadcast test"})
