"""The board's change feed: a PostgreSQL NOTIFY on channel :data:`CHANNEL` with the incident id.

Issued inside the transaction that changes an incident's board (PostgreSQL delivers it at commit, and
not at all on rollback; identical payloads in one transaction are delivered once), so a listener never
sees a change that was not committed. :mod:`services.dispatch.console.live` holds one listener per
dispatch process and fans the boards out to the console's viewers.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

import asyncpg

__all__ = ["CHANNEL", "board_changed"]

#: LISTEN/NOTIFY channel; the payload is the incident id (text).
CHANNEL = "dispatch_board"


async def board_changed(conn: asyncpg.Connection, incident_ids: Iterable[UUID]) -> None:
    """Tell the listeners (at commit) that the boards of ``incident_ids`` changed; nothing for none."""
    ids = sorted(set(incident_ids))
    if ids:
        await conn.execute("SELECT pg_notify($1, i::text) FROM unnest($2::uuid[]) AS i", CHANNEL, ids)
