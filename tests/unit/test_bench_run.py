"""bench/run.py without I/O: reading the other benchmarks' results by interface, ratios, "not run" rows."""

from __future__ import annotations

from bench.run import Plan, Row, _by_key, _guarded, _module_run, _rows, render

_WAY = {"wall_seconds": 0.5, "p50_ms": 20.0, "p99_ms": 40.0, "max_ms": 41.0}
_KAFKA = {n: {**_WAY, "method": "batch", "send": {**_WAY, "wall_seconds": 0.9}, "batch": _WAY} for n in (100, 1_000)}
_PG = {n: {"wall_seconds": 0.1, "copy_seconds": 0.1, "executemany_seconds": 0.3} for n in (100, 1_000)}
_RT = {100.0: {"p50_ms": 5.0, "p99_ms": 10.0, "count": 500}}
_PLAN = Plan(sizes=(100,), rates=(100,))


def _row(rows: list[Row], figure: str) -> Row:
    (row,) = [r for r in rows if r.figure == figure]
    return row


def test_by_key_reads_a_list_a_wrapped_list_and_a_dict_keyed_by_size() -> None:
    a = [{"n": 100, "wall_seconds": 1.0}]
    b = {"sizes": [{"n": 100, "wall_seconds": 2.0}], "note": "x"}
    c = {"100": {"wall_seconds": 3.0}}
    d = {"rates": [{"rate_per_s": 100.0, "p50_ms": 7.0}], "highest_rate_held": 100.0}

    assert _by_key(a, ("n",))[100.0]["wall_seconds"] == 1.0
    assert _by_key(b, ("n",))[100.0]["wall_seconds"] == 2.0
    assert _by_key(c, ("n",))[100.0]["wall_seconds"] == 3.0
    assert _by_key(d, ("rate", "rate_per_s"))[100.0]["p50_ms"] == 7.0


def test_fanout_and_reply_figures_are_set_against_their_floors() -> None:
    fanout = {"sizes": [{"n": 100, "wall_seconds": 1.2, "p50_ms": 300.0, "p99_ms": 900.0, "duplicates": 0,
                         "missing": 2}]}
    reply = {"rates": [{"rate": 100, "p50_ms": 50.0, "p99_ms": 200.0, "lag_grew": False, "sent": 500, "seen": 498}],
             "highest_rate_held": 100}

    rows = _rows(_PLAN, _KAFKA, _PG, _RT, None, "not run: skipped", fanout, None, reply, None)

    wall = _row(rows, "fan-out N=100: wall time")
    assert (wall.value, wall.floor) == (1.2, 0.6)  # pg 0.1 s + kafka 0.5 s
    assert round(wall.ratio or 0, 6) == 2.0
    assert wall.note == "duplicates 0, missing 2"
    p50 = _row(rows, "fan-out N=100: p50 per message")
    assert (p50.value, p50.floor) == (300.0, 120.0)  # pg 100 ms + kafka p50 20 ms
    r99 = _row(rows, "reply at 100/s: p99")
    assert (r99.value, r99.floor, r99.ratio) == (200.0, 10.0, 20.0)
    assert r99.note == "lag grew: no, 498 of 500 seen"
    assert _row(rows, "reply path: highest rate held").value == 100.0


def test_missing_benchmarks_give_not_run_rows_with_the_floor_still_shown() -> None:
    rows = _rows(_PLAN, _KAFKA, _PG, _RT, None, "not run: skipped", None, "not run: bench.fanout not available",
                 None, "not run: ValueError: boom")

    wall = _row(rows, "fan-out N=100: wall time")
    assert wall.value is None and wall.ratio is None and wall.floor == 0.6
    assert wall.note == "not run: bench.fanout not available"
    assert _row(rows, "reply at 100/s: p50").note == "not run: ValueError: boom"
    table = render(rows, {"cores": 2, "commit": "abc", "loadavg_1_5_15": [1.0, 2.0, 3.0]})
    assert "| fan-out N=100: wall time | not run: bench.fanout not available | 0.600 s | — |" in table


def test_a_size_missing_from_the_fanout_result_is_named() -> None:
    rows = _rows(_PLAN, _KAFKA, _PG, _RT, None, None, {"sizes": [{"n": 1000, "wall_seconds": 9.0}]}, None,
                 None, "not run: skipped")

    assert _row(rows, "fan-out N=100: wall time").note.startswith("not run: no figures for N=100")


async def test_a_raising_or_missing_module_is_reported_not_raised() -> None:
    async def boom() -> None:
        raise RuntimeError("stack not up")

    result, note = await _guarded("x", boom)

    assert result is None
    assert note == "not run: RuntimeError: stack not up"
    missing = _module_run("no_such_benchmark_module")
    assert isinstance(missing, str) and missing.startswith("not run: bench.no_such_benchmark_module not available")


def test_a_size_with_an_empty_result_is_a_missing_figure_not_a_dict_in_the_table() -> None:
    # A result keyed by size whose entry is empty ({"100": {}}): the value was `f and _num(...)`, i.e. the
    # empty dict itself, and the table then failed on `{} < 10` (and ratio on `{} / floor`).
    rows = _rows(_PLAN, _KAFKA, _PG, _RT, None, None, {"100": {}}, None,
                 {"100": {}}, None)

    wall = _row(rows, "fan-out N=100: wall time")
    reply = _row(rows, "reply at 100/s: p50")
    assert wall.value is None and wall.ratio is None and wall.floor == 0.6
    assert reply.value is None and reply.ratio is None
    table = render(rows, {"cores": 2, "commit": "abc", "loadavg_1_5_15": [1.0, 2.0, 3.0]})
    assert "| fan-out N=100: wall time | — | 0.600 s | — |" in table
