"""Encryption at rest, look-up hashes and reply-page links (pure, no I/O)."""

from __future__ import annotations

import uuid

import pytest
from cryptography.fernet import Fernet, InvalidToken

from services.notify.adapters.crypto import ContactCipher, normalise_mobile
from services.notify.adapters.reply_links import ReplyLinkExpired, ReplyLinkInvalid, ReplyLinks


@pytest.mark.parametrize(
    "writing",
    ["+8613812341234", "13812341234", "8613812341234", "008613812341234", "+86 138 1234 1234", "１３８１２３４１２３４",
     "138-1234-1234"],
)
def test_mobile_writings_normalise_and_hash_alike(writing: str) -> None:
    cipher = ContactCipher(Fernet.generate_key())
    assert normalise_mobile(writing) == "+8613812341234"
    assert cipher.mobile_hash(writing) == cipher.mobile_hash("+8613812341234")


def test_encryption_round_trip_and_no_plaintext() -> None:
    cipher = ContactCipher(Fernet.generate_key())
    token = cipher.encrypt("+8613812341234")
    assert token is not None and b"13812341234" not in token
    assert cipher.decrypt(token) == "+8613812341234"
    assert cipher.encrypt(None) is None and cipher.decrypt(None) is None


def test_hashes_depend_on_the_key_and_the_kind() -> None:
    a, b = ContactCipher(Fernet.generate_key()), ContactCipher(Fernet.generate_key())
    assert a.mobile_hash("+8613812341234") != b.mobile_hash("+8613812341234")
    assert a.openid_hash("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o") != a.mobile_hash("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")


def test_another_key_cannot_decrypt() -> None:
    token = ContactCipher(Fernet.generate_key()).encrypt("+8613812341234")
    with pytest.raises(InvalidToken):
        ContactCipher(Fernet.generate_key()).decrypt(token)


def test_reply_link_round_trip_and_forgery() -> None:
    links = ReplyLinks("secret", "https://notify.example.org/", max_age_seconds=3600)
    mid = uuid.uuid4()
    url = links.url(mid)
    assert url.startswith("https://notify.example.org/r/")
    token = url.rsplit("/", 1)[1]
    assert links.message_id(token) == mid
    with pytest.raises(ReplyLinkInvalid):
        links.message_id(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    with pytest.raises(ReplyLinkInvalid):
        ReplyLinks("other-secret", "https://x", max_age_seconds=3600).message_id(token)


def test_reply_link_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    import itsdangerous.timed as timed

    links = ReplyLinks("secret", "https://x", max_age_seconds=60)
    token = links.token(uuid.uuid4())
    real = timed.time.time
    monkeypatch.setattr(timed.time, "time", lambda: real() + 120)
    with pytest.raises(ReplyLinkExpired):
        links.message_id(token)


def test_callback_allow_list() -> None:
    from typing import Any, cast

    from services.notify.context import NotifyContext
    from shared.settings import NotifySettings

    settings = NotifySettings(kafka_bootstrap_servers="x:1", database_url="postgresql://u:p@h:1/d",
                              callback_allow_ips=["127.0.0.1/32", "10.8.0.0/16"])
    ctx = NotifyContext(settings, cast(Any, None), ContactCipher(Fernet.generate_key()), None, {})
    assert ctx.allowed("127.0.0.1") and ctx.allowed("10.8.3.4")
    assert not ctx.allowed("10.9.0.1") and not ctx.allowed(None) and not ctx.allowed("not-an-ip")


def test_wechat_callback_allow_list_is_its_own() -> None:
    from typing import Any, cast

    from services.notify.context import NotifyContext
    from shared.settings import NotifySettings

    settings = NotifySettings(kafka_bootstrap_servers="x:1", database_url="postgresql://u:p@h:1/d",
                              callback_allow_ips=["10.8.0.0/16"], wechat_callback_allow_ips=["101.226.0.0/16"])
    ctx = NotifyContext(settings, cast(Any, None), ContactCipher(Fernet.generate_key()), None, {})
    assert ctx.allowed("101.226.1.2", wechat=True) and not ctx.allowed("10.8.3.4", wechat=True)
    assert ctx.allowed("10.8.3.4") and not ctx.allowed("101.226.1.2")
    assert NotifySettings(kafka_bootstrap_servers="x:1", database_url="postgresql://u:p@h:1/d",
                          ).wechat_callback_allow_ips == ["127.0.0.1/32"]
