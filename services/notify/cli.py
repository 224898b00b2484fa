"""``muster notify …``: what an operator asks of notify: message counts and the replies kept for a person to read.

Reads notify's own database (``NOTIFY_DATABASE_URL``). Times are shown in Asia/Shanghai; senders of
unknown phones are shown masked (138****1234), as they are stored.
"""

from __future__ import annotations

import asyncio
from typing import Any
from zoneinfo import ZoneInfo

import typer

app = typer.Typer(help="Notify: messages and volunteers' replies.", no_args_is_help=True)

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def _fetch(sql: str, *args: Any) -> list[Any]:
    import asyncpg

    from shared.settings import NotifySettings

    conn = await asyncpg.connect(NotifySettings().dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@app.command("status")
def status() -> None:
    """Messages by kind, channel and status (pending, sending, sent, delivered, failed)."""
    rows = asyncio.run(_fetch(
        "SELECT kind, coalesce(channel, '-') AS channel, status, count(*) AS n FROM messages "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    ))
    if not rows:
        typer.echo("no messages")
    for r in rows:
        typer.echo(f"{r['kind']:<11} {r['channel']:<7} {r['status']:<10} {r['n']:>8}")


@app.command("replies")
def replies(
    unknown: bool = typer.Option(False, "--unknown", help="Only replies from phones not on the roster."),
    unrecognised: bool = typer.Option(False, "--unrecognised", help="Only replies the parser did not understand."),
    limit: int = typer.Option(50, min=1, max=1000, help="Newest first, at most this many."),
) -> None:
    """The replies kept for an operator: time (Asia/Shanghai), intent, sender (masked when unknown), text."""
    where = []
    if unknown:
        where.append("volunteer_id IS NULL")
    if unrecognised:
        where.append("intent = 'unrecognised'")
    sql = ("SELECT received_at, intent, eta_minutes, volunteer_id, sender_masked, channel, text FROM replies "
           + (("WHERE " + " AND ".join(where)) if where else "") + " ORDER BY received_at DESC LIMIT $1")
    rows = asyncio.run(_fetch(sql, limit))
    if not rows:
        typer.echo("no replies")
    for r in rows:
        who = str(r["volunteer_id"]) if r["volunteer_id"] else f"unknown {r['sender_masked']}"
        eta = f" {r['eta_minutes']}min" if r["eta_minutes"] is not None else ""
        when = r["received_at"].astimezone(SHANGHAI).strftime("%m-%d %H:%M:%S")
        typer.echo(f"{when}  {r['intent']}{eta:<8} {r['channel']:<6} {who:<36}  {r['text']}")
