"""Links in texts that go into SMS template variables (broadcasts, meeting points): refused, however spelt."""

from __future__ import annotations

import pytest

from services.dispatch.domain.validation import check_broadcast_text, has_link
from services.dispatch.errors import InvalidInput


@pytest.mark.parametrize("text", [
    "详见 https://surl.amap.com/abc", "www.example.com", "点 bit.ly/3xYz", "evil。com 领取", "evil.io",
    "ＨＴＴＰＳ：／／ｅｖｉｌ．ｃｎ", "weixin://dl/x", "集合点 amap.com",
])
def test_links_are_found_however_spelt(text: str) -> None:
    """Regression (break-it review): bit.ly, evil。com, evil.io and full-width https bypassed the filter."""
    assert has_link(text)
    with pytest.raises(InvalidInput, match="link"):
        check_broadcast_text(text)


@pytest.mark.parametrize("text", ["集合点改到南门", "约 3.5 小时后换班", "请带好急救包，B2 区集合", "回拨 0575-85123456"])
def test_ordinary_texts_are_not_links(text: str) -> None:
    assert not has_link(text)
    assert check_broadcast_text(text) == text
