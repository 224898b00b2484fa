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
