"""``muster incident …`` against a dispatch service served over real HTTP, on the real database."""

from __future__ import annotations

import asyncio
import re
import uuid

from typer.testing import CliRunner

from muster.cli import app as muster
from services.dispatch.units import units

from .conftest import DispatchDb, a_town_with_villages, add_volunteers, served_app


async def test_incident_commands(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    town, villages = a_town_with_villages(1, index=40)
    await add_volunteers(db, villages[0], 2)
    lat, lon = units().centres[town]
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> str:
        result = runner.invoke(muster, list(args), env=env)
        assert result.exit_code == 0, (args, result.output)
        return result.stdout  # stderr carries the service's logs

    def fails(*args: str, env: dict[str, str]) -> str:
        result = runner.invoke(muster, list(args), env=env)
        assert result.exit_code != 0, (args, result.output)
        return result.output

    bad = await asyncio.to_thread(
        runner.invoke, muster, ["incident", "token", "create", "--name", "x", "--role", "county", "--unit", town],
        env={"DISPATCH_DATABASE_URL": db.dsn})
    assert bad.exit_code == 2 and "must be a county code" in bad.output
    tok = await asyncio.to_thread(run, "incident", "token", "create", "--name", "值班员", "--role", "county",
                                  "--unit", town[:6], env={"DISPATCH_DATABASE_URL": db.dsn})
    token = tok.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", token)

    async with served_app(db) as url:
        env = {"DISPATCH_URL": url, "MUSTER_TOKEN": token}
        out = await asyncio.to_thread(
            run, "incident", "open", "--title", "命令行测试", "--kind", "fall", "--lat", str(lat), "--lon", str(lon),
            "--unit", villages[0], "--need", "first_aid:1", "--mode", "drill", "--deadline", "600", env=env)
        incident_id = out.split()[0]
        assert "first_aid: 0/1 filled" in out and "wave_called" in out
        out = await asyncio.to_thread(run, "incident", "show", incident_id, "--callouts", env=env)
        assert out.count("requested") >= 2  # two call-outs listed (factor 2)
        out = await asyncio.to_thread(run, "incident", "list", env=env)
        assert incident_id in out and "命令行测试" in out
        err = await asyncio.to_thread(fails, "incident", "open", "--title", "t", "--kind", "k", "--lat", str(lat),
                                      "--lon", str(lon), "--unit", villages[0], "--need", "juggling:1", env=env)
        assert "422" in err and "unknown skill" in err
        out = await asyncio.to_thread(run, "incident", "stand-down", incident_id, env=env)
        assert "stood down 2 call-out(s)" in out
        out = await asyncio.to_thread(run, "incident", "close", incident_id, "--outcome", "测试结束", env=env)
        assert "closed" in out


async def test_meeting_point_and_broadcast_commands(dispatch_db: DispatchDb) -> None:
    db = dispatch_db
    town, villages = a_town_with_villages(1, index=41)
    await add_volunteers(db, villages[0], 2)
    lat, lon = units().centres[town]
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> str:
        result = runner.invoke(muster, list(args), env=env)
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    bid = str(uuid.uuid4())
    tok = await asyncio.to_thread(run, "incident", "token", "create", "--name", "集合点值班员", "--role", "county",
                                  "--unit", town[:6], env={"DISPATCH_DATABASE_URL": db.dsn})
    async with served_app(db) as url:
        env = {"DISPATCH_URL": url, "MUSTER_TOKEN": tok.strip()}
        out = await asyncio.to_thread(
            run, "incident", "open", "--title", "集合点命令", "--kind", "fall", "--lat", str(lat), "--lon", str(lon),
            "--unit", villages[0], "--need", "first_aid:1", "--mode", "drill", "--deadline", "600",
            "--meeting-point", "村口大樟树", "--callback", "0575-85123456", env=env)
        incident_id = out.split()[0]
        assert "meeting point: 村口大樟树; callback 0575-85123456" in out
        out = await asyncio.to_thread(run, "incident", "meeting-point", incident_id, "--text", "南门停车场", env=env)
        assert "meeting point: 南门停车场; callback 0575-85123456" in out
        out = await asyncio.to_thread(run, "incident", "broadcast", incident_id, "--text", "集合点改到南门",
                                      "--audience", "called", "--broadcast-id", bid,
                                      env=env)
        assert "2 recipient(s)" in out
        out = await asyncio.to_thread(run, "incident", "broadcast", incident_id, "--text", "集合点改到南门",
                                      "--audience", "called", "--broadcast-id", bid,
                                      env=env)
        assert "already sent; nothing more" in out
        await asyncio.to_thread(run, "incident", "close", incident_id, "--outcome", "测试结束", env=env)
