import io
import json
import logging

import pytest
import structlog

from shared.logging import configure_logging, get_logger
from shared.privacy import mask_mobile, mask_openid, mask_text

WRITINGS = [
    "13812341234",
    "+8613812341234",
    "+86 138 1234 1234",
    "+86-138-1234-1234",
    "0086 13812341234",
    "0086-138-1234-1234",
    "86 13812341234",
    "138-1234-1234",
    "138 1234 1234",
    "１３８１２３４１２３４",
    "＋８６ １３８ １２３４ １２３４",
]


@pytest.mark.parametrize("writing", WRITINGS)
def test_mobile_masked_in_every_usual_writing(writing):
    masked = mask_text(f"回复来自 {writing}，内容1")
    assert "138****1234" in masked
    digits = "".join(c for c in masked if c.isdecimal())
    assert "12341234" not in "".join(str(int(c)) for c in digits)


def test_non_mobile_numbers_are_left_alone():
    text = "incident 330603101201 at 2026-11-29, count 12345678901234"
    assert mask_text(text) == text
    assert mask_text("call 12012341234") == "call 12012341234"  # 12x is not a mainland mobile prefix


def test_openid_masked():
    oid = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    assert mask_text(f"openid={oid}") == "openid=oUpF****eS6o"
    assert mask_openid(oid) == "oUpF****eS6o"
    assert mask_mobile("+8613812341234") == "138****1234"


def test_logs_mask_personal_data_in_json_output(capsys):
    configure_logging(level="INFO", service="test", json=True)
    log = get_logger("t")
    log.info("reply.received", sender="+86 138-1234-1234", body={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
             note="from １３８１２３４１２３４")
    logging.getLogger("stdlib").warning("stdlib says 13912345678")
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.strip().splitlines()]
    blob = json.dumps(lines, ensure_ascii=False)
    assert "138****1234" in blob and "139****5678" in blob and "oUpF****eS6o" in blob
    assert "1234-1234" not in blob and "12345678" not in blob and "M2pxb1Q9" not in blob
    assert "１２３４１２３４" not in blob
    structlog.contextvars.clear_contextvars()


def test_logging_survives_a_closed_stream():
    """Regression: structlog kept the stderr of configuration time; once closed, every log call raised."""
    import sys

    original = sys.stderr
    closed = io.StringIO()
    sys.stderr = closed
    try:
        configure_logging(level="INFO", json=True)
    finally:
        sys.stderr = original
    closed.close()
    buffer = io.StringIO()
    sys.stderr = buffer
    try:
        get_logger("t").warning("consumer.dead_lettered", topic="x")  # raised ValueError before the fix
    finally:
        sys.stderr = original
    assert "consumer.dead_lettered" in buffer.getvalue()
    structlog.contextvars.clear_contextvars()


def test_url_credentials_are_masked_in_logs(capsys):
    """Regression (review): httpx's request lines put WeChat's access_token and the callback path token in the logs."""
    configure_logging(level="INFO", service="test", json=True)
    logging.getLogger("httpx").warning(
        'HTTP Request: POST http://127.0.0.1:8190/cgi-bin/message/template/send?access_token=BuS398xYz_-1 "200 OK"'
    )
    get_logger("t").info("push", url="http://127.0.0.1:8103/callbacks/aliyun/NIGByPsk-K2Vw3xq=/report",
                         wx="/callbacks/wechat?signature=96fb3abf&timestamp=1&nonce=2")
    err = capsys.readouterr().err
    assert "BuS398xYz_-1" not in err and "NIGByPsk-K2Vw3xq=" not in err and "96fb3abf" not in err
    assert "access_token=****" in err and "/callbacks/aliyun/****/report" in err and "signature=****" in err
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    structlog.contextvars.clear_contextvars()
