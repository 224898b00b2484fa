"""Loading the organisation units from a divisions file into the roster's database.

The bundled file is ``services/roster/data/shaoxing_divisions.csv`` (source and columns in
``data/SOURCE.md``); another city's file with the same columns loads the same way
(``muster roster load-divisions FILE`` or ``ROSTER_DIVISIONS_FILE``).

Errors: :class:`services.roster.domain.units.DivisionsFileError` for a bad file, :class:`OSError`
for an unreadable one.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from services.roster import commands
from services.roster.adapters import repository as repo
from services.roster.adapters.spreadsheet import decode_text
from services.roster.domain.units import parse_divisions
from shared.logging import get_logger

__all__ = ["DEFAULT_DIVISIONS_FILE", "load_file", "load_if_empty"]

DEFAULT_DIVISIONS_FILE = Path(__file__).resolve().parent / "data" / "shaoxing_divisions.csv"
log = get_logger(__name__)


async def load_file(conn: asyncpg.Connection, path: Path | None = None) -> int:
    """Insert or update every unit of ``path`` (default: the bundled Shaoxing file); returns the count."""
    path = path or DEFAULT_DIVISIONS_FILE
    units = parse_divisions(decode_text(path.read_bytes()))
    return await commands.load_divisions(conn, units)


async def load_if_empty(conn: asyncpg.Connection, path: Path | None = None) -> int:
    """Load the divisions when the units table is empty (at service start); returns the count loaded."""
    if await repo.count_units(conn):
        return 0
    n = await load_file(conn, path)
    log.info("roster.units_loaded_at_start", count=n, file=str(path or DEFAULT_DIVISIONS_FILE))
    return n
