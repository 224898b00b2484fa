"""The simulator shows phones exactly what notify rendered: its templates are notify's approved ones."""

import pytest

from services.notify.domain.templates import MessageContent, render
from shared.events import CancelReason, MessageKind
from shared.settings import NotifySettings
from shared.vocabulary import Channel
from simulator.settings import approved_templates
from simulator.state import render_template

CODES = NotifySettings.model_fields


@pytest.mark.parametrize("kind", list(MessageKind))
@pytest.mark.parametrize("several_open", [False, True])
def test_every_provider_renders_notifys_text(kind, several_open):
    content = MessageContent(kind=kind, incident_title="柯岩鉴湖溺水", place="柯岩街道鉴水社区", role="救护员",
                             reply_code="A7", reason=CancelReason.FILLED, drill=True)
    sms = render(content, Channel.SMS, signature="红十字志愿者", several_open=several_open)
    wechat = render(content, Channel.WECHAT, several_open=several_open)
    templates = approved_templates()
    aliyun = templates[CODES["aliyun_templates"].default[kind.value]]
    tencent = templates[CODES["tencent_templates"].default[kind.value]]
    wx = templates[CODES["wechat_templates"].default[kind.value]]
    assert render_template(aliyun, sms.template_params) == sms.text
    assert render_template(tencent, list(sms.template_params.values())) == sms.text
    assert render_template(wx, wechat.template_params) == wechat.text
    assert sms.text.startswith("演练")
