"""Error-code classification (providers.md's tables) and number normalisation."""

from __future__ import annotations

import pytest

from services.notify.channels.codes import (
    TRANSPORT_ERROR,
    aliyun_classify,
    tencent_classify,
    to_e164,
    to_national,
    wechat_classify,
)

RETRY, PERMANENT, NEITHER = (True, False), (False, True), (False, False)


@pytest.mark.parametrize(("code", "expected"), [
    ("isv.BUSINESS_LIMIT_CONTROL", RETRY), ("isp.SYSTEM_ERROR", RETRY), (TRANSPORT_ERROR, RETRY),
    ("isv.MOBILE_NUMBER_ILLEGAL", PERMANENT),
    ("isv.DAY_LIMIT_CONTROL", NEITHER), ("isv.AMOUNT_NOT_ENOUGH", NEITHER), ("isv.OUT_OF_SERVICE", NEITHER),
    ("isv.MOBILE_COUNT_OVER_LIMIT", NEITHER), ("isv.TEMPLATE_MISSING_PARAMETERS", NEITHER),
    ("isv.INVALID_JSON_PARAM", NEITHER), ("isv.SMS_SIGNATURE_ILLEGAL", NEITHER), ("SignatureDoesNotMatch", NEITHER),
])
def test_aliyun(code: str, expected: tuple[bool, bool]) -> None:
    assert aliyun_classify(code) == expected


@pytest.mark.parametrize(("code", "expected"), [
    ("LimitExceeded.PhoneNumberThirtySecondLimit", RETRY), ("LimitExceeded.PhoneNumberOneHourLimit", RETRY),
    ("LimitExceeded.DeliveryFrequencyLimit", RETRY), ("InternalError.Timeout", RETRY),
    ("InternalError.SendAndRecvFail", RETRY), (TRANSPORT_ERROR, RETRY),
    ("InvalidParameterValue.IncorrectPhoneNumber", PERMANENT), ("FailedOperation.PhoneNumberInBlacklist", PERMANENT),
    ("LimitExceeded.PhoneNumberDailyLimit", NEITHER), ("LimitExceeded.AppDailyLimit", NEITHER),
    ("LimitExceeded.PhoneNumberCountLimit", NEITHER), ("FailedOperation.InsufficientBalanceInSmsPackage", NEITHER),
    ("FailedOperation.TemplateIncorrectOrUnapproved", NEITHER), ("AuthFailure.SignatureFailure", NEITHER),
])
def test_tencent(code: str, expected: tuple[bool, bool]) -> None:
    assert tencent_classify(code) == expected


@pytest.mark.parametrize(("code", "expected"), [
    (-1, RETRY), (45009, RETRY), (43117, RETRY), ("42001", RETRY), (TRANSPORT_ERROR, RETRY),
    (40003, PERMANENT), (43004, PERMANENT), (43101, PERMANENT),
    (40037, NEITHER), (47001, NEITHER), (47003, NEITHER), (48001, NEITHER),
])
def test_wechat(code: int | str, expected: tuple[bool, bool]) -> None:
    assert wechat_classify(code) == expected


@pytest.mark.parametrize("number", ["13812341234", "+8613812341234", "008613812341234", "8613812341234",
                                    "138 1234 1234", "138-1234-1234"])
def test_mobile_writings(number: str) -> None:
    assert to_national(number) == "13812341234"
    assert to_e164(number) == "+8613812341234"


@pytest.mark.parametrize("number", ["", "12812341234", "1381234123", "+15550001111", "1381111****"])
def test_not_a_mainland_mobile(number: str) -> None:
    with pytest.raises(ValueError):
        to_e164(number)
