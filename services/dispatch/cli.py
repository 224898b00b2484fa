"""``muster incident …``: the operator's commands for dispatch.

``open | show | list | close | stand-down | add | remove`` talk to the running dispatch service over HTTP (``--url``, default
``DISPATCH_URL`` or ``http://127.0.0.1:8102``) with the operator's bearer token (``--token`` or
``MUSTER_TOKEN``). ``token create | list | revoke`` work straight on dispatch's database (settings
from ``DISPATCH_*`` / the stack's env file): ``create`` prints a new token once, ``list`` shows every
token's id, name, role, unit, created and revoked times (never the token), ``revoke --name NAME`` or
``--id ID`` revokes (audited; a revoked token gets 401).

Times are shown in Asia/Shanghai.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import typer

if TYPE_CHECKING:
    import asyncpg

__all__ = ["app"]

T = TypeVar("T")

app = typer.Typer(help="Incidents: open, show, list, close; operator tokens.", no_args_is_help=True)
token_app = typer.Typer(help="Operator bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")

SHANGHAI = ZoneInfo("Asia/Shanghai")
UrlOpt = typer.Option(None, "--url", help="Dispatch base URL (default $DISPATCH_URL or http://127.0.0.1:8102).")
TokenOpt = typer.Option(None, "--token", help="Bearer token (default $MUSTER_TOKEN).")
JsonOpt = typer.Option(False, "--json", help="Print the raw JSON.")


def _client(url: str | None, token: str | None) -> httpx.Client:
    base = url or os.environ.get("DISPATCH_URL", "http://127.0.0.1:8102")
    tok = token or os.environ.get("MUSTER_TOKEN")
    if not tok:
        typer.echo("no token: pass --token or set MUSTER_TOKEN (create one with `muster incident token create`)",
                   err=True)
        raise typer.Exit(2)
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tok}"}, timeout=30)


def _call(client: httpx.Client, method: str, path: str, **kw: Any) -> Any:
    try:
        r = client.request(method, path, **kw)
    except httpx.HTTPError as exc:
        typer.echo(f"dispatch is not reachable at {client.base_url}: {exc}", err=True)
        raise typer.Exit(1) from exc
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        typer.echo(f"error {r.status_code}: {detail}", err=True)
        raise typer.Exit(1)
    return r.json()


def _local(ts: str | None) -> str:
    if not ts:
        return "-"
    return datetime.fromisoformat(ts).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def parse_need(text: str) -> dict[str, Any]:
    """``first_aid:2`` → skill requirement; ``team:water:1`` → team requirement.

    Raises:
        typer.BadParameter: not in one of those forms.

    """
    parts = text.split(":")
    try:
        if len(parts) == 2:
            return {"skill": parts[0], "count": int(parts[1])}
        if len(parts) == 3 and parts[0] == "team":
            return {"team_type": parts[1], "count": int(parts[2])}
    except ValueError:
        pass
    raise typer.BadParameter(f"{text!r}: use SKILL:COUNT or team:TYPE:COUNT")


def _print_board(b: dict[str, Any]) -> None:
    i = b["incident"]
    typer.echo(f"{i['incident_id']}  {i['title']}  [{i['mode']}/{i['status']}]  {i['place']}")
    if i.get("meeting_point") or i.get("callback_phone"):
        typer.echo(f"  meeting point: {i.get('meeting_point') or i['place']}; callback {i.get('callback_phone') or '-'}")
    typer.echo(f"  opened {_local(i['opened_at'])} by {i['opened_by']}; level {b['current_level']}; "
               f"next deadline {_local(b['next_deadline'])}")
    for r in b["requirements"]:
        what = r["skill"] or f"team:{r['team_type']}"
        typer.echo(f"  - {what}: {r['filled']}/{r['count']} filled, {r['outstanding']} outstanding, "
                   f"level {r['level']}, wave {r['wave']}, {r['status']}")
    typer.echo(f"  call-outs: {json.dumps(b['callouts_by_state'], ensure_ascii=False)}")
    for t in b["timeline"][-15:]:
        typer.echo(f"    {_local(t['at'])}  {t['kind']}  {json.dumps(t['detail'], ensure_ascii=False)}")


@app.command("open")
def open_cmd(
    title: str = typer.Option(..., help="Short title, e.g. 柯桥区鉴湖溺水."),
    kind: str = typer.Option(..., help="Kind, e.g. drowning."),
    lat: float = typer.Option(..., help="WGS84 latitude."),
    lon: float = typer.Option(..., help="WGS84 longitude."),
    unit: str = typer.Option(..., help="Village/community code (12 digits) the point lies in."),
    need: list[str] = typer.Option(..., help="SKILL:COUNT or team:TYPE:COUNT; repeat for several."),  # noqa: B008
    mode: str = typer.Option("emergency", help="emergency | event | drill."),
    start_level: str = typer.Option("village", help="village | town | county | city."),
    max_level: str | None = typer.Option(
        None, help="Highest level to escalate to (default: your token's scope level; above it is refused)."
    ),
    factor: float = typer.Option(2.0, help="Over-call factor."),
    deadline: int | None = typer.Option(None, help="Wave deadline, seconds (required for drills)."),
    meeting_point: str | None = typer.Option(None, help="Where to gather (default: the incident's place)."),
    meeting_lat: float | None = typer.Option(None, help="Meeting point, WGS84 latitude (default: --lat)."),
    meeting_lon: float | None = typer.Option(None, help="Meeting point, WGS84 longitude (default: --lon)."),
    callback: str | None = typer.Option(None, help="Callback number in the message (landline, 400 or 95)."),
    url: str | None = UrlOpt, token: str | None = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """Open an incident and call its first waves."""
    body = {"kind": kind, "title": title, "lat": lat, "lon": lon, "unit_code": unit, "mode": mode,
            "start_level": start_level, "requirements": [parse_need(n) for n in need],
            "policy": {"over_call_factor": factor, "wave_deadline_seconds": deadline, "max_level": max_level},
            "meeting_point": meeting_point, "meeting_lat": meeting_lat, "meeting_lon": meeting_lon,
            "callback_phone": callback}
    with _client(url, token) as c:
        b = _call(c, "POST", "/incidents", json=body)
    typer.echo(json.dumps(b, ensure_ascii=False, indent=1)) if as_json else _print_board(b)


@app.command("show")
def show_cmd(incident_id: str, url: str | None = UrlOpt, token: str | None = TokenOpt, as_json: bool = JsonOpt,
             callouts: bool = typer.Option(False, "--callouts", help="Also list every call-out and its replies.")) -> None:
    """Show an incident's board."""
    with _client(url, token) as c:
        b = _call(c, "GET", f"/incidents/{incident_id}")
        calls = _call(c, "GET", f"/incidents/{incident_id}/callouts") if callouts else None
    if as_json:
        typer.echo(json.dumps({"board": b, "callouts": calls}, ensure_ascii=False, indent=1))
        return
    _print_board(b)
    for co in calls or []:
        typer.echo(f"  {co['volunteer_id']}  {co['state']:<9} L={co['level']:<7} wave {co['wave']} "
                   f"code {co['reply_code']}  replies: {[r['intent'] + '/' + r['note'] for r in co['replies']]}")


