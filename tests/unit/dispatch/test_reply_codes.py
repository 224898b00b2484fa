"""Reply codes against notify's reply parser: every code dispatch can hand out reads as a code, never as
a number, a unit or a word (the reviewer's "1 4M" became an ETA of 4 minutes)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from services.dispatch.domain.waves import reply_code
from services.notify.domain.replies import parse_reply
from shared.events import ReplyIntent


def all_two_character_codes() -> list[str]:
    """Every two-character code :func:`reply_code` hands out, drawn until it must go to three characters."""
    taken: list[str] = []
    while len(code := reply_code(uuid4(), taken)) == 2:
        taken.append(code)
    return taken


CODES = all_two_character_codes()


def test_the_code_space_is_two_characters_and_unique() -> None:
    assert len(CODES) == len(set(CODES)) >= 100  # far more than anyone's open call-outs


@pytest.mark.parametrize("letter", list("HMNYKT"))
def test_no_code_holds_a_unit_or_word_letter(letter: str) -> None:
    # H/M: hours/minutes ("1 4M" → 4 minutes); N: no; Y, K: yes/ok; T: the opt-out T/TD
    assert not [c for c in CODES if letter in c]


@pytest.mark.parametrize("code", CODES)
def test_every_code_parses_as_its_call_out(code: str) -> None:
    other = next(c for c in CODES if c != code)
    mine = {code, other}
    for text, intent in [(f"1{code}", ReplyIntent.ACCEPT), (f"2{code}", ReplyIntent.DECLINE),
                         (f"1 {code}", ReplyIntent.ACCEPT), (f"1{code.lower()}", ReplyIntent.ACCEPT),
                         (f"２{code}", ReplyIntent.DECLINE)]:
        p = parse_reply(text, mine)
        assert (p.intent, p.code) == (intent, code), text
    p = parse_reply(f"1{code} 20分钟", mine)
    assert (p.intent, p.eta_minutes, p.code) == (ReplyIntent.ETA, 20, code)


@pytest.mark.parametrize("code", CODES)
def test_a_code_not_among_the_open_ones_is_never_a_time_a_no_or_an_opt_out(code: str) -> None:
    # the volunteer quotes a code that is not open (another call-out's, a stale one): it may be an accept or
    # unrecognised, never an ETA, a decline, or an unsubscribe
    for text in (f"1{code}", f"1 {code}", code):
        p = parse_reply(text, {"ZZ9"})
        assert p.intent in (ReplyIntent.ACCEPT, ReplyIntent.UNRECOGNISED), (text, p)


def test_urgent_codes_are_three_characters_and_avoid_the_taken() -> None:
    from uuid import uuid4

    from services.dispatch.domain.waves import REPLY_CODE_DIGITS, REPLY_CODE_LETTERS, urgent_reply_code

    cid = uuid4()
    first = urgent_reply_code(cid, set())
    assert len(first) == 3 and first[0] in REPLY_CODE_LETTERS and set(first[1:]) <= set(REPLY_CODE_DIGITS)
    assert urgent_reply_code(cid, {first}) != first
    assert urgent_reply_code(cid, set()) == first  # reproducible
