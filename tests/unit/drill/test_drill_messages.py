"""Which simulator messages belong to a drill (its phones answer only those, its counts cover only those)."""

from __future__ import annotations

import pytest

from muster.drill.runner import is_drill_message

TITLES = ["府山公园心脏骤停"]


@pytest.mark.parametrize(("text", "ours"), [
    ("【红十字志愿者】演练：府山公园心脏骤停，需救护员，请到府山街道。回复1接受，2拒绝", True),
    ("演练：府山公园心…，需救护员，请到府山街道。回复1接受，2拒绝", True),  # SMS shortened the title
    ("【红十字志愿者】演练：提醒：府山公园心脏骤停仍需救护员，请到府山街道。回复1接受，2拒绝", True),
    ("【红十字志愿者】府山公园心脏骤停，需救护员，请到府山街道。回复1接受，2拒绝", False),  # live: no 演练
    ("【红十字志愿者】演练：鉴湖溺水，需救护员，请到鉴湖村。回复1接受，2拒绝", False),  # another drill's incident
])
def test_is_drill_message(text: str, ours: bool) -> None:
    assert is_drill_message(text, TITLES) is ours


def test_an_engaged_elsewhere_answer_is_not_a_duplicate_stand_down() -> None:
    """A volunteer assigned in one drill incident who accepts another is answered "no need to come": a
    stand-down message for a call-out that is declined, not cancelled (issue #14); with a third call-out
    of theirs stood down (filled), two stand-downs for two told-not-to-come call-outs."""
    from muster.drill.integrity import BoardCallOut, PhoneMessage, integrity

    rows = [{"callout_id": "c1", "volunteer_id": "v1", "state": "arrived", "replies": [{}, {}]},
            {"callout_id": "c2", "volunteer_id": "v1", "state": "declined", "cancel_reason": "engaged_elsewhere",
             "replies": [{}]},
            {"callout_id": "c3", "volunteer_id": "v1", "state": "cancelled", "cancel_reason": "filled", "replies": []}]
    messages = [PhoneMessage("v1", "callout", "a"), PhoneMessage("v1", "callout", "b"),
                PhoneMessage("v1", "callout", "e"), PhoneMessage("v1", "assigned", "c"),
                PhoneMessage("v1", "stand_down", "d"), PhoneMessage("v1", "stand_down", "f")]
    result = integrity(messages, [], [BoardCallOut.from_board(r) for r in rows], [])
    assert result["duplicate_stand_downs"] == 0
    plain = {**rows[1], "cancel_reason": None}
    assert integrity(messages, [], [BoardCallOut.from_board(r) for r in (rows[0], plain, rows[2])], [])[
        "duplicate_stand_downs"] == 1
