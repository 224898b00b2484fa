"""Pure classification of providers' error codes into ``retryable`` / ``recipient_permanent``.

Source: the providers' error-code tables as gathered in ``/work/shared/reference/providers.md``
(Aliyun help.aliyun.com/document_detail/101346.html; Tencent ``tencentcloud/sms/v20210111/errorcodes.py``
and cloud.tencent.com/document/product/382/3771; WeChat's global return-code table). Where the documents only
describe a code, the handling is our reading of them:

* rate limits within a time window and system errors are retried later;
* a bad number / openid, a blacklisted number, a user who does not follow or refused are permanent for that
  recipient on that channel (fall back or give up);
* everything else (balance, template, signature, daily/monthly caps, configuration) is neither: the message
  fails and operators are alerted.
"""

from __future__ import annotations

import re

__all__ = [
    "TRANSPORT_ERROR",
    "aliyun_classify",
    "tencent_classify",
    "to_e164",
    "to_national",
    "wechat_classify",
]

TRANSPORT_ERROR = "network"
"""``error_code`` of a send that failed in transport (timeout, connection refused): retryable, outcome unknown."""

_ALIYUN_RETRYABLE = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "isp.SYSTEM_ERROR", "Throttling", "isp.RAM_PERMISSION_DENY_BUSY",
                               "ServiceUnavailable", TRANSPORT_ERROR})
_ALIYUN_PERMANENT = frozenset({"isv.MOBILE_NUMBER_ILLEGAL", "isv.BLACK_KEY_CONTROL_LIMIT_MOBILE",
                               "isv.DENY_IP_RANGE_MOBILE"})

_TENCENT_RETRYABLE_PREFIX = ("LimitExceeded.PhoneNumberThirtySecondLimit", "LimitExceeded.PhoneNumberOneHourLimit",
                             "LimitExceeded.DeliveryFrequencyLimit", "LimitExceeded.PhoneNumberSameContentDailyLimit",
                             "RequestLimitExceeded")
_TENCENT_RETRYABLE = frozenset({"InternalError.Timeout", "InternalError.SendAndRecvFail", "InternalError",
                                "FailedOperation.FailResolvePacket", TRANSPORT_ERROR})
_TENCENT_PERMANENT = frozenset({"InvalidParameterValue.IncorrectPhoneNumber", "FailedOperation.PhoneNumberInBlacklist",
                                "FailedOperation.PhoneNumberParseFail", "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber"})

_WECHAT_RETRYABLE = frozenset({"-1", "43117", "45009", "45047", TRANSPORT_ERROR})
_WECHAT_PERMANENT = frozenset({"40003", "43004", "43101", "43019"})
WECHAT_TOKEN_ERRORS = frozenset({"40001", "40014", "42001"})
"""Bad, invalid or expired access_token: refresh the token and try once more."""


def aliyun_classify(code: str) -> tuple[bool, bool]:
    """``(retryable, recipient_permanent)`` for an Aliyun Dysmsapi ``Code`` (``OK`` is not an error)."""
    return code in _ALIYUN_RETRYABLE, code in _ALIYUN_PERMANENT


def tencent_classify(code: str) -> tuple[bool, bool]:
    """``(retryable, recipient_permanent)`` for a Tencent SMS ``Code`` (``Ok`` is not an error).

    ``LimitExceeded.PhoneNumberDailyLimit`` and ``LimitExceeded.AppDailyLimit`` are day caps: not retryable
    within any sensible call-out window.
    """
    retryable = code in _TENCENT_RETRYABLE or code.startswith(_TENCENT_RETRYABLE_PREFIX)
    return retryable, code in _TENCENT_PERMANENT


def wechat_classify(errcode: int | str) -> tuple[bool, bool]:
    """``(retryable, recipient_permanent)`` for a WeChat ``errcode`` (0 is not an error)."""
    code = str(errcode)
    return code in _WECHAT_RETRYABLE or code in WECHAT_TOKEN_ERRORS, code in _WECHAT_PERMANENT


_MOBILE = re.compile(r"^(?:\+86|0086|86)?(1[3-9]\d{9})$")


def to_national(mobile: str) -> str:
    """``+8613812341234`` (or ``0086…``, ``86…``, bare) → ``13812341234``.

    Raises:
        ValueError: not a mainland China mobile number.

    """
    m = _MOBILE.match(mobile.replace(" ", "").replace("-", ""))
    if m is None:
        raise ValueError("not a mainland mobile number")
    return m.group(1)


def to_e164(mobile: str) -> str:
    """``13812341234`` / ``8613812341234`` / ``+8613812341234`` → ``+8613812341234``.

    Raises:
        ValueError: not a mainland China mobile number.

    """
    return "+86" + to_national(mobile)
