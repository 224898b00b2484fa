"""Lock order between the deadline ticker and the operator/reply paths (found by the fault drill, tests/faults).

The ticker locks a due requirement, then writes the next wave; each call-out's foreign key to its
incident takes a KEY SHARE lock on the incident row. Closing an incident (and applying a reply)
locks the incident row first, then its requirements. With ``FOR UPDATE`` on the incident row the two
waited for each other and PostgreSQL aborted one with "deadlock detected" (the operator's close got
a 500); ``FOR NO KEY UPDATE`` does not conflict with KEY SHARE, so the wave is written and the close
proceeds after it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from services.dispatch import usecases
from services.dispatch.units import units
from shared.events import IncidentMode

from .conftest import DispatchDb, a_town_with_villages, add_volunteers


async def test_a_wave_being_written_and_an_incident_lock_do_not_deadlock(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    town, villages = a_town_with_villages(1, index=23)
    await add_volunteers(db, villages[0], 8)  # the first wave calls 6: 2 are left for the next
    lat, lon = units().centres[town]
    actor = usecases.Actor("t", "city", "330600")
    data = usecases.IncidentInput(
        kind="t", title="t", lat=lat, lon=lon, unit_code=villages[0], mode=IncidentMode.DRILL,
        requirements=[usecases.RequirementInput("first_aid", None, 3)], wave_deadline_seconds=600,
    )
    async with db.pool.acquire() as conn:
        incident_id = await usecases.open_incident(conn, data, actor, place="x")
        waves_before = await conn.fetchval("SELECT wave FROM requirements WHERE incident_id = $1", incident_id)

    async with db.pool.acquire() as ticker, db.pool.acquire() as operator:
        t_tx, o_tx = ticker.transaction(), operator.transaction()
        await t_tx.start()
        await o_tx.start()
        # the ticker holds the due requirement (process_due), the operator the incident (close_incident)
        req = await ticker.fetchrow("SELECT * FROM requirements WHERE incident_id = $1 FOR UPDATE", incident_id)
        await usecases._incident(operator, incident_id, lock=True)  # noqa: SLF001 - the lock close and replies take

        async def write_wave() -> None:
            try:
                await usecases._handle_due(ticker, req, datetime.now(UTC))  # noqa: SLF001 - the ticker's step
            except BaseException:
                await t_tx.rollback()
                raise
            await t_tx.commit()

        async def lock_requirements() -> None:
            await asyncio.sleep(0.2)  # the wave's insert is waiting (or done) by now
            try:
                await operator.execute(
                    "SELECT 1 FROM requirements WHERE incident_id = $1 ORDER BY position FOR UPDATE", incident_id)
            except BaseException:
                await o_tx.rollback()
                raise
            await o_tx.commit()

        results = await asyncio.wait_for(asyncio.gather(write_wave(), lock_requirements(), return_exceptions=True), 30)
    assert [r for r in results if isinstance(r, BaseException)] == []
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT wave FROM requirements WHERE incident_id = $1", incident_id) == waves_before + 1
