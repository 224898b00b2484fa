"""The deadline ticker: one requirement that cannot be handled does not hold up the others."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.dispatch import usecases
from services.dispatch.handlers.ticker import run_due
from services.dispatch.units import units
from shared.events import IncidentMode
from tests.conftest import StackAddresses

from .conftest import DispatchDb, a_town_with_villages, add_volunteers, dispatch_schema


@pytest.fixture(scope="module")
async def dispatch_db(stack: StackAddresses) -> AsyncIterator[DispatchDb]:
    """A schema of this module's own: the ticker handles every due requirement there is, and here it counts them."""
    async with dispatch_schema(stack) as db:
        yield db


async def test_a_failing_requirement_is_skipped_and_the_rest_proceed(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    town, villages = a_town_with_villages(2, index=20)
    await add_volunteers(db, villages[0], 1)
    await add_volunteers(db, villages[1], 2)
    lat, lon = units().centres[town]
    actor = usecases.Actor("t", "city", "330600")

    def data() -> usecases.IncidentInput:
        return usecases.IncidentInput(
            kind="t", title="t", lat=lat, lon=lon, unit_code=villages[0], mode=IncidentMode.DRILL,
            requirements=[usecases.RequirementInput("first_aid", None, 1)], wave_deadline_seconds=600,
        )

    async with db.pool.acquire() as conn:
        broken = await usecases.open_incident(conn, data(), actor, place="x")
        good = await usecases.open_incident(conn, data(), actor, place="x")
        # corrupt one requirement (an unknown skill in the row), and make both due
        await conn.execute("UPDATE requirements SET skill = 'juggling' WHERE incident_id = $1", broken)
        await conn.execute("UPDATE requirements SET deadline_at = now() - interval '1 second' "
                           "WHERE incident_id = ANY($1::uuid[])", [broken, good])

    assert await run_due(db.pool) == 1
    async with db.pool.acquire() as conn:
        rows = {r["incident_id"]: r for r in await conn.fetch(
            "SELECT incident_id, level, wave, deadline_at < now() AS due FROM requirements "
            "WHERE incident_id = ANY($1::uuid[])", [broken, good])}
        timed_out = await conn.fetchval("SELECT count(*) FROM callouts WHERE incident_id = $1 AND state = 'timed_out'",
                                        broken)
    assert (rows[good]["level"], rows[good]["wave"], rows[good]["due"]) == ("town", 2, False)
    assert (rows[broken]["wave"], rows[broken]["due"]) == (1, True)  # untouched, retried next tick
    assert timed_out == 0  # nothing of the failed attempt was written
