"""The board's and call-out list's rows: UUIDs as text, dates and times as ISO 8601, everything else as it is."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from asyncpg.pgproto.pgproto import UUID as PgUUID

from services.dispatch.queries import _iso, _row


def _reference(r: dict[str, Any]) -> dict[str, Any]:  # the conversion as first written
    return {k: (str(v) if isinstance(v, UUID) else _iso(v)) for k, v in r.items()}


def test_row_conversion_per_type() -> None:
    rows = [
        {"id": uuid4(), "pg": PgUUID(uuid4().bytes), "at": datetime(2026, 7, 1, 4, 0, 1, 5, tzinfo=UTC),
         "day": date(2026, 7, 1), "n": 3, "x": 2.5, "ok": True, "none": None, "text": "鉴湖", "d": Decimal("1.50"),
         "j": {"a": [1, 2]}, "l": ["first_aid"]},
        {"id": None, "pg": None, "at": None, "day": None, "n": None, "x": None, "ok": False, "none": None, "text": "",
         "d": None, "j": None, "l": []},
    ]
    for r in rows * 2:  # the second time through, the converters are the learnt ones
        assert _row(r) == _reference(r)  # type: ignore[arg-type]
    assert _row(rows[0])["at"] == "2026-07-01T04:00:01.000005+00:00"  # type: ignore[arg-type]
    assert isinstance(_row(rows[0])["pg"], str)  # type: ignore[arg-type]