@app.command("list")
def list_cmd(url: str | None = UrlOpt, token: str | None = TokenOpt, as_json: bool = JsonOpt) -> None:
    """List incidents inside your unit, newest first."""
    with _client(url, token) as c:
        rows = _call(c, "GET", "/incidents")
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    for r in rows:
        typer.echo(f"{r['incident_id']}  {_local(r['opened_at'])}  {r['status']:<6} {r['mode']:<9} "
                   f"{r['filled']}/{r['needed']}  {r['title']}")


@app.command("close")
def close_cmd(incident_id: str, outcome: str = typer.Option(..., help="What happened, for the record."),
              url: str | None = UrlOpt, token: str | None = TokenOpt) -> None:
    """Close an incident with an outcome (stands down every open call-out)."""
    with _client(url, token) as c:
        b = _call(c, "POST", f"/incidents/{incident_id}/close", json={"outcome": outcome})
    _print_board(b)


@app.command("meeting-point")
def meeting_point_cmd(
    incident_id: str,
    text: str | None = typer.Option(None, "--text", help="New meeting point, address or landmark."),
    lat: float | None = typer.Option(None, help="New meeting point, WGS84 latitude."),
    lon: float | None = typer.Option(None, help="New meeting point, WGS84 longitude."),
    callback: str | None = typer.Option(None, help="New callback number (landline, 400 or 95)."),
    url: str | None = UrlOpt, token: str | None = TokenOpt,
) -> None:
    """Change an incident's meeting point and/or callback number (later call-outs carry them)."""
    with _client(url, token) as c:
        b = _call(c, "PUT", f"/incidents/{incident_id}/meeting-point",
                  json={"meeting_point": text, "meeting_lat": lat, "meeting_lon": lon, "callback_phone": callback})
    _print_board(b)


