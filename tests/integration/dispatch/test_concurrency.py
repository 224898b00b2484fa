"""Concurrent accepts for the last place: exactly one is assigned, the rest stood down, every reply recorded."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from services.dispatch import usecases
from services.dispatch.units import units
from shared.events import IncidentMode, ReplyIntent, ReplyReceived
from shared.vocabulary import Channel

from .conftest import DispatchDb, a_town_with_villages, add_volunteers, now


async def test_simultaneous_accepts_never_over_fill(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    town, villages = a_town_with_villages(1, index=50)
    await add_volunteers(db, villages[0], 5)
    lat, lon = units().centres[town]
    async with db.pool.acquire() as conn:
        incident_id = await usecases.open_incident(conn, usecases.IncidentInput(
            kind="t", title="t", lat=lat, lon=lon, unit_code=villages[0], mode=IncidentMode.DRILL,
            requirements=[usecases.RequirementInput("first_aid", None, 1)], over_call_factor=5,
            wave_deadline_seconds=600,
        ), usecases.Actor("t", "city", "330600"), place="x")
        calls = await conn.fetch("SELECT callout_id, volunteer_id FROM callouts WHERE incident_id = $1", incident_id)
    assert len(calls) == 5

    async def accept(callout_id: object, volunteer_id: object) -> None:
        async with db.pool.acquire() as conn, conn.transaction():  # each as its own consumer batch would
            await usecases.apply_reply_event(conn, ReplyReceived(
                reply_id=uuid4(), volunteer_id=volunteer_id, callout_id=callout_id, intent=ReplyIntent.ACCEPT,  # type: ignore[arg-type]
                text="1", channel=Channel.SMS, received_at=now(), producer="test"))

    await asyncio.gather(*(accept(c["callout_id"], c["volunteer_id"]) for c in calls))

    async with db.pool.acquire() as conn:
        req = await conn.fetchrow("SELECT filled, status FROM requirements WHERE incident_id = $1", incident_id)
        states = dict(await conn.fetch("SELECT state, count(*) FROM callouts WHERE incident_id = $1 GROUP BY 1",
                                       incident_id))
        notes = sorted(r["note"] for r in await conn.fetch("SELECT note FROM replies WHERE incident_id = $1",
                                                           incident_id))
        assigned_events = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE headers->>'event_type' = 'CallOutAssigned' "
            "AND headers->>'correlation_id' = $1", str(incident_id))
    assert (req["filled"], req["status"]) == (1, "filled")
    assert states == {"assigned": 1, "cancelled": 4}
    assert len(notes) == 5 and notes.count("assigned") == 1
    assert assigned_events == 1
