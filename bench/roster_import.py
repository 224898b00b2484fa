"""Benchmark: importing a 100,000-row register (CSV and XLSX) end to end, and searching 100,000 volunteers.

End to end = read the file, normalise and validate every row, upsert in one transaction (COPY)
with the events written to the outbox, and the relay publishing every event to Kafka and getting
every acknowledgement. Search = ``GET /volunteers?unit=<prefix>&skill=<code>&page_size=50`` through
the FastAPI app (httpx ASGI transport, no network) and the bare repository query.

Isolation: everything happens in a scratch schema ``roster_bench_<hex>`` of the test database
(``MUSTER_TEST_DATABASE_URL``) that is dropped at the end, and events go to scratch topics
``bench.<topic>`` (created, then deleted), so the demo roster and the consumers of the real topics
never see benchmark volunteers.

Usage: ``uv run python bench/roster_import.py [--rows 100000] [--searches 300]``. Prints the
figures and writes ``bench/results/roster_import_<UTC time>.json`` with machine information
(cores, memory, Python, PostgreSQL) and the git commit.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.roster import commands  # noqa: E402
from services.roster.adapters import repository as repo  # noqa: E402
from services.roster.adapters.spreadsheet import read_table  # noqa: E402
from services.roster.divisions import load_file  # noqa: E402
from services.roster.domain.importing import validate_register  # noqa: E402
from services.roster.domain.seed import synthesize  # noqa: E402
from shared.db import create_pool  # noqa: E402
from shared.outbox import OutboxRelay  # noqa: E402
from shared.topics import ROSTER_CONTACT, ROSTER_PROFILE, ROSTER_TEAM, TopicSpec  # noqa: E402
from shared.vocabulary import SKILLS  # noqa: E402
from tests.integration.roster.conftest import migrate_schema  # noqa: E402

HEADER = ["序号", "姓名", "手机号码", "区县", "乡镇（街道）", "村（社区）", "技能", "证书编号", "发证日期", "有效期至", "身份证号"]
BENCH_TOPICS = tuple(TopicSpec(f"bench.{t.name}", t.partitions, t.compacted, t.key)
                     for t in (ROSTER_PROFILE, ROSTER_CONTACT, ROSTER_TEAM))


def _env() -> dict[str, str]:
    from deploy.stack import env_file

    env = {}
    for line in env_file().read_text().splitlines():
        k, _, v = line.partition("=")
        env[k] = v
    env.update({k: v for k, v in os.environ.items() if k in ("KAFKA_BOOTSTRAP_SERVERS", "MUSTER_TEST_DATABASE_URL")})
    return env


def make_register(units: Any, rows: int, seed: int) -> list[list[object]]:
    """A messy register of ``rows`` volunteers over the real divisions (mobiles in the bench block +86 19991…)."""
    rng = random.Random(seed)
    result = synthesize(units, volunteers=rows, teams=0, seed=seed, today=date(2026, 11, 29),
                        mobile_prefix="+8619991")
    table: list[list[object]] = [list(HEADER)]
    for i, v in enumerate(result.volunteers):
        village = units.get(v.unit_code)
        town = units.get(v.unit_code[:9])
        county = units.get(v.unit_code[:6])
        digits = v.mobile[3:]
        mobile = [digits, f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}", f"0086-{digits}", f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"][i % 4]
        vname = village.name if i % 3 else village.name.replace("村委会", "村")
        skills = "、".join(next(s.name_zh for s in SKILLS if s.code == c) for c in v.skills)
        cert = v.certificates[0] if v.certificates else None
        issued = expires = ""
        if cert and cert.issued_on and cert.expires_on:
            issued = [cert.issued_on.isoformat(), f"{cert.issued_on.year}年{cert.issued_on.month}月{cert.issued_on.day}日",
                      cert.issued_on.strftime("%Y/%-m/%-d"), cert.issued_on.strftime("%Y%m%d")][i % 4]
            expires = cert.expires_on.isoformat()
        skills_cell = skills
        if cert:  # the register's certificate certifies the first skill needing one: put it first
            others = [c for c in v.skills if c != cert.kind]
            skills_cell = "、".join(next(s.name_zh for s in SKILLS if s.code == c) for c in (cert.kind, *others))
        table.append([i + 1, v.name, mobile, county.name, town.name, vname, skills_cell, cert.number if cert else "",
                      issued, expires, f"3306{rng.randint(10**13, 10**14 - 1)}"])
    return table


def to_csv(table: list[list[object]], encoding: str) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(table)
    return buf.getvalue().encode(encoding)


def to_xlsx(table: list[list[object]]) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet()
    for r in table:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


async def import_end_to_end(pool: Any, relay: OutboxRelay, data: bytes, name: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    table = read_table(data, name)
    t_read = time.perf_counter()
    async with pool.acquire() as conn:
        units = await commands.load_directory(conn)
        plan = validate_register(table, units, await repo.active_team_names(conn))
        t_valid = time.perf_counter()
        report = await commands.import_register(conn, plan)
        if report.committed:
            await repo.vacuum_search(conn)  # as commands.import_file does after a bulk import
        t_commit = time.perf_counter()
        await conn.execute("UPDATE outbox SET topic = 'bench.' || topic WHERE published_at IS NULL")
    t_retopic = time.perf_counter()
    published = await relay.publish_pending()
    t_end = time.perf_counter()
    assert report.ok, report.errors[:5]
    return {
        "file": name, "bytes": len(data), "rows": report.rows, "created": report.created, "updated": report.updated,
        "unchanged": report.unchanged, "events_published": published,
        "read_s": round(t_read - t0, 2), "validate_s": round(t_valid - t_read, 2),
        "commit_s": round(t_commit - t_valid, 2), "publish_s": round(t_end - t_retopic, 2),
        "bench_retopic_s": round(t_retopic - t_commit, 2),
        "end_to_end_s": round(t_end - t0 - (t_retopic - t_commit), 2),
    }


async def search_figures(pool: Any, n: int, seed: int) -> dict[str, Any]:
    import httpx

    from services.roster.app import create_app
    from shared.settings import RosterSettings

    rng = random.Random(seed)
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE volunteers")
        counties = [r["code"] for r in await conn.fetch("SELECT code FROM units WHERE level = 'county'")]
        towns = [r["code"] for r in await conn.fetch("SELECT code FROM units WHERE level = 'town'")]
        villages = [r["code"] for r in await conn.fetch("SELECT code FROM units WHERE level = 'village'")]
        total = await conn.fetchval("SELECT count(*) FROM volunteers WHERE active")
    skills = ["first_aid", "cpr_aed", "water_rescue", "search_rescue", "medical", "driver"]
    queries = [(rng.choice([*counties, *towns, *villages] if i % 3 else counties), rng.choice(skills)) for i in range(n)]

    repo_ms: list[float] = []
    async with pool.acquire() as conn:
        for unit, skill in queries:
            t = time.perf_counter()
            await repo.search_volunteers(conn, repo.SearchFilter(unit=unit, skill=skill), page=1, page_size=50)
            repo_ms.append((time.perf_counter() - t) * 1000)

    settings = RosterSettings()
    app = create_app(settings)
    app.state.runtime.pool = pool
    http_ms: list[float] = []
    county_ms: list[float] = []
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://roster",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        for unit, skill in queries:
            t = time.perf_counter()
            r = await client.get("/volunteers", params={"unit": unit, "skill": skill, "page_size": 50})
            ms = (time.perf_counter() - t) * 1000
            assert r.status_code == 200
            http_ms.append(ms)
            if len(unit) == 6:
                county_ms.append(ms)

    def pct(xs: list[float], p: float) -> float:
        return round(statistics.quantiles(xs, n=100)[int(p) - 1], 2)

    return {
        "volunteers": total, "queries": n,
        "repository_p50_ms": pct(repo_ms, 50), "repository_p95_ms": pct(repo_ms, 95),
        "http_p50_ms": pct(http_ms, 50), "http_p95_ms": pct(http_ms, 95),
        "http_county_p50_ms": pct(county_ms, 50), "http_county_p95_ms": pct(county_ms, 95),
    }


async def machine(pool: Any) -> dict[str, Any]:
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    async with pool.acquire() as conn:
        pg = await conn.fetchval("SHOW server_version")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "services/roster", "bench/roster_import.py"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    return {"cores": os.cpu_count(), "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()], "memory_gb": round(mem_kb / 1024 / 1024, 1), "python": platform.python_version(),
            "postgresql": pg, "platform": platform.platform(), "git_commit": commit, "git_dirty_roster": dirty}


async def main(rows: int, searches: int, seed: int) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    from shared.topics import ensure_topics

    env = _env()
    dsn, bootstrap = env["MUSTER_TEST_DATABASE_URL"], env["KAFKA_BOOTSTRAP_SERVERS"]
    schema = f"roster_bench_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(migrate_schema, dsn, schema)
    await ensure_topics(bootstrap, BENCH_TOPICS)
    pool = await create_pool(dsn, min_size=1, max_size=4, server_settings={"search_path": schema})
    relay = OutboxRelay(pool, bootstrap, name="roster-bench", batch_size=2000)
    results: dict[str, Any] = {"benchmark": "roster_import", "at": datetime.now(UTC).isoformat(), "rows": rows}
    try:
        async with pool.acquire() as conn:
            await load_file(conn)
            units = await commands.load_directory(conn)
        t = time.perf_counter()
        table = make_register(units, rows, seed)
        csv_bytes = to_csv(table, "gb18030")
        xlsx_bytes = to_xlsx(table)
        print(f"generated {rows} rows in {time.perf_counter() - t:.1f}s "
              f"(CSV GB18030 {len(csv_bytes) / 1e6:.1f} MB, XLSX {len(xlsx_bytes) / 1e6:.1f} MB)")
        results["machine"] = await machine(pool)

        results["csv"] = await import_end_to_end(pool, relay, csv_bytes, "register.csv")
        print("CSV  ", results["csv"])
        results["csv_again"] = await import_end_to_end(pool, relay, csv_bytes, "register.csv")
        print("CSV again (idempotent)", results["csv_again"])
        async with pool.acquire() as conn:
            await conn.execute("TRUNCATE team_members, teams, volunteer_search, volunteers, outbox")
        results["xlsx"] = await import_end_to_end(pool, relay, xlsx_bytes, "register.xlsx")
        print("XLSX ", results["xlsx"])
        results["search"] = await search_figures(pool, searches, seed)
        results["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        print("search", results["search"])
    finally:
        await relay.stop()
        async with pool.acquire() as conn:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await pool.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([t.name for t in BENCH_TOPICS])
        finally:
            await admin.close()
    out = ROOT / "bench" / "results" / f"roster_import_{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, ensure_ascii=False, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--searches", type=int, default=300)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    asyncio.run(main(a.rows, a.searches, a.seed))
