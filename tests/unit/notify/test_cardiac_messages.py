"""Cardiac-arrest assignments say what to do: CPR, or fetch the named AED, with the map link (issue #17)."""

from __future__ import annotations

from services.notify.domain.templates import TEMPLATES, MessageContent, render, sms_length
from shared.events import MessageKind
from shared.maps import AMAP_MARKER_PREFIX, amap_position
from shared.settings import NotifySettings
from shared.vocabulary import Channel

SIG = "红十字志愿者"
PATIENT = amap_position(29.9960, 120.5800)
AED = amap_position(29.9970, 120.5810)


def test_cpr_message_sends_to_the_patient_with_its_map_link() -> None:
    r = render(MessageContent(kind=MessageKind.CARDIAC_CPR, incident_title="鲁迅故里心脏骤停", place="鲁迅故里景区入口",
                              map_position=PATIENT), Channel.SMS, signature=SIG)
    assert "心肺复苏CPR" in r.text and "鲁迅故里景区入口" in r.text
    assert AMAP_MARKER_PREFIX + PATIENT in r.text
    assert "【" not in r.text and sms_length(SIG, r.text) <= 500


def test_aed_message_names_the_device_where_it_hangs_then_the_patient() -> None:
    aed = "鲁迅中路241号 游客中心一楼服务台旁"
    r = render(MessageContent(kind=MessageKind.CARDIAC_AED, incident_title="鲁迅故里心脏骤停", place="鲁迅故里景区入口",
                              map_position=PATIENT, aed_place=aed, aed_position=AED, callback_phone="0575-85123456",
                              drill=True), Channel.SMS, signature=SIG)
    assert r.text.startswith("演练：")
    assert f"请先取AED：{aed}" in r.text  # never shortened
    assert AMAP_MARKER_PREFIX + AED in r.text and r.text.index(aed) < r.text.index("再送到鲁迅故里景区入口")
    assert r.template_params["aedpos"] == AED  # the URL itself is template text, only lon,lat is a variable
    assert all("http" not in v for v in r.template_params.values())


def test_every_provider_has_a_template_code_for_the_cardiac_kinds() -> None:
    s = NotifySettings()
    for kind in (MessageKind.CARDIAC_CPR, MessageKind.CARDIAC_AED):
        assert kind in TEMPLATES
        assert kind.value in s.aliyun_templates and kind.value in s.tencent_templates
        assert kind.value in s.wechat_templates