@app.command("broadcast")
def broadcast_cmd(
    incident_id: str,
    text: str = typer.Option(..., "--text", help="What to tell them, e.g. 集合点改到南门 (no link)."),
    audience: str = typer.Option("assigned", help="assigned | called (everyone not declined or stood down)."),
    broadcast_id: str | None = typer.Option(None, help="Idempotency key; the same id again sends nothing more."),
    url: str | None = UrlOpt, token: str | None = TokenOpt,
) -> None:
    """Send a text to an incident's assigned (or still called) people, once each."""
    with _client(url, token) as c:
        r = _call(c, "POST", f"/incidents/{incident_id}/broadcasts",
                  json={"text": text, "audience": audience, "broadcast_id": broadcast_id})
    typer.echo(f"broadcast {r['broadcast_id']}: {r['recipients']} recipient(s)"
               + ("" if r["created"] else " (already sent; nothing more)"))


@app.command("stand-down")
def stand_down_cmd(incident_id: str, url: str | None = UrlOpt, token: str | None = TokenOpt) -> None:
    """Stand everyone down (every open call-out cancelled; no more waves)."""
    with _client(url, token) as c:
        r = _call(c, "POST", f"/incidents/{incident_id}/stand-down")
    typer.echo(f"stood down {r['stood_down']} call-out(s)")


@app.command("add")
def add_cmd(incident_id: str, volunteer: str = typer.Option(..., help="Volunteer id."),
            requirement: str = typer.Option(..., help="Requirement id (see `show --json`)."),
            url: str | None = UrlOpt, token: str | None = TokenOpt) -> None:
    """Call one volunteer by hand for a requirement."""
    with _client(url, token) as c:
        r = _call(c, "POST", f"/incidents/{incident_id}/callouts",
                  json={"volunteer_id": volunteer, "requirement_id": requirement})
    typer.echo(f"called: {r['callout_id']}")


@app.command("remove")
def remove_cmd(incident_id: str, callout_id: str, url: str | None = UrlOpt, token: str | None = TokenOpt) -> None:
    """Stand one volunteer down by hand (their place reopens if they were assigned)."""
    with _client(url, token) as c:
        _call(c, "DELETE", f"/incidents/{incident_id}/callouts/{callout_id}")
    typer.echo(f"stood down: {callout_id}")


def _with_db(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``work(conn)`` (a coroutine function) on a connection to dispatch's database; exit 2 on a DispatchError."""
    from shared.db import create_pool
    from shared.settings import DispatchSettings

    from .errors import DispatchError

    async def run() -> T:
        settings = DispatchSettings()
        pool = await create_pool(settings.dsn, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                return await work(conn)
        finally:
            await pool.close()

    try:
        return asyncio.run(run())
    except DispatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _token_line(t: dict[str, Any]) -> str:
    revoked = f"revoked {_local(t['revoked_at'].isoformat())}" if t["revoked_at"] else "valid"
    return (f"{t['id']}  {t['name']}  {t['role']:<6} {t['unit_code']:<9} "
            f"created {_local(t['created_at'].isoformat())}  {revoked}")


@token_app.command("list")
def token_list(as_json: bool = JsonOpt) -> None:
    """List operator tokens: id, name, role, unit, created, revoked (never the token itself)."""
    from .auth import list_tokens

    rows = _with_db(list_tokens)
    if as_json:
        typer.echo(json.dumps([{**r, "created_at": r["created_at"].isoformat(),
                                "revoked_at": r["revoked_at"] and r["revoked_at"].isoformat()} for r in rows],
                              ensure_ascii=False, indent=1))
        return
    for r in rows:
        typer.echo(_token_line(r))


@token_app.command("revoke")
def token_revoke(
    name: str | None = typer.Option(None, "--name", help="Revoke every valid token of this operator."),
    token_id: str | None = typer.Option(None, "--id", help="Revoke one token by its id (see `token list`)."),
) -> None:
    """Revoke operator tokens (from the next request on they are refused with 401); audited."""
    from .auth import revoke_tokens

    rows = _with_db(lambda conn: revoke_tokens(conn, name=name, token_id=token_id))
    for r in rows:
        typer.echo(_token_line(r))


@token_app.command("create")
def token_create(
    name: str = typer.Option(..., help="Operator's name."),
    role: str = typer.Option(..., help="city | county | town | village | viewer."),
    unit: str = typer.Option(..., "--unit", help="Unit code of the scope (330600, a county, a town, a village)."),
) -> None:
    """Create an operator token and print it (only its hash is stored)."""
    from .auth import create_token

    typer.echo(_with_db(lambda conn: create_token(conn, name=name, role=role, unit_code=unit)))
