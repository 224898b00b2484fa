"""The reply parser over what volunteers actually type."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notify.domain.replies import ParsedReply, normalise, parse_reply
from shared.events import ReplyIntent

A, D, E, ARR, U, X = (
    ReplyIntent.ACCEPT, ReplyIntent.DECLINE, ReplyIntent.ETA, ReplyIntent.ARRIVED,
    ReplyIntent.UNSUBSCRIBE, ReplyIntent.UNRECOGNISED,
)

TABLE: list[tuple[str, ReplyIntent, int | None]] = [
    # the instructions' own answers, in every width and with decoration
    ("1", A, None), ("１", A, None), (" 1 ", A, None), ("1。", A, None), ("1!", A, None), ("【1】", A, None),
    ("2", D, None), ("２", D, None), ("2.", D, None), ("2，", D, None),
    # yes words
    ("好", A, None), ("好的", A, None), ("好的！", A, None), ("收到", A, None), ("收到👌", A, None),
    ("马上到", A, None), ("马上到！", A, None), ("马上到了", A, None), ("可以", A, None), ("行", A, None),
    ("OK", A, None), ("ok", A, None), ("Ｏｋ", A, None), ("okay", A, None), ("y", A, None), ("Y", A, None),
    ("yes", A, None), ("YES!!", A, None), ("是", A, None), ("接受", A, None), ("👍", A, None),
    ("没问题", A, None), ("我去", A, None), ("1收到", A, None), ("收到，马上出发", A, None),
    ("不好意思刚看到，马上到", A, None), ("好👍👍", A, None), ("on my way", A, None),
    # no words
    ("不", D, None), ("不行", D, None), ("不去", D, None), ("没空", D, None), ("no", D, None), ("No.", D, None),
    ("n", D, None), ("N", D, None), ("不可以", D, None), ("不好意思去不了", D, None), ("今天有事", D, None),
    ("来不了", D, None), ("sorry", D, None), ("❌", D, None), ("👎", D, None), ("拒绝", D, None),
    ("2 在外地", D, None), ("不行，在上班", D, None), ("抱歉，我在外地，去不了😭", D, None),
    # ETAs
    ("20分钟", E, 20), ("20分钟到", E, 20), ("２０分钟", E, 20), ("20 分钟", E, 20), ("20分", E, 20),
    ("二十分钟", E, 20), ("十五分钟", E, 15), ("十分钟", E, 10), ("半小时", E, 30), ("半个小时", E, 30),
    ("一小时", E, 60), ("一个小时", E, 60), ("1小时", E, 60), ("两小时", E, 120), ("一个半小时", E, 90),
    ("1.5小时", E, 90), ("20min", E, 20), ("20 mins", E, 20), ("20MIN", E, 20), ("1h", E, 60),
    ("好的，大概半小时到", E, 30), ("1，20分钟", E, 30 - 10), ("收到 预计40分钟到达", E, 40),
    ("1 20", E, 20), ("马上出发，15分钟", E, 15), ("还没到，10分钟", E, 10),
    # arrival
    ("到了", ARR, None), ("已到达", ARR, None), ("已到", ARR, None), ("我到了", ARR, None),
    ("已经到现场了", ARR, None), ("在现场", ARR, None), ("arrived", ARR, None), ("到了！🚑", ARR, None),
    # unsubscribe
    ("TD", U, None), ("td", U, None), ("ＴＤ", U, None), ("T", U, None), ("退订", U, None), ("退订！", U, None),
    ("STOP", U, None), ("unsubscribe", U, None),
    # not understood: kept for an operator
    ("", X, None), ("？", X, None), ("😀", X, None), ("3", X, None), ("谁啊", X, None), ("这是什么", X, None),
    ("请问在哪里集合", X, None), ("hello", X, None),
    # questions are kept for an operator, whatever words they contain ...
    ("到了吗？", X, None), ("到了吗", X, None), ("你们到了吗", X, None), ("到了没", X, None), ("到哪了", X, None),
    ("是不是要带急救包", X, None), ("要不要带装备", X, None), ("需要我去吗", X, None), ("能去吗？", X, None),
    ("在哪集合？", X, None), ("几点到？", X, None), ("带啥", X, None), ("可不可以晚点到", X, None),
    ("不去行不行", X, None), ("好的?", X, None), ("ok?", X, None), ("马上到了吗", X, None),
    # ... unless they carry the answer digit
    ("1，几点集合？", A, None), ("2 是不是人够了？", D, None),
    # corrections
    ("好 不好意思 打错了", X, None), ("发错了，不好意思", X, None), ("回错了", X, None), ("1 发错了", X, None),
    ("sorry wrong number", X, None), ("请忽略", X, None),
    # "but" after a yes, "about", "under": not a "no"
    ("好的，不过要一小时", E, 60), ("好的 不过大概40分钟", E, 40), ("可以，不过要半小时", E, 30),
    ("收到，不过要一个半小时到", E, 90), ("好的，但是要一小时", E, 60), ("差不多20分钟到", E, 20),
    ("不到半小时", E, 30), ("好的，不过我要晚点到", A, None), ("好，不好意思，刚看到，马上到", A, None),
    # ... while 不过去/不过来 still say "not coming"
    ("我不过去了", D, None), ("忙不过来", D, None), ("好的，不过去不了", D, None),
    # short answers Chinese SMS users send (issue 14), full-width digits and letters too
    ("收到了", A, None), ("收到了！", A, None), ("好的收到", A, None), ("嗯", A, None), ("嗯呐", A, None),
    ("对的", A, None), ("行吧", A, None), ("能来", A, None), ("来了", A, None), ("马上来", A, None),
    ("这就去", A, None), ("可", A, None), ("中", A, None), ("妥", A, None), ("得嘞", A, None), ("没毛病", A, None),
    ("好嘞", A, None), ("好滴", A, None), ("ＯＫ", A, None), ("ok的", A, None), ("１１", A, None),
    ("抱歉", D, None), ("算了", D, None), ("下次吧", D, None), ("在外地", D, None), ("我在外地", D, None),
    ("没法去", D, None), ("没办法", D, None), ("不能去", D, None), ("去不了了", D, None), ("不参加", D, None),
    ("２。", D, None), ("抱歉刚看到，马上到", A, None),
    # acknowledgements without a commitment get the automatic answer instead of a guess
    ("知道了", X, None), ("了解", X, None), ("明白", X, None), ("哦", X, None), ("在哪里", X, None),
    ("地址呢", X, None),
]


@pytest.mark.parametrize(("text", "intent", "eta"), TABLE)
def test_reply_table(text: str, intent: ReplyIntent, eta: int | None) -> None:
    parsed = parse_reply(text)
    assert (parsed.intent, parsed.eta_minutes) == (intent, eta), text


@pytest.mark.parametrize(
    ("text", "code", "intent"),
    [
        ("1A7", "A7", A), ("1 a7", "A7", A), ("A7 1", "A7", A), ("2B2", "B2", D), ("b2不去", "B2", D),
        ("1A7 20分钟", "A7", E), ("到了A7", "A7", ARR), ("１Ａ７", "A7", A), ("1", None, A),
    ],
)
def test_reply_codes_pick_the_callout(text: str, code: str | None, intent: ReplyIntent) -> None:
    parsed = parse_reply(text, {"A7", "B2"})
    assert parsed.code == code
    assert parsed.intent is intent


@pytest.mark.parametrize("text", ["1 4M", "4M", "14M", "1 4m", "2 4M", "1，M4", "1 4M 好的", "1 K9"])
def test_someone_elses_code_is_not_an_eta_or_an_answer(text: str) -> None:
    parsed = parse_reply(text, {"A7", "B2"})
    assert (parsed.intent, parsed.eta_minutes, parsed.code) == (X, None, None), text


@pytest.mark.parametrize(("text", "intent", "eta"), [("1 4M", A, None), ("14M", A, None), ("24M", D, None), ("4M 20分钟", E, 20)])
def test_the_volunteers_own_code_shaped_like_minutes_picks_the_callout(
    text: str, intent: ReplyIntent, eta: int | None
) -> None:
    parsed = parse_reply(text, {"4M", "A7"})
    assert (parsed.intent, parsed.eta_minutes, parsed.code) == (intent, eta, "4M"), text


@pytest.mark.parametrize(("text", "eta"), [("1 20", 20), ("20m", 20), ("1h", 60), ("20min", 20), ("1.5h", 90)])
def test_minutes_that_cannot_be_a_code_stay_etas(text: str, eta: int) -> None:
    assert parse_reply(text, {"A7"}) == parse_reply(text) == ParsedReply(E, eta_minutes=eta)


def test_a_code_is_not_found_inside_a_word() -> None:
    assert parse_reply("okay", {"K"}).code is None


def test_normalise_folds_width_and_drops_punctuation() -> None:
    assert normalise("ＯＫ！！") == "ok"
    assert normalise("好的，。。") == "好的"


@given(st.text(max_size=40), st.lists(st.text(min_size=1, max_size=4), max_size=3))
def test_parser_never_raises_and_eta_in_range(text: str, codes: list[str]) -> None:
    parsed = parse_reply(text, codes)
    assert isinstance(parsed.intent, ReplyIntent)
    if parsed.eta_minutes is not None:
        assert parsed.intent is ReplyIntent.ETA
        assert 0 <= parsed.eta_minutes <= 24 * 60


@given(st.sampled_from(["不", "不行", "不去", "没空", "不可以", "去不了"]), st.sampled_from(["好", "可以", "ok", "收到", ""]))
def test_negation_is_never_read_as_yes(no: str, yes: str) -> None:
    assert parse_reply(no + yes).intent is ReplyIntent.DECLINE
