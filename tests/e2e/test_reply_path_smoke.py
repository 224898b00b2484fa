"""The reply-path benchmark end to end at a small rate: every reply a phone sent reaches the board.

No timing is asserted (figures belong to ``python -m bench.reply_path``); this checks that the
bench's set-up, open-loop schedule, board polling and tear-down work on the running services, and
that no reply is lost on the way (simulator → notify → Kafka → dispatch).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench.reply_path import run
from deploy import stack as local_stack
from muster.drill.runner import _seed_roster
from muster.drill.scenario import load_scenario

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
async def services(stack):
    """The simulator and the three services running, and a roster to call (the small drill's)."""
    local_stack.services_up()
    async with httpx.AsyncClient(timeout=60) as http:
        await _seed_roster(load_scenario(HERE / "small_drill.yaml"), http)
    return stack


async def test_every_reply_sent_at_20_per_second_is_seen_on_the_board(services) -> None:
    result = await run(rates=(20,), seconds=3, start=False, drain_seconds=60)
    [figures] = result["rates"]
    assert figures["sent"] == 60
    assert figures["send_errors"] == 0, figures["first_errors"]
    assert figures["seen"] == figures["sent"]
    assert figures["p50_ms"] is not None and figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
