"""The reply parser: what volunteers actually type, turned into an intent.

Pure: no I/O. :func:`parse_reply` takes the raw text of an SMS uplink (or a reply-page action) and
the reply codes of the volunteer's open call-outs, and returns a :class:`ParsedReply`.

What is understood (tables in ``tests/unit/notify/test_replies.py``):

* accept: ``1``, 好/好的/收到/收到了/可以/行/能/去/接受/马上到/马上去, ``ok``/``okay``/``y``/``yes``, 是, 👍 👌 ✅ 🙆,
  and as the whole message 嗯/嗯呐/对的/行吧/能来/来了/马上来/这就去/可/中/妥/得嘞/没毛病
* decline: ``2``, 不/不行/不去/没空/去不了/来不了/有事/拒绝, ``no``/``n``/``nope``/``sorry``, 👎 ❌ 🙅,
  and as the whole message 抱歉/算了/下次(吧)/(我)在外地/没法去/没法来/没办法
* acknowledgements without a commitment (知道了, 了解, 明白, 哦) stay unrecognised: they get the automatic
  answer that says how to reply.
* ETA (an acceptance with minutes): ``20分钟``, ``20分``, ``二十分钟``, ``半小时``, ``一小时``,
  ``一个半小时``, ``1.5小时``, ``20min``, ``1h``, ``1 20`` (code 1 followed by a number of minutes)
* arrived: 到了/已到/已到达/到达/到位/在现场/现场了, ``arrived``
* unsubscribe: ``TD``, ``T``, 退订, ``unsubscribe``, ``stop`` (the carriers' standard opt-out words):
  withdraws SMS consent
* a reply code (e.g. ``A7`` from a message 回复1A7接受) anywhere in the text picks the call-out.
* "but" is not "no": 不过/但是 after a yes with a duration is an ETA (好的，不过要一小时 → 60 min);
  不好意思, 差不多, 不到/不超过 + a duration are not negations either.

Never guessed, always :attr:`~shared.events.ReplyIntent.UNRECOGNISED` (an operator reads them):

* questions: ``?``/``？``, 吗, 什么/啥, 哪/哪里, 谁, 怎么/咋, 几点/几时, 多少, 请问, and the A-not-A forms
  (是不是, 要不要, 能不能, 可不可以, 有没有, 到了没) — "到了吗？" is not an arrival, "是不是要带急救包" not a
  decline. A question that also starts with the answer digit ``1``/``2`` ("1，几点集合？") is that answer.
* corrections: 打错了/发错了/回错了/按错/点错, 误发/误回, 不是我, 请忽略, ``wrong`` ("好 不好意思 打错了").
* a token shaped like a reply code (two characters of dispatch's code alphabet ``23456789ABCDEFGHJKMNPQRSTUVWXYZ``,
  one a digit and one a letter, optionally after the answer digit: ``4M``, ``1 4M``, ``14M``) that is not
  one of ``open_codes``: the volunteer quoted someone else's message, so ``1 4M`` is not an ETA of 4
  minutes. A consequence: ``5m``, ``2h``, ``15m`` (shorthand minutes and hours shaped like a code) are
  unrecognised too; ``20min``, ``1h``, ``20m``, ``15分钟`` are still ETAs.

Full-width characters are folded to half-width (Unicode NFKC), letters to lower case, and emoji,
punctuation and spaces are ignored except where listed above. Anything else is
:attr:`~shared.events.ReplyIntent.UNRECOGNISED`: it is kept and shown to an operator, never dropped.
Negation wins over agreement (不可以 is a decline, 不好意思去不了 too), so a "no" is never read as a "yes";
the checks run in this order: unsubscribe, the bare answers ``1``/``2``, foreign codes, corrections,
questions, decline, arrival, ETA, accept.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass

from shared.events import ReplyIntent

__all__ = ["MAX_ETA_MINUTES", "ParsedReply", "normalise", "parse_reply"]

MAX_ETA_MINUTES = 24 * 60


@dataclass(frozen=True)
class ParsedReply:
    """A parsed reply.

    Attributes:
        intent: accept / decline / eta / arrived / unsubscribe / unrecognised.
        eta_minutes: minutes until arrival for :attr:`ReplyIntent.ETA` (0..1440), else None.
        code: the reply code found in the text (as it appears among the open codes), else None.

    """

    intent: ReplyIntent
    eta_minutes: int | None = None
    code: str | None = None


_ACCEPT_EMOJI = "👍👌✅🙆✔☑🆗"
_DECLINE_EMOJI = "👎❌🙅✖⛔🚫"

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}


def _cn_number(s: str) -> int | None:
    """Chinese numerals up to 99 (十五, 二十, 二十五, 四十五) → int; None when not a number."""
    if not s:
        return None
    if s.isdigit():
        return int(s)
    if "十" in s:
        head, _, tail = s.partition("十")
        tens = 1 if head == "" else _CN_DIGITS.get(head)
        ones = 0 if tail == "" else _CN_DIGITS.get(tail)
        if tens is None or ones is None:
            return None
        return tens * 10 + ones
    if len(s) == 1 and s in _CN_DIGITS:
        return _CN_DIGITS[s]
    return None


def normalise(text: str) -> str:
    """Fold ``text`` for matching: NFKC (full-width → half-width), lower case, emoji marked, punctuation out.

    Accept emoji become `` 👍 `` and decline emoji `` 👎 `` (kept as signals); other symbols, punctuation
    and runs of spaces become one space.
    """
    folded = unicodedata.normalize("NFKC", text).lower()
    out: list[str] = []
    for ch in folded:
        if ch in _ACCEPT_EMOJI:
            out.append(" 👍 ")
        elif ch in _DECLINE_EMOJI:
            out.append(" 👎 ")
        elif ch == "." or ch.isalnum() or "\u4e00" <= ch <= "\u9fff":
            out.append(ch)
        else:
            out.append(" ")
    return re.sub(r"\s+", " ", "".join(out)).strip()


_NUM = r"(\d+(?:\.\d+)?|[零〇一二两俩三四五六七八九十]+)"
_HALF_HOUR = re.compile(r"半个?(?:小时|钟头|钟)")
_HOURS_AND_HALF = re.compile(_NUM + r"个?半(?:小时|钟头)")
_HOURS = re.compile(_NUM + r"\s*(?:个)?\s*(?:小时|钟头|hours?|hrs?|h)(?![a-z])")
_MINUTES = re.compile(_NUM + r"\s*(?:分钟|分|mins?|minutes?|m)(?![a-z])")
_BARE_NUMBER = re.compile(r"^(?:1\s+)?(\d{1,3})$")

_ACCEPT_EXACT = frozenset({"是", "是的", "对", "对的", "行", "行吧", "能", "能来", "去", "到", "嗯", "嗯嗯", "嗯呐", "来",
                           "我来", "来了", "马上来", "这就去", "可", "中", "妥", "得嘞", "没毛病"})
# Whole-message refusals whose words are not a "no" inside a longer text (抱歉，马上到 is a yes).
_DECLINE_EXACT = frozenset({"抱歉", "算了", "下次吧", "下次", "在外地", "我在外地", "没法去", "没法来", "没办法"})
# Questions, on the normalised text with _NOT_NEGATION words cut out (好，不好意思 is not 好不好). ([^不没])[不没]\1 is the A-not-A question: 是不是, 要不要,
# 能不能, 可不可(以), 有没有, 去没去.
_QUESTION = re.compile(r"吗|什么|啥|哪|谁|怎么|咋|几点|几时|多少|请问|为何|干嘛|了没有?$|([^不没])[不没]\1")
_CORRECTION = re.compile(
    r"(?:打|发|回|按|点|输|写|选|弄|搞)错|误发|误回|误点|不是我|忽略|(?<![a-z])wrong(?![a-z])"
)
# Dispatch's reply-code alphabet (services/dispatch/domain/waves.py REPLY_CODE_ALPHABET: no 0/1/I/L/O),
# lower-cased as normalise() leaves it.
_CODE_DIGITS = "23456789"
_CODE_LETTERS = "abcdefghjkmnpqrstuvwxyz"
_CODE_LIKE = re.compile(
    rf"(?<![a-z0-9.])[12]?([{_CODE_DIGITS}][{_CODE_LETTERS}]|[{_CODE_LETTERS}][{_CODE_DIGITS}])(?![a-z0-9])"
)
# Words with 不 that are not a "no": sorry, "but" (不过去/不过来 are "not going/coming"), about, under.
_NOT_NEGATION = re.compile(
    r"不好意思|不过(?![去来])|差不多|不一会|要不了|不(?:到|超过)(?=\s*[\d零〇一二两俩三四五六七八九十半])"
)
_UNSUBSCRIBE = re.compile(r"^(?:td|t|退订|退订短信|取消订阅|unsubscribe|stop)$")
_NOT_YET_ARRIVED = re.compile(r"(?:还)?(?:没|未)到")
_ARRIVED = re.compile(r"(?<!马上)(?<!快)(?<!就)(?<!收)(?:已到|到了|已经到|到达|到位|在现场|现场了|arrived|i m here|im here)")
_SURELY_ARRIVED = re.compile(r"已到|已经到|(?<!收)到了|在现场|现场了")
_DECLINE = re.compile(
    r"不|没空|没时间|去不了|来不了|有事|拒绝|无法|(?<![a-z])(?:no|n|nope|sorry|cannot|can t|cant)(?![a-z])|👎"
)
_ACCEPT = re.compile(
    r"好|收到|可以|接受|马上|立即|立刻|出发|没问题|同意|参加|我去|能去|就到|"
    r"(?<![a-z])(?:ok|okay|k|y|yes|yep|sure|accept|coming|on my way|omw)(?![a-z])|👍"
)


def _eta_minutes(t: str) -> int | None:
    if m := _HOURS_AND_HALF.search(t):
        n = _cn_number(m.group(1)) if not m.group(1).replace(".", "").isdigit() else float(m.group(1))
        return None if n is None else round(float(n) * 60 + 30)
    if _HALF_HOUR.search(t):
        return 30
    if m := _HOURS.search(t):
        raw = m.group(1)
        n = float(raw) if raw.replace(".", "", 1).isdigit() else _cn_number(raw)
        return None if n is None else round(float(n) * 60)
    if m := _MINUTES.search(t):
        raw = m.group(1)
        n = float(raw) if raw.replace(".", "", 1).isdigit() else _cn_number(raw)
        return None if n is None else round(float(n))
    return None


def _find_code(t: str, open_codes: Collection[str]) -> tuple[str | None, str]:
    """Find one of ``open_codes`` as a token in ``t``; return it and ``t`` without it."""
    for code in sorted(open_codes, key=len, reverse=True):
        c = unicodedata.normalize("NFKC", code).lower().strip()
        if not c:
            continue
        for m in re.finditer(re.escape(c), t):
            before = t[m.start() - 1] if m.start() > 0 else " "
            after = t[m.end()] if m.end() < len(t) else " "
            answer_digit = before in "12" and (m.start() < 2 or not t[m.start() - 2].isalnum())
            if c[0].isdigit() and before.isdigit() and not (answer_digit and not c.isdigit()):
                continue  # inside a number, unless "14M" = answer 1 + code 4M
            if c[-1].isdigit() and after.isdigit():
                continue
            if (c[0].isalpha() and before.isascii() and before.isalpha()) or (
                c[-1].isalpha() and after.isascii() and after.isalpha()
            ):
                continue
            rest = (t[: m.start()] + " " + t[m.end():]).strip()
            if not rest and c.isdigit():
                continue  # a bare number is an answer (1/2) or minutes, not only a code
            return code, re.sub(r"\s+", " ", rest)
    return None, t


def _foreign_code(t: str, open_codes: Collection[str]) -> bool:
    """``t`` (normalised) holds a token shaped like a reply code that is none of ``open_codes``."""
    own = {unicodedata.normalize("NFKC", c).lower().strip() for c in open_codes}
    return any(m.group(1) not in own for m in _CODE_LIKE.finditer(t))


def parse_reply(text: str, open_codes: Collection[str] = ()) -> ParsedReply:
    """Parse a volunteer's reply.

    Args:
        text: the reply as received (any width, emoji, punctuation).
        open_codes: reply codes of the volunteer's open call-outs (e.g. ``{"A7", "B2"}``); a code found in
            the text is returned in :attr:`ParsedReply.code`.

    Returns:
        The parsed reply; :attr:`ReplyIntent.UNRECOGNISED` when nothing fits (never raises).

    """
    question = "?" in unicodedata.normalize("NFKC", text)
    t = normalise(text)
    code, t = _find_code(t, open_codes)
    compact = t.replace(" ", "")
    if not compact:
        return ParsedReply(ReplyIntent.UNRECOGNISED, code=code)
    if _UNSUBSCRIBE.match(compact) or "退订" in compact:
        return ParsedReply(ReplyIntent.UNSUBSCRIBE, code=code)
    if compact in {"1", "11"}:
        return ParsedReply(ReplyIntent.ACCEPT, code=code)
    if compact == "2":
        return ParsedReply(ReplyIntent.DECLINE, code=code)
    if _foreign_code(t, open_codes) or _CORRECTION.search(t):
        return ParsedReply(ReplyIntent.UNRECOGNISED, code=code)
    if question or _QUESTION.search(_NOT_NEGATION.sub("|", t)):
        if re.match(r"^1(?!\d)", compact):
            return ParsedReply(ReplyIntent.ACCEPT, code=code)
        if re.match(r"^2(?!\d)", compact):
            return ParsedReply(ReplyIntent.DECLINE, code=code)
        return ParsedReply(ReplyIntent.UNRECOGNISED, code=code)
    eta = _eta_minutes(t)
    not_yet = bool(_NOT_YET_ARRIVED.search(compact))
    declined = (bool(_DECLINE.search(_NOT_NEGATION.sub(" ", t))) and not not_yet) or compact in _DECLINE_EXACT
    if re.match(r"^2(?!\d)", compact) and eta is None:
        declined = True
    if declined:
        return ParsedReply(ReplyIntent.DECLINE, code=code)
    arrived = not not_yet and bool(_ARRIVED.search(t))
    if arrived and (eta is None or _SURELY_ARRIVED.search(t)):
        return ParsedReply(ReplyIntent.ARRIVED, code=code)
    if eta is None and (m := _BARE_NUMBER.match(t)) and t.startswith("1 "):
        eta = int(m.group(1))  # "1 20": accept, 20 minutes
    if eta is not None and 0 <= eta <= MAX_ETA_MINUTES:
        return ParsedReply(ReplyIntent.ETA, eta_minutes=eta, code=code)
    if re.match(r"^1(?!\d)", compact):
        return ParsedReply(ReplyIntent.ACCEPT, code=code)
    if compact in _ACCEPT_EXACT or _ACCEPT.search(t) or not_yet:
        return ParsedReply(ReplyIntent.ACCEPT, code=code)
    return ParsedReply(ReplyIntent.UNRECOGNISED, code=code)
