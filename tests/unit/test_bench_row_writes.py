"""bench.row_writes.spent: rows written between two pg_stat_user_tables snapshots."""

from __future__ import annotations

from bench.row_writes import spent


def test_spent_subtracts_per_table_sums_per_database_and_counts_new_tables_from_zero() -> None:
    before = {"dispatch.public.callouts": (10, 5, 0), "notify.public.outbox": (100, 90, 3),
              "roster.public.volunteers": (7, 0, 0)}
    after = {"dispatch.public.callouts": (20, 15, 0), "notify.public.outbox": (130, 120, 3),
             "roster.public.volunteers": (7, 0, 0), "notify.public.early_receipts": (4, 0, 4)}
    out = spent(before, after)
    assert out["tables"] == {
        "dispatch.public.callouts": {"ins": 10, "upd": 10, "del": 0},
        "notify.public.early_receipts": {"ins": 4, "upd": 0, "del": 4},
        "notify.public.outbox": {"ins": 30, "upd": 30, "del": 0},
    }
    assert out["by_database"] == {"roster": 0, "dispatch": 20, "notify": 68}
    assert out["total"] == 88
