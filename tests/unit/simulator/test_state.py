"""The simulator's pure parts: template rendering, number checks, nonces, tokens, the message feed."""

from __future__ import annotations

from dataclasses import asdict, fields

import pytest

from simulator.state import DeliveredMessage, SimState, is_openid, national_mobile, render_template


@pytest.mark.parametrize(("template", "params", "text"), [
    ("${name}，请回复${code}", {"name": "张三", "code": "1"}, "张三，请回复1"),
    ("演练{1}，回复{2}", ["集合", "1"], "演练集合，回复1"),
    ("{{thing1.DATA}}", {"thing1": "水域救援"}, "水域救援"),
    (None, {"a": "x", "b": "y"}, "x y"),
])
def test_render_template(template: str | None, params: dict[str, str] | list[str], text: str) -> None:
    assert render_template(template, params) == text


def test_numbers_and_openids() -> None:
    assert national_mobile("+8613812341234") == "13812341234"
    assert national_mobile("12345") is None
    assert is_openid("o" + "A" * 27) and not is_openid("o" + "A" * 26) and not is_openid("x" + "A" * 27)


def test_nonce_replay_within_window() -> None:
    state = SimState()
    assert not state.nonce_seen("n1", window_seconds=60)
    assert state.nonce_seen("n1", window_seconds=60)
    assert not state.nonce_seen("n2", window_seconds=60)


def test_tokens_expire() -> None:
    state = SimState()
    token = state.issue_token(60)
    assert state.token_state(token) == 0
    assert state.token_state("nope") == 40001
    state.expire_tokens()
    assert state.token_state(token) == 42001


def test_feed_sequence_and_rate_limit() -> None:
    state = SimState()
    for i in range(5):
        state.deliver(provider="aliyun", channel="sms", recipient=f"+861380000000{i}", text="t", url=None,
                      out_id=None, provider_message_id=str(i))
    assert [m.seq for m in state.after(2, 10)] == [3, 4, 5]
    assert [m.seq for m in state.after(0, 2)] == [1, 2]
    assert state.after(5, 10) == []
    state.faults.rate_limit["aliyun"] = 1
    assert state.take_rate_limit("aliyun") and not state.take_rate_limit("aliyun")


def test_public_shape_is_every_field_but_the_template() -> None:
    values = {f.name: f"v-{f.name}" for f in fields(DeliveredMessage)}
    m = DeliveredMessage(**values)
    assert m.public() == {k: v for k, v in asdict(m).items() if k != "template"}
