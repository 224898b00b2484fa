"""The refusal audit's flood cap (shared.refusals.RefusalCap): rows per minute bounded, the rest summarised."""

from __future__ import annotations

from shared.refusals import Refusal, RefusalCap


def test_the_cap_admits_so_many_a_minute_and_summarises_the_rest_in_the_next() -> None:
    now = [0.0]
    cap = RefusalCap(anonymous_per_minute=3, identified_per_minute=2, clock=lambda: now[0])
    anon = Refusal(None, None, "GET /volunteers", 401, "missing bearer token")
    known = Refusal("alice", "county", "POST /incidents", 403, "outside")
    assert [cap.admit(anon)[0] for _ in range(5)] == [True, True, True, False, False]
    assert [cap.admit(known)[0] for _ in range(3)] == [True, True, False]
    now[0] = 61.0
    admitted, suppressed = cap.admit(anon)
    assert admitted and suppressed == {"anonymous": 2, "identified": 1}
    assert cap.admit(anon) == (True, {})
