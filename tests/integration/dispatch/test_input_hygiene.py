"""Issue #20, findings 4 and 6 on dispatch: hostile text, lax types and points are 422 naming the field, not 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from .conftest import DispatchDb, a_town_with_villages, add_volunteers, running_app, token
from .test_input_limits import body, counts


@pytest.fixture
async def client(dispatch_db: DispatchDb) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(dispatch_db, consumers=(), tick=0.2) as c:
        yield c


def _raw(b: dict[str, Any]) -> bytes:
    return json.dumps(b).encode()  # lone surrogates as their \\ud800 escape; NaN as the NaN literal


@pytest.mark.parametrize(("change", "field"), [
    ({"title": "溺水\x00"}, "title"),
    ({"kind": "fall\ud800"}, "kind"),
    ({"title": "\x1b[2J溺水"}, "title"),
    ({"title": "溺水\x07\x07"}, "title"),
    ({"meeting_point": "南门\x00"}, "meeting_point"),
    ({"requirements": [{"skill": "first_aid", "count": "2"}]}, "count"),
    ({"requirements": [{"skill": "first_aid", "count": True}]}, "count"),
    ({"requirements": [{"skill": "first_aid", "count": 2**70}]}, "count"),
    ({"lat": float("nan")}, "lat"),
    ({"policy": {"max_level": "village", "wave_deadline_seconds": 2**63}}, "wave_deadline_seconds"),
    ({"policy": {"max_level": "village", "over_call_factor": float("inf")}}, "over_call_factor"),
    ({"meeting_lat": 30.0, "meeting_lon": 179.0}, "meeting point"),
])
async def test_hostile_incident_fields_are_refused(
    dispatch_db: DispatchDb, client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    _, villages = a_town_with_villages(1, index=13)
    headers = await token(dispatch_db)
    before = await counts(dispatch_db)
    r = await client.post("/incidents", headers={**headers, "content-type": "application/json"},
                          content=_raw(body(villages[0], **change)))
    assert r.status_code == 422, r.text
    assert field in r.text
    assert await counts(dispatch_db) == before


async def test_a_page_limit_beyond_int64_is_422(dispatch_db: DispatchDb, client: httpx.AsyncClient) -> None:
    headers = await token(dispatch_db)
    for path in ("/incidents", "/replies/unmatched"):
        r = await client.get(path, headers=headers, params={"limit": 2**63})
        assert r.status_code == 422, r.text


async def test_control_characters_in_an_outcome_or_broadcast_are_refused_newlines_kept(
    dispatch_db: DispatchDb, client: httpx.AsyncClient
) -> None:
    _, villages = a_town_with_villages(1, index=14)
    await add_volunteers(dispatch_db, villages[0], 1)
    headers = await token(dispatch_db)
    r = await client.post("/incidents", headers=headers, json=body(villages[0]))
    assert r.status_code == 201, r.text
    iid = r.json()["incident"]["incident_id"]
    r = await client.post(f"/incidents/{iid}/broadcasts", headers=headers,
                          json={"text": "集合\x1b点改", "audience": "called"})
    assert r.status_code == 422 and "text" in r.text, r.text
    r = await client.post(f"/incidents/{iid}/close", headers=headers, json={"outcome": "救出\x00"})
    assert r.status_code == 422 and "outcome" in r.text, r.text
    r = await client.post(f"/incidents/{iid}/close", headers=headers, json={"outcome": "救出\n移交120"})
    assert r.status_code == 200, r.text
