"""A call-out message that reaches a phone before the drill's index has its call-out is decided with the call-out's
level, after a refresh of the index, not with the village's rates (no I/O: httpx's MockTransport plays dispatch)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from muster.drill import runner
from muster.drill.responders import Response
from muster.drill.runner import DISPATCH, DrillState, _on_message
from shared.vocabulary import Level


def _dispatch(callouts: list[dict[str, Any]]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/callouts"):
            return httpx.Response(200, json=callouts)
        return httpx.Response(200, json={"requirements": [{"requirement_id": "r1", "skill": None}]})
    return httpx.MockTransport(answer)


@pytest.fixture
def levels(monkeypatch: pytest.MonkeyPatch) -> list[Level]:
    seen: list[Level] = []

    def fake_decide(model: Any, *, seed: int, key: str, level: Level, skill: str | None) -> Response:
        seen.append(level)
        return Response(action="ignore", latency_s=0.0, text=None, eta_minutes=None, no_show=False,
                        arrival_after_s=None)

    monkeypatch.setattr(runner, "decide", fake_decide)
    return seen


# decide is replaced: only its arguments matter; the incident's title tells the drill's messages apart
SCENARIO = SimpleNamespace(responders=None, seed=7, incidents=[SimpleNamespace(title="鉴湖溺水")])


def _message(n: int) -> dict[str, Any]:
    return {"seq": n, "recipient": "13800000001", "out_id": f"m{n}", "channel": "sms",
            "text": "【红十字】演练 呼叫：鉴湖溺水 回复1A7 接受 回复2A7 拒绝"}


async def test_a_callout_not_yet_indexed_is_decided_with_its_level_after_a_refresh(levels: list[Level]) -> None:
    state = DrillState(phone_to_volunteer={"13800000001": "v1"}, incidents={"i1": None})  # type: ignore[dict-item]
    callouts = [{"volunteer_id": "v1", "state": "requested", "level": "county", "requirement_id": "r1",
                 "callout_id": "c1"}]
    async with httpx.AsyncClient(transport=_dispatch(callouts), base_url=DISPATCH) as http:
        _on_message(state, SCENARIO, http, _message(1))  # type: ignore[arg-type]
        await asyncio.gather(*state.pending)
    assert levels == [Level.COUNTY]
    assert state.decided == {"c1"}


async def test_the_next_callout_of_the_same_volunteer_waits_for_its_own_entry(levels: list[Level]) -> None:
    state = DrillState(phone_to_volunteer={"13800000001": "v1"}, incidents={"i1": None})  # type: ignore[dict-item]
    state.callout_index["v1"] = {"level": "village", "skill": None, "callout_id": "c1"}
    state.decided.add("c1")  # the village call-out was answered; the county one is new
    callouts = [{"volunteer_id": "v1", "state": "requested", "level": "county", "requirement_id": "r1",
                 "callout_id": "c2"}]
    async with httpx.AsyncClient(transport=_dispatch(callouts), base_url=DISPATCH) as http:
        _on_message(state, SCENARIO, http, _message(2))  # type: ignore[arg-type]
        await asyncio.gather(*state.pending)
    assert levels == [Level.COUNTY]
    assert json.dumps(sorted(state.decided)) == '["c1", "c2"]'
