"""Operator tokens on the real database: ``muster incident token list | revoke``; a revoked token gets 401."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest
from typer.testing import CliRunner

from muster.cli import app as muster
from services.dispatch.auth import hash_token

from .conftest import DispatchDb, running_app


@pytest.fixture
async def client(dispatch_db: DispatchDb) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(dispatch_db, consumers=(), tick=0.2) as c:
        yield c


async def test_list_and_revoke_tokens(dispatch_db: DispatchDb, client: httpx.AsyncClient) -> None:
    db = dispatch_db
    env = {"DISPATCH_DATABASE_URL": db.dsn}
    runner = CliRunner()

    def cli(*args: str, ok: bool = True) -> str:
        result = runner.invoke(muster, ["incident", "token", *args], env=env)
        assert (result.exit_code == 0) is ok, (args, result.output)
        return result.stdout if ok else result.output

    name, other = f"值班员{uuid4().hex[:6]}", f"备班{uuid4().hex[:6]}"
    first = (await asyncio.to_thread(cli, "create", "--name", name, "--role", "county", "--unit", "330624")).strip()
    second = (await asyncio.to_thread(cli, "create", "--name", name, "--role", "town", "--unit", "330624001")).strip()
    kept = (await asyncio.to_thread(cli, "create", "--name", other, "--role", "city", "--unit", "330600")).strip()

    def auth(tok: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tok}"}

    for tok in (first, second, kept):
        assert (await client.get("/incidents", headers=auth(tok))).status_code == 200

    listed = await asyncio.to_thread(cli, "list")
    for tok in (first, second, kept):
        assert tok not in listed and hash_token(tok) not in listed  # neither the token nor its full hash
    rows = {r["id"]: r for r in json.loads(await asyncio.to_thread(cli, "list", "--json"))}
    mine = [r for r in rows.values() if r["name"] == name]
    assert sorted((r["role"], r["unit_code"]) for r in mine) == [("county", "330624"), ("town", "330624001")]
    assert all(r["created_at"] and r["revoked_at"] is None for r in mine)
    assert hash_token(first)[:12] in rows and hash_token(first)[:12] in listed

    out = await asyncio.to_thread(cli, "revoke", "--name", name)
    assert out.count("revoked") == 2 and name in out
    assert (await client.get("/incidents", headers=auth(first))).status_code == 401
    assert (await client.get("/incidents", headers=auth(second))).status_code == 401
    assert (await client.get("/incidents", headers=auth(kept))).status_code == 200
    rows = {r["id"]: r for r in json.loads(await asyncio.to_thread(cli, "list", "--json"))}
    assert rows[hash_token(first)[:12]]["revoked_at"] is not None
    assert rows[hash_token(kept)[:12]]["revoked_at"] is None

    # again: nothing left to revoke; by id: exactly that token
    assert "no valid token" in await asyncio.to_thread(cli, "revoke", "--name", name, ok=False)
    await asyncio.to_thread(cli, "revoke", "--id", hash_token(kept)[:12])
    assert (await client.get("/incidents", headers=auth(kept))).status_code == 401
    assert "exactly one" in await asyncio.to_thread(cli, "revoke", ok=False)

    async with db.pool.acquire() as conn:
        audited = await conn.fetch(
            "SELECT before, after FROM audit_log WHERE action = 'operator.token_revoke' AND before->>'name' = ANY($1)",
            [name, other],
        )
    assert sorted(a["before"]["id"] for a in audited) == sorted(hash_token(t)[:12] for t in (first, second, kept))
    assert all(a["after"]["revoked_at"] for a in audited)
