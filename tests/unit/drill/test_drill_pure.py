from pathlib import Path

import pytest

from muster.drill.integrity import BoardCallOut, PhoneMessage, SentReply, integrity
from muster.drill.responders import decide
from muster.drill.scenario import ScenarioError, load_scenario
from shared.vocabulary import Level

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["keqiao_drowning", "yuecheng_marathon", "zhuji_night_flood", "luxun_cardiac_arrest"])
def test_shipped_scenarios_are_valid(name):
    s = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    assert s.incidents and s.expectations


def test_bad_scenario_names_file_and_every_field(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(
        "name: x\nincidents:\n  - {kind: k, title: t, lat: 30, lon: 120, unit_code: '330603',"
        " requirements: [{skill: juggling, count: 0}], policy: {wave_deadline_seconds: 5}}\n"
        "responders: {accept: {village: 0.9}, decline: {village: 0.5}, latency_seconds: {median: 1}}\n"
        "expectations: {}\n"
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(f)
    text = str(err.value)
    assert str(f) in text
    assert "incidents.0.unit_code" in text or "12-digit" in text
    assert "juggling" in text or "incidents.0.requirements.0" in text
    assert "responders" in text


def _model():
    return load_scenario(ROOT / "scenarios" / "keqiao_drowning.yaml").responders


def test_responses_are_deterministic_and_follow_the_chances():
    model = _model()
    a = [decide(model, seed=7, key=f"c{i}", level=Level.TOWN, skill="first_aid") for i in range(2000)]
    b = [decide(model, seed=7, key=f"c{i}", level=Level.TOWN, skill="first_aid") for i in range(2000)]
    assert a == b
    share = sum(r.action == "accept" for r in a) / len(a)
    assert abs(share - model.accept[Level.TOWN]) < 0.04
    declines = sum(r.action == "decline" for r in a) / len(a)
    assert abs(declines - model.decline[Level.TOWN]) < 0.04
    assert all(r.text is None for r in a if r.action == "ignore")
    assert all(0 < r.latency_s <= model.latency_seconds.max for r in a)
    free = [r.text for r in a if r.action == "accept" and r.text not in ("1",)]
    assert free, "some accepts are free text"


def test_integrity_counts_duplicates_losses_and_overfill():
    callouts = [
        BoardCallOut("c1", "v1", "assigned", replies_recorded=1, stood_down=False),
        BoardCallOut("c2", "v2", "cancelled", replies_recorded=0, stood_down=True),
        BoardCallOut("c3", "v3", "requested", replies_recorded=0, stood_down=False),
    ]
    messages = [
        PhoneMessage("v1", "callout", "m1"),
        PhoneMessage("v1", "callout", "m1"),  # same key twice: a duplicate
        PhoneMessage("v2", "callout", "m2"),
        PhoneMessage("v2", "stand_down", "m3"),
    ]  # v3's call-out never arrived
    sent = [SentReply("v1", "1"), SentReply("v2", "好的")]  # v2's reply never reached the board
    reqs = [{"count": 4, "filled": 4}, {"count": 1, "filled": 2}]
    result = integrity(messages, sent, callouts, reqs)
    assert result["duplicate_messages"] == 1
    assert result["lost_callouts"] == 1
    assert result["lost_replies"] == 1
    assert result["overfilled_requirements"] == 1
    assert result["duplicate_stand_downs"] == 0


def test_integrity_is_zero_for_a_clean_drill():
    callouts = [BoardCallOut("c1", "v1", "assigned", 2, False), BoardCallOut("c2", "v2", "cancelled", 0, True)]
    messages = [PhoneMessage("v1", "callout", "a"), PhoneMessage("v1", "assigned", "b"),
                PhoneMessage("v2", "callout", "c"), PhoneMessage("v2", "stand_down", "d")]
    sent = [SentReply("v1", "1"), SentReply("v1", "到了")]
    # a batch request shares one idempotency key across phones: not a duplicate
    messages += [PhoneMessage("v3", "callout", "batch-1"), PhoneMessage("v4", "callout", "batch-1")]
    callouts += [BoardCallOut("c3", "v3", "declined", 0, False), BoardCallOut("c4", "v4", "declined", 0, False)]
    result = integrity(messages, sent, callouts, [{"count": 1, "filled": 1}])
    assert {k: v for k, v in result.items() if k != "details"} == {
        "duplicate_messages": 0, "duplicate_stand_downs": 0, "lost_callouts": 0, "lost_replies": 0,
        "overfilled_requirements": 0,
    }


def test_one_batch_to_phones_the_drill_cannot_name_is_not_a_duplicate():
    """Regression (fault drill): an Aliyun batch carries one OutId; unnamed phones all keyed as None added up."""
    callouts = [BoardCallOut("c1", "v1", "requested", replies_recorded=0, stood_down=False)]
    messages = [PhoneMessage("v1", "callout", "batch-1")] + [PhoneMessage(None, "assigned", "batch-1")] * 5
    assert integrity(messages, [], callouts, [])["duplicate_messages"] == 0


def test_two_different_messages_to_one_phone_in_one_batch_are_not_a_duplicate():
    """Regression (fault drill run 8): one SendBatchSms carried a stand-down and another incident's call-out."""
    callouts = [BoardCallOut("c1", "v1", "cancelled", 0, True), BoardCallOut("c2", "v1", "requested", 0, False)]
    messages = [PhoneMessage("v1", "callout", "old", "演练：A 需救护员"),
                PhoneMessage("v1", "stand_down", "batch-1", "演练：A 人员已满"),
                PhoneMessage("v1", "callout", "batch-1", "演练：B 需救护员")]
    assert integrity(messages, [], callouts, [])["duplicate_messages"] == 0
    resent = [*messages, PhoneMessage("v1", "callout", "batch-1", "演练：B 需救护员")]  # the same one again
    assert integrity(resent, [], callouts, [])["duplicate_messages"] == 1


def test_an_automatic_answer_is_not_counted_as_a_callout() -> None:
    from muster.drill.runner import classify

    assert classify("演练：鉴湖溺水：未能识别您的回复。请到南门集合，地图…。回复1接受，2拒绝，到达后回复“到了”") == "auto_answer"
    assert classify("演练：鉴湖溺水，需救护员，请到南门集合。回复1接受，2拒绝") == "callout"


def test_a_broadcast_is_not_counted_as_a_callout() -> None:
    from muster.drill.runner import classify

    assert classify("演练：鉴湖溺水调度通知：集合点改到南门，回复1确认") == "broadcast"


def test_a_requirement_is_needed_except_for_a_cardiac_arrest_and_the_circle_is_for_it_only(tmp_path):
    head = "name: x\nresponders: {accept: {village: 0.5}, decline: {village: 0.2}, latency_seconds: {median: 1}}\n"
    inc = "  - {kind: %s, title: t, lat: 30, lon: 120.58, unit_code: '330602001015', policy: %s}\n"
    f = tmp_path / "s.yaml"
    f.write_text(head + "expectations: {}\nincidents:\n" + inc % ("cardiac_arrest", "{wave_deadline_seconds: 5}"))
    assert load_scenario(f).incidents[0].requirements == []
    f.write_text(head + "expectations: {}\nincidents:\n" + inc % ("drowning", "{wave_deadline_seconds: 5}"))
    with pytest.raises(ScenarioError, match="at least one requirement"):
        load_scenario(f)
    f.write_text(head + "expectations: {}\nincidents:\n"
                 + (inc % ("drowning", "{wave_deadline_seconds: 5, circle: {first: 3}}")).replace(
                     "policy", "requirements: [{skill: first_aid, count: 1}], policy"))
    with pytest.raises(ScenarioError, match="cardiac_arrest only"):
        load_scenario(f)
