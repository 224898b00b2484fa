"""Fairness: among people at the same distance, the one with fewer call-outs in the last 30 days goes first.

Issue #4's ranking is distance, then call-outs in the last 30 days, then the id. The candidate
query counted call-outs requested *after* the incident's time instead of within the 30 days before
it, so everyone counted 0 and the id alone broke the tie (this test failed on that code).
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

from services.dispatch.adapters.projection import load_volunteer_candidates, upsert_profile
from services.dispatch.domain.selection import select_volunteers
from services.dispatch.units import units
from shared.events import VolunteerProfileUpdated
from shared.vocabulary import Level

from .conftest import DispatchDb, a_town_with_villages, now


async def test_fewer_recent_callouts_break_a_distance_tie(dispatch_db: DispatchDb) -> None:
    town, villages = a_town_with_villages(1, index=77)
    lat, lon = units().centres[town]
    at = now()
    # two people at the same spot; the one with the smaller id was called 3 days ago, in a closed incident
    busy, rested = sorted((uuid4(), uuid4()), key=str)
    async with dispatch_db.pool.acquire() as conn:
        for vid in (busy, rested):
            await upsert_profile(conn, VolunteerProfileUpdated(
                volunteer_id=vid, revision=1, display_name="v", unit_code=villages[0], lat=lat + 0.001, lon=lon,
                skills=("logistics",), consent=True,
            ))
        await _past_callout(conn, busy, villages[0], at - timedelta(days=3))
        await _past_callout(conn, rested, villages[0], at - timedelta(days=31))  # outside the window: not counted
        vols = await load_volunteer_candidates(conn, skill="logistics", prefix=town, incident_id=uuid4(), at=at,
                                               lat=lat, lon=lon, limit=1)
    recent = {v.volunteer_id: v.recent_callouts for v in vols if v.volunteer_id in (busy, rested)}
    assert recent == {busy: 1, rested: 0}
    chosen = select_volunteers(vols, skill="logistics", lat=lat, lon=lon, unit_code=villages[0], level=Level.TOWN,
                               at=at, called=(), limit=1)
    assert [v.volunteer_id for v, _ in chosen] == [rested]


async def _past_callout(conn: object, volunteer_id: UUID, unit_code: str, at: object) -> None:
    """A stood-down call-out of ``volunteer_id`` requested at ``at`` in a closed incident of its own."""
    incident, requirement = uuid4(), uuid4()
    await conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO incidents (incident_id, kind, title, mode, lat, lon, unit_code, place, start_level, max_level, "
        "over_call_factor, wave_deadline_seconds, status, opened_by, opened_at, closed_at, opened_event_id) "
        "VALUES ($1, 'drowning', 'past', 'drill', 30, 120.5, $2, 'x', 'village', 'town', 2, 600, 'closed', 't', $3, "
        "$3, $4)", incident, unit_code, at, uuid4(),
    )
    await conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO requirements (requirement_id, incident_id, position, skill, count, level, status) "
        "VALUES ($1, $2, 0, 'logistics', 1, 'village', 'closed')", requirement, incident,
    )
    await conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO callouts (callout_id, incident_id, requirement_id, volunteer_id, wave, level, reply_code, state, "
        "requested_at, respond_by, cancel_reason) VALUES ($1, $2, $3, $4, 1, 'village', 'A1', 'cancelled', $5, $5, "
        "'incident_closed')", uuid4(), incident, requirement, volunteer_id, at,
    )
