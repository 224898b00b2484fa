"""Divisions loading, the synthetic roster and republish on the real PostgreSQL (rolled back: nothing is published)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from services.roster import commands
from services.roster.domain.seed import TEST_MOBILE_PREFIX, synthesize
from services.roster.domain.units import parse_divisions

OTHER_CITY = """code,name,level,parent_code,lon_gcj02,lat_gcj02
330100,杭州市,city,,120.153576,30.287459
330102,上城区,county,330100,120.171465,30.250236
330102001,清波街道,town,330102,,
330102001001,清波门社区居委会,village,330102001,,
"""


async def test_bundled_divisions_are_loaded_with_datum_and_wgs84(roster_pool: Any) -> None:
    async with roster_pool.acquire() as conn:
        levels = dict(await conn.fetch("SELECT level, count(*) FROM units GROUP BY level"))
        city = await conn.fetchrow("SELECT * FROM units WHERE code = '330600'")
        without = await conn.fetchval("SELECT count(*) FROM units WHERE centre_datum IS NULL AND lat IS NOT NULL")
    assert levels == {"city": 1, "county": 6, "town": 103, "village": 2168}
    assert city["centre_datum"] == "GCJ-02" and city["centre_lon"] == 120.580364
    assert abs(city["lon"] - 120.5759) < 0.002 and city["lat"] != city["centre_lat"]
    assert without == 0


async def test_another_citys_file_loads_too(roster_pool: Any) -> None:
    async with roster_pool.acquire() as conn:
        tr = conn.transaction()
        await tr.start()
        try:
            n = await commands.load_divisions(conn, parse_divisions(OTHER_CITY))
            again = await commands.load_divisions(conn, parse_divisions(OTHER_CITY))
            rows = await conn.fetch("SELECT code, parent_code FROM units WHERE code LIKE '3301%' ORDER BY code")
        finally:
            await tr.rollback()
    assert n == again == 4
    assert [(r["code"], r["parent_code"]) for r in rows] == [
        ("330100", None), ("330102", "330100"), ("330102001", "330102"), ("330102001001", "330102001")]


async def test_seed_over_the_real_divisions_and_republish(roster_pool: Any) -> None:
    async with roster_pool.acquire() as conn:
        tr = conn.transaction()
        await tr.start()
        try:
            units = await commands.load_directory(conn)
            result = synthesize(units, volunteers=3000, teams=24, seed=7, today=date(2026, 11, 29))
            before = await conn.fetchval("SELECT count(*) FROM outbox")
            counts = await commands.seed_roster(conn, result.volunteers, result.teams, mobile_prefix=TEST_MOBILE_PREFIX)
            events = await conn.fetchval("SELECT count(*) FROM outbox") - before
            per_county = dict(await conn.fetch(
                "SELECT left(unit_code, 6), count(*) FROM volunteers WHERE starts_with(mobile, $1) GROUP BY 1",
                TEST_MOBILE_PREFIX))
            teams = await conn.fetch("SELECT left(unit_code, 6) AS county, team_type FROM teams WHERE active")
            leaders_are_members = await conn.fetchval(
                "SELECT bool_and(EXISTS (SELECT 1 FROM team_members m WHERE m.team_id = t.id AND m.volunteer_id = "
                "t.leader_id)) FROM teams t WHERE t.active")
            with pytest.raises(commands.Conflict):
                await commands.seed_roster(conn, result.volunteers, result.teams, mobile_prefix=TEST_MOBILE_PREFIX)
            replaced = await commands.seed_roster(conn, result.volunteers, result.teams,
                                                  mobile_prefix=TEST_MOBILE_PREFIX, replace_existing=True)
            active = await conn.fetchval("SELECT count(*) FROM volunteers WHERE active")
            republished = await commands.republish(conn)
        finally:
            await tr.rollback()
    assert counts == {"volunteers": 3000, "teams": 24, "removed": 0}
    assert events == 2 * 3000 + 24
    assert set(per_county) == {"330602", "330603", "330604", "330624", "330681", "330683"}
    kinds = {(t["county"], t["team_type"]) for t in teams}
    assert {("330603", "water"), ("330681", "water"), ("330603", "first_aid"), ("330681", "first_aid"),
            ("330602", "first_aid")} <= kinds
    assert leaders_are_members is True
    assert replaced["removed"] == 3000
    assert republished["volunteers"] == active and republished["teams"] >= 24
