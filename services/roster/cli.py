"""``muster roster …``: load divisions, import registers, seed a synthetic roster, republish, stats, tokens.

Every command migrates the roster database first and loads the bundled divisions when the units
table is empty. Events go to the outbox in the same transaction as the change; afterwards the
command publishes the outbox itself when no roster service holds the relay lock (otherwise the
running service's relay publishes them), so ``--no-publish`` only leaves them for the service.

Exit codes: 0 done, 1 bad input (the import's report lists every bad row; nothing was written),
2 usage errors (typer).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer

__all__ = ["app"]

app = typer.Typer(help="The roster: units, volunteers, teams, imports, synthetic data.", no_args_is_help=True)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _settings() -> Any:
    from shared.settings import RosterSettings

    return RosterSettings()


async def _open(settings: Any) -> Any:
    from services.roster.divisions import load_if_empty
    from shared.db import create_pool, upgrade_async

    await upgrade_async("roster", settings.dsn)
    pool = await create_pool(settings.dsn, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await load_if_empty(conn, settings.divisions_file)
    return pool


async def _publish(pool: Any, settings: Any) -> int | None:
    """Publish the outbox when no service relay holds the lock; None when a relay is running."""
    from shared.outbox import OutboxRelay, release_relay_lock, try_relay_lock

    async with pool.acquire() as conn:
        if not await try_relay_lock(conn):
            return None
        relay = OutboxRelay(pool, settings.kafka_bootstrap_servers, name="roster-cli",
                            batch_size=max(settings.outbox_batch_size, 2000))
        try:
            return await relay.publish_pending()
        finally:
            await relay.stop()
            await release_relay_lock(conn)


def _run(coro: Any) -> Any:
    from shared.logging import configure_logging

    configure_logging(level="WARNING", service="roster-cli")
    return asyncio.run(coro)


def _published(n: int | None) -> str:
    return "events left for the running roster service's relay" if n is None else f"{n} events published"


@app.command("load-divisions")
def load_divisions(file: Path | None = typer.Argument(None, help="Divisions CSV (default: bundled Shaoxing file).")) -> None:  # noqa: B008 - typer idiom
    """Load or update the organisation units from a divisions file (columns as in data/SOURCE.md)."""
    from services.roster.divisions import load_file
    from services.roster.domain.units import DivisionsFileError

    async def go() -> int:
        settings = _settings()
        pool = await _open(settings)
        try:
            async with pool.acquire() as conn:
                return await load_file(conn, file)
        finally:
            await pool.close()

    try:
        n = _run(go())
    except (DivisionsFileError, OSError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{n} units loaded")


@app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV or XLSX register."),  # noqa: B008 - typer idiom
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and count; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    publish: bool = typer.Option(True, help="Publish the outbox when no service relay runs."),
) -> None:
    """Import a register: all or nothing; every bad row is listed; exits 1 when any row is bad."""
    from services.roster import commands
    from services.roster.adapters.spreadsheet import SpreadsheetError

    async def go() -> tuple[Any, int | None]:
        settings = _settings()
        pool = await _open(settings)
        try:
            async with pool.acquire() as conn:
                report = await commands.import_file(conn, file.read_bytes(), file.name, dry_run=dry_run)
            sent = await _publish(pool, settings) if publish and report.committed else 0
            return report, sent
        finally:
            await pool.close()

    try:
        report, sent = _run(go())
    except SpreadsheetError as exc:
        typer.echo(f"{file}: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2, default=str))
    else:
        typer.echo(f"{file.name}: {report.rows} rows, {len(report.errors)} errors")
        for e in report.errors:
            hint = f" (did you mean {e.suggestion}?)" if e.suggestion else ""
            shown = f" [{e.value}]" if e.value else ""
            typer.echo(f"  row {e.row}, {e.column}{shown}: {e.reason}{hint}", err=True)
        if report.ignored_columns:
            typer.echo(f"  ignored columns (not kept): {', '.join(report.ignored_columns)}")
        verb = "would be" if dry_run or not report.ok else "were"
        typer.echo(f"  {report.created} new, {report.updated} updated, {report.unchanged} unchanged {verb} imported"
                   if report.ok else "  nothing imported")
        if report.committed:
            typer.echo(f"  {_published(sent)}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("seed")
def seed(
    volunteers: int = typer.Option(20_000, min=0, help="How many volunteers."),
    teams: int = typer.Option(150, min=0, help="How many teams."),
    seed_value: int = typer.Option(1, "--seed", help="Random seed (same seed, same roster)."),
    replace: bool = typer.Option(False, "--replace", help="Delete an earlier seeded roster first (tombstones sent)."),
    publish: bool = typer.Option(True, help="Publish the outbox when no service relay runs."),
) -> None:
    """Write a deterministic synthetic roster over the real divisions (mobiles from the test block +86 19990…)."""
    from services.roster import commands
    from services.roster.domain.seed import TEST_MOBILE_PREFIX, synthesize

    async def go() -> tuple[dict[str, int], int | None]:
        settings = _settings()
        pool = await _open(settings)
        try:
            async with pool.acquire() as conn:
                units = await commands.load_directory(conn)
                today = datetime.now(SHANGHAI).date()
                result = synthesize(units, volunteers=volunteers, teams=teams, seed=seed_value, today=today)
                counts = await commands.seed_roster(conn, result.volunteers, result.teams,
                                                    mobile_prefix=TEST_MOBILE_PREFIX, replace_existing=replace)
            sent = await _publish(pool, settings) if publish else 0
            return counts, sent
        finally:
            await pool.close()

    try:
        counts, sent = _run(go())
    except commands.Conflict as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"seeded {counts['volunteers']} volunteers and {counts['teams']} teams "
               f"(replaced {counts['removed']}); {_published(sent)}")


@app.command("republish")
def republish(publish: bool = typer.Option(True, help="Publish the outbox when no service relay runs.")) -> None:
    """Re-emit every snapshot (profiles, contacts, teams; tombstones for retired ones)."""
    from services.roster import commands

    async def go() -> tuple[dict[str, int], int | None]:
        settings = _settings()
        pool = await _open(settings)
        try:
            async with pool.acquire() as conn:
                counts = await commands.republish(conn)
            sent = await _publish(pool, settings) if publish else 0
            return counts, sent
        finally:
            await pool.close()

    counts, sent = _run(go())
    typer.echo(f"republished {counts['volunteers']} volunteers, {counts['teams']} teams, "
               f"{counts['tombstones']} tombstones; {_published(sent)}")


@app.command("stats")
def stats() -> None:
    """Active volunteers by district/county and skill, and teams by type."""
    from services.roster.adapters import repository as repo

    async def go() -> tuple[list[Any], list[Any]]:
        settings = _settings()
        pool = await _open(settings)
        try:
            async with pool.acquire() as conn:
                rows = await repo.counts_by(conn)
                teams = await conn.fetch("SELECT left(unit_code, 6) AS county, team_type, count(*) AS n FROM teams "
                                         "WHERE active GROUP BY 1, 2 ORDER BY 1, 2")
                return rows, teams
        finally:
            await pool.close()

    rows, teams = _run(go())
    for r in rows:
        if r["skill"] is None:
            typer.echo(f"{r['county']} {r['county_name']}: {r['n']} volunteers")
        else:
            typer.echo(f"    {r['skill']:<14} {r['n']}")
    for t in teams:
        typer.echo(f"team {t['county']} {t['team_type']:<10} {t['n']}")


token_app = typer.Typer(help="Named administrator tokens (role, unit scope; every change audited under the name).",
                        no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    name: str = typer.Argument(..., help="Who holds it, e.g. 'keqiao-registrar-wang'."),
    role: str = typer.Option("registrar", help="city_admin | registrar."),
    unit: str = typer.Option(..., help="Unit code of the scope (the city's code for a city_admin)."),
) -> None:
    """Create a token and print it once (only its hash is kept); exits 1 on a bad role, unit or name."""
    import asyncpg

    from services.roster import admins

    async def go() -> str:
        settings = _settings()
        pool = await _open(settings)
        try:
            async with pool.acquire() as conn:
                return await admins.create_token(conn, name=name, role=role, unit_code=unit)
        finally:
            await pool.close()

    try:
        typer.echo(_run(go()))
    except (ValueError, asyncpg.UniqueViolationError) as exc:
        typer.echo(f"token not created: {exc}", err=True)
        raise typer.Exit(1) from exc


@token_app.command("list")
def token_list() -> None:
    """Every token: name, role, unit, created, revoked (never the secret)."""
    from services.roster import admins

    async def go() -> list[dict[str, Any]]:
        settings = _settings()
        pool = await _open(settings)
        try:
            async with pool.acquire() as conn:
                return await admins.list_tokens(conn)
        finally:
            await pool.close()

    for t in _run(go()):
        revoked = f" revoked {t['revoked_at']:%Y-%m-%d %H:%M}" if t["revoked_at"] else ""
        typer.echo(f"{t['name']}  {t['role']}  {t['unit_code']}  created {t['created_at']:%Y-%m-%d %H:%M}{revoked}")


@token_app.command("revoke")
def token_revoke(name: str = typer.Argument(..., help="The token's name.")) -> None:
    """Revoke a token at once (audited); exits 1 when no live token has the name."""
    from services.roster import admins

    async def go() -> bool:
        settings = _settings()
        pool = await _open(settings)
        try:
            async with pool.acquire() as conn:
                return await admins.revoke_token(conn, name)
        finally:
            await pool.close()

    if not _run(go()):
        typer.echo(f"no live token called {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {name}")
