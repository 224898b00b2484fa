"""Masking of personal data: mainland mobile numbers and WeChat openids.

Rules (Civil Code Art. 1034 lists phone numbers as personal information; PIPL Art. 51 asks for
de-identification): a mobile is shown as ``138****1234`` (first three and last four digits), an
openid as its first four and last four characters around ``****``.

Mobiles are recognised in all their usual writings: ``13812341234``, ``+86 138 1234 1234``,
``0086-138-1234-1234``, ``86 13812341234``, ``138-1234-1234`` and full-width digits
(``１３８１２３４１２３４``). Openids are the 28-character ids WeChat issues per account
(``o`` followed by 27 of ``[A-Za-z0-9_-]``).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["mask_mobile", "mask_openid", "mask_secrets", "mask_text", "mask_value"]

_SEP = r"[ \t\-－\u00a0\u3000]?"
# \d matches full-width digits too (Unicode decimal digits).
_MOBILE = re.compile(
    rf"(?<![\d\w])(?:(?:[+＋]|00|００)?(?:86|８６){_SEP})?(?P<num>[1１]{_SEP}[3-9３-９](?:{_SEP}\d){{9}})(?!\d)"
)
_OPENID = re.compile(r"(?<![A-Za-z0-9_-])o[A-Za-z0-9_-]{27}(?![A-Za-z0-9_-])")


# Credentials that travel in URLs: WeChat's access_token query parameter (developers.weixin.qq.com,
# "获取 Access token"), signed-callback parameters, and the secret path token of the SMS callbacks
# (/callbacks/aliyun/<token>/..., /callbacks/tencent/<token>/...).
_SECRET_QUERY = re.compile(r"(?P<k>(?:access_token|secret|appsecret|signature|msg_signature)=)[^&\s\"']+", re.IGNORECASE)
_CALLBACK_TOKEN = re.compile(r"(?P<k>/callbacks/(?:aliyun|tencent)/)[^/\s\"']+")


def mask_secrets(text: str) -> str:
    """Hide credentials carried in URLs: ``access_token=…``, ``signature=…``, callback path tokens."""
    text = _SECRET_QUERY.sub(lambda m: m.group("k") + "****", text)
    return _CALLBACK_TOKEN.sub(lambda m: m.group("k") + "****", text)


def _digits(s: str) -> str:
    return "".join(str(int(c)) for c in s if c.isdecimal())


def mask_mobile(mobile: str) -> str:
    """``+8613812341234`` → ``138****1234``. Non-mobile input is returned with its digits hidden."""
    d = _digits(mobile)
    if len(d) >= 11:
        d = d[-11:]
        return f"{d[:3]}****{d[-4:]}"
    return "*" * len(mobile)


def mask_openid(openid: str) -> str:
    """``oUpF8uMuAJO_M2pxb1Q9zNjWeS6o`` → ``oUpF****eS6o``."""
    if len(openid) <= 8:
        return "****"
    return f"{openid[:4]}****{openid[-4:]}"


def mask_text(text: str) -> str:
    """Mask every mobile number, openid and URL credential inside ``text``."""
    text = mask_secrets(text)
    text = _MOBILE.sub(lambda m: mask_mobile(m.group("num")), text)
    return _OPENID.sub(lambda m: mask_openid(m.group(0)), text)


def mask_value(value: Any) -> Any:
    """Mask strings inside ``value``, recursing into dicts, lists and tuples."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_value(v) for v in value)
    return value
