import uuid
from datetime import date

from services.roster.domain.model import Certificate, Volunteer, contact_event, profile_event
from services.roster.domain.normalise import parse_mobile
from services.roster.domain.seed import TEST_MOBILE_PREFIX, synthesize
from shared.events import Availability
from shared.vocabulary import TeamType, skill_by_code
from tests.unit.roster.test_import_validation import UNITS

TODAY = date(2026, 11, 29)


def test_seed_is_deterministic() -> None:
    a = synthesize(UNITS, volunteers=500, teams=6, seed=42, today=TODAY)
    b = synthesize(UNITS, volunteers=500, teams=6, seed=42, today=TODAY)
    c = synthesize(UNITS, volunteers=500, teams=6, seed=43, today=TODAY)
    assert a == b
    assert [v.id for v in a.volunteers] != [v.id for v in c.volunteers]


def test_seed_mix() -> None:
    r = synthesize(UNITS, volunteers=3000, teams=8, seed=1, today=TODAY)
    vols = r.volunteers
    assert len(vols) == 3000
    assert len({v.mobile for v in vols}) == 3000
    assert all(v.mobile.startswith(TEST_MOBILE_PREFIX) and parse_mobile(v.mobile) == v.mobile for v in vols)
    assert all(UNITS.get(v.unit_code) is not None and len(v.unit_code) == 12 for v in vols)
    certs = [c for v in vols for c in v.certificates]
    expired = sum(1 for c in certs if not c.valid_on(TODAY)) / len(certs)
    assert 0.10 <= expired <= 0.20
    assert all(skill_by_code(c.kind).needs_certificate for c in certs)
    unavailable = sum(1 for v in vols if v.availability is not Availability.AVAILABLE) / len(vols)
    assert 0.05 < unavailable < 0.25
    assert all(v.unavailable_until is not None for v in vols if v.availability is Availability.UNAVAILABLE)
    # Denser in the street (塔山街道's community) than in the town's villages (平水镇).
    per_unit = {code: sum(1 for v in vols if v.unit_code == code) for code in ("330602001004", "330603105203")}
    assert per_unit["330602001004"] > 3 * per_unit["330603105203"]
    # Located around the town's centre when it has one (平水镇 has one; 柯桥街道 has not, so the county's).
    located = [v for v in vols if v.unit_code.startswith("330603105")]
    assert all(v.lat is not None and abs(v.lat - 29.8966) < 0.1 for v in located)


def test_seed_teams_have_leaders_among_members_and_the_drill_teams_exist() -> None:
    r = synthesize(UNITS, volunteers=2000, teams=8, seed=3, today=TODAY)
    by_id = {v.id: v for v in r.volunteers}
    assert r.teams
    assert len({t.name for t in r.teams}) == len(r.teams)
    for t in r.teams:
        assert t.leader_id in t.member_ids
        assert by_id[t.leader_id].availability is Availability.AVAILABLE
        for m in t.member_ids:
            assert t.id in by_id[m].team_ids
    kinds = {(t.unit_code[:6], t.team_type) for t in r.teams}
    assert ("330603", TeamType.WATER) in kinds
    assert ("330602", TeamType.FIRST_AID) in kinds
    water = next(t for t in r.teams if t.team_type is TeamType.WATER)
    assert all("water_rescue" in by_id[m].skills for m in water.member_ids)


def test_profile_event_carries_no_contact_data_and_contact_event_does() -> None:
    v = Volunteer(
        id=uuid.uuid4(), revision=3, name="王小明", mobile="+8613800138000", unit_code="330603105201",
        skills=("first_aid",), certificates=(Certificate("first_aid", "N1", date(2024, 1, 1), date(2027, 1, 1)),),
        wechat_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", wechat_subscribed=True, sms_consent=False,
    )
    profile = profile_event(v).to_bytes().decode()
    assert "13800138000" not in profile and "oUpF8uMuAJO" not in profile and "N1" not in profile
    assert '"revision":3' in profile and '"first_aid"' in profile
    contact = contact_event(v)
    assert contact.mobile == "+8613800138000"
    assert contact.wechat_openid == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    assert contact.sms_consent is False and contact.revision == 3


def test_certificate_validity() -> None:
    c = Certificate("first_aid", None, date(2024, 3, 1), date(2027, 2, 28))
    assert c.valid_on(date(2027, 2, 28))
    assert not c.valid_on(date(2027, 3, 1))
    assert not c.valid_on(date(2024, 2, 29))
    assert Certificate("driver").valid_on(date(1990, 1, 1))

