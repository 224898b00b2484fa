"""Callback numbers and broadcast texts as the SMS providers' notification rules allow them."""

from __future__ import annotations

import pytest

from services.dispatch.domain.validation import check_broadcast_text, check_callback_phone
from services.dispatch.errors import InvalidInput


@pytest.mark.parametrize(("given", "kept"), [
    ("0575-85123456", "0575-85123456"), ("057585123456", "057585123456"), ("010-12345678", "010-12345678"),
    ("400-123-4567", "400-123-4567"), ("4001234567", "4001234567"), ("95119", "95119"), (" 0575 85123456 ", "057585123456"),
])
def test_landline_400_and_95_numbers_are_accepted(given: str, kept: str) -> None:
    assert check_callback_phone(given) == kept


@pytest.mark.parametrize("given", ["13800138000", "+8613800138000", "12345", "", "0575-851", "call me"])
def test_other_numbers_are_refused(given: str) -> None:
    with pytest.raises(InvalidInput, match="landline"):
        check_callback_phone(given)


def test_broadcast_text_is_folded_and_kept() -> None:
    assert check_broadcast_text("  集合点改到  南门 ") == "集合点改到 南门"


@pytest.mark.parametrize("given", ["", "   ", "x" * 121, "详见 https://example.com/a", "看www.baidu.com", "见 t.cn 链接"])
def test_empty_long_or_linked_broadcasts_are_refused(given: str) -> None:
    with pytest.raises(InvalidInput):
        check_broadcast_text(given)
