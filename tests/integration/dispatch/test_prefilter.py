"""The SQL pre-filter never changes who is selected: pre-filtered + pure selection == pure selection over all.

The candidate query narrows to the nearest ``limit + 50`` (ties at the cut kept); the pure
function decides. Here the projection is deliberately awkward: many people at the same point
(ties that fairness must break), expired and missing certificates, people away, without consent,
engaged elsewhere, and some already called.
"""

from __future__ import annotations

import random
from datetime import timedelta
from uuid import uuid4

import pytest

from services.dispatch.adapters import projection
from services.dispatch.adapters.projection import load_volunteer_candidates, upsert_profile
from services.dispatch.domain.selection import select_volunteers
from services.dispatch.units import units
from shared.events import Availability, CertificateInfo, VolunteerProfileUpdated
from shared.vocabulary import Level

from .conftest import DispatchDb, a_town_with_villages, now


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_prefilter_keeps_the_pure_selection(dispatch_db: DispatchDb, seed: int) -> None:
    rng = random.Random(seed)
    town, villages = a_town_with_villages(4, index=8 + seed)
    lat, lon = units().centres[town]
    at = now()
    today = at.date()
    async with dispatch_db.pool.acquire() as conn:
        for i in range(300):
            same_spot = rng.random() < 0.4
            cert_end = rng.choice([None, today + timedelta(days=30), today - timedelta(days=1), today])
            certs = () if rng.random() < 0.1 else (CertificateInfo(skill="first_aid", expires_on=cert_end),)
            await upsert_profile(conn, VolunteerProfileUpdated(
                volunteer_id=uuid4(), revision=1, display_name=f"v{i}", unit_code=rng.choice(villages),
                lat=None if rng.random() < 0.05 else lat + (0 if same_spot else rng.uniform(-0.05, 0.05)),
                lon=lon + (0 if same_spot else rng.uniform(-0.05, 0.05)),
                skills=("first_aid",) if rng.random() < 0.8 else ("driver",), certificates=certs,
                availability=rng.choice([Availability.AVAILABLE] * 4 + [Availability.OFF_DUTY, Availability.UNAVAILABLE]),
                unavailable_until=at + timedelta(hours=rng.choice([-1, 1])), consent=rng.random() < 0.9,
                active=rng.random() < 0.95,
            ))
        incident_id = uuid4()
        # everyone in the town, with no SQL filter at all: what the pure function alone would see
        rows = await conn.fetch(
            f"SELECT {projection._VOLUNTEER_COLUMNS} FROM volunteers v WHERE v.unit_code LIKE $1 || '%' "
            "AND $2::text IS NOT NULL", town, "x", at - projection.FAIRNESS_WINDOW, incident_id,
        )
        everyone = [projection._volunteer(r) for r in rows]
        full = await load_volunteer_candidates(conn, skill="first_aid", prefix=town, incident_id=incident_id, at=at)
        for limit in (1, 5, 20, 60, 400):
            narrowed = await load_volunteer_candidates(conn, skill="first_aid", prefix=town, incident_id=incident_id,
                                                       at=at, lat=lat, lon=lon, limit=limit)
            kwargs = dict(skill="first_aid", lat=lat, lon=lon, unit_code=villages[0], level=Level.TOWN, at=at,
                          called=(), limit=limit)
            expected = [v.volunteer_id for v, _ in select_volunteers(everyone, **kwargs)]  # type: ignore[arg-type]
            assert [v.volunteer_id for v, _ in select_volunteers(full, **kwargs)] == expected  # type: ignore[arg-type]
            got = [v.volunteer_id for v, _ in select_volunteers(narrowed, **kwargs)]  # type: ignore[arg-type]
            assert got == expected
            assert len(narrowed) <= len(full)
        assert len(everyone) == 300 and len(full) > 60  # more candidates than the small waves, and some ruled out
