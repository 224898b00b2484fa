"""Validation of registers over many messy rows (pure: an in-memory unit directory)."""

import uuid
from datetime import date

import pytest

from services.roster.domain.importing import map_headers, merge_certificates, merge_into, validate_register
from services.roster.domain.model import Certificate, Volunteer
from services.roster.domain.units import DivisionsFileError, UnitDirectory, name_key, parse_divisions

DIVISIONS = """code,name,level,parent_code,lon_gcj02,lat_gcj02
330600,绍兴市,city,,120.580364,30.030192
330602,越城区,county,330600,120.582633,29.988244
330603,柯桥区,county,330600,120.495085,30.081929
330602001,塔山街道,town,330602,120.589179,29.988743
330603001,柯桥街道,town,330603,,
330603105,平水镇,town,330603,120.639568,29.896571
330602001004,花园社区,village,330602001,,
330603001201,东光村委会,village,330603001,,
330603105201,东光村委会,village,330603105,,
330603105202,中兴社区居委会,village,330603105,,
330603105203,王坛村委会,village,330603105,,
330603105204,马山居委会,village,330603105,,
330603105205,马山村委会,village,330603105,,
"""
UNITS = UnitDirectory(parse_divisions(DIVISIONS))
TEAM_ID = uuid.UUID(int=7)
TEAMS = {"柯桥区水上救援队": TEAM_ID}
HEADER = ["序号", "姓名", "手机号码", "区县", "乡镇（街道）", "村（社区）", "技能", "证书编号", "发证日期", "有效期至",
          "所属队伍", "微信OpenID", "身份证号", "家庭住址"]


def row(*cells: object) -> list[object]:
    return list(cells)


def test_clean_register_normalises_every_field() -> None:
    table = [
        HEADER,
        row(1, " 王小明 ", "＋86 138-0013-8000", "柯桥区", "平水镇", "东光", "救护员、CPR", "HZ2024001", "2024年3月1日",
            "20270228", "柯桥区水上救援队", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "330603199001011234", "平水镇某路1号"),
        row(2, "李 娜", "0086 139 0000 0001", "柯桥", "柯桥街道", "东光村委会", "", "", "", "", "", "", "", ""),
        row(3, "张三", "13700000002", "越城区", "塔山", "花园", "驾驶员", "", "", "", "", "", "", ""),
        row(4, "", "", "", "", "", "", "", "", "", "", "", "", ""),  # blank row: skipped
        row(5, "赵四", 13600000003.0, "柯桥区", "平水镇", "中兴社区", "后勤", "", 45352, "2027/2/28", "", "", "", ""),
    ]
    plan = validate_register(table, UNITS, TEAMS)
    assert plan.report.errors == []
    assert plan.report.rows == 4
    assert plan.report.ignored_columns == ["序号", "身份证号", "家庭住址"]
    a, b, c, d = plan.rows
    assert (a.name, a.mobile, a.unit_code) == ("王小明", "+8613800138000", "330603105201")
    assert a.skills == ("first_aid", "cpr_aed")
    assert a.certificates == (Certificate("first_aid", "HZ2024001", date(2024, 3, 1), date(2027, 2, 28)),)
    assert a.team_ids == (TEAM_ID,)
    assert a.wechat_openid == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    # Same village name in another town: resolved by the town given.
    assert (b.name, b.mobile, b.unit_code) == ("李娜", "+8613900000001", "330603001201")
    assert c.unit_code == "330602001004"
    assert d.mobile == "+8613600000003"
    assert d.unit_code == "330603105202"
    assert d.certificates == (Certificate("logistics", None, date(2024, 3, 1), date(2027, 2, 28)),)


def test_every_bad_row_is_reported_with_row_column_reason_and_suggestion() -> None:
    table = [
        HEADER,
        row(1, "王小明", "12345", "柯桥区", "平水镇", "东光", "救护员", "", "", "", "", "", "", ""),
        row(2, "李娜", "13900000001", "柯桥区", "平水镇", "王坛材", "救护员", "", "", "", "", "", "", ""),
        row(3, "", "13900000002", "柯桥区", "平水镇", "东光", "游泳", "", "2024-02-30", "", "", "", "", ""),
        row(4, "赵四", "13900000001", "柯乔区", "平水镇", "东光", "", "", "", "", "", "", "", ""),
        row(5, "钱五", "13900000005", "柯桥区", "平水镇", "东光", "救护员", "A1", "2024-03-01", "2023-03-01", "", "",
            "", ""),
        row(6, "孙六", "13900000006", "柯桥区", "平水镇", "东光", "救护员", "", "", "", "柯桥水上救援队", "bad id!",
            "", ""),
        row(7, "周七", "13900000007", "柯桥区", "", "东光", "救护员", "", "", "", "", "", "", ""),
    ]
    plan = validate_register(table, UNITS, TEAMS)
    assert plan.rows == []
    errors = {(e.row, e.column): e for e in plan.report.errors}
    assert errors[(2, "手机号码")].reason.startswith("not a mainland mobile")
    assert errors[(3, "村（社区）")].suggestion is not None and "王坛村委会" in errors[(3, "村（社区）")].suggestion
    assert (4, "姓名") in errors
    assert "游泳" in errors[(4, "技能")].reason
    assert "not a real date" in errors[(4, "发证日期")].reason
    assert errors[(5, "手机号码")].reason == "same mobile as row 3"
    assert errors[(5, "区县")].suggestion == "柯桥区"
    assert errors[(6, "有效期至")].reason == "expires before it was issued"
    assert errors[(7, "所属队伍")].suggestion == "柯桥区水上救援队"
    assert (7, "微信OpenID") in errors
    # No town given: 东光 exists in two towns of 柯桥区, so it is ambiguous and both are offered.
    assert "330603001201" in (errors[(8, "村（社区）")].suggestion or "")
    assert "330603105201" in (errors[(8, "村（社区）")].suggestion or "")
    assert {e.row for e in plan.report.errors} == {2, 3, 4, 5, 6, 7, 8}


def test_phone_numbers_in_the_report_are_masked() -> None:
    table = [HEADER, row(1, "王小明", "13800138000", "柯桥区", "平水镇", "没有这个村", "", "", "", "", "", "", "", "")]
    plan = validate_register(table, UNITS, TEAMS)
    assert plan.report.errors
    assert "13800138000" not in repr(plan.report.to_json())


def test_english_headers_and_unit_codes() -> None:
    table = [
        ["Name", "Mobile", "Unit Code", "Skills", "Certificate Number", "Issued", "Expires", "Address"],
        ["Wang Xiaoming", "+86 13800138000", "330603105201", "first aid; water rescue", "X1", "2024/3/1", "2027/2/28",
         "somewhere"],
        ["Li Na", "13900000001", "330603105", "driver", "", "", "", ""],
        ["Zhang San", "13900000002", "330699999999", "driver", "", "", "", ""],
    ]
    plan = validate_register(table, UNITS, {})
    assert plan.report.ignored_columns == ["Address"]
    assert [r.name for r in plan.rows] == ["Wang Xiaoming"]
    assert plan.rows[0].skills == ("first_aid", "water_rescue")
    assert [(e.row, e.column) for e in plan.report.errors] == [(3, "Unit Code"), (4, "Unit Code")]


def test_missing_required_columns_are_header_errors() -> None:
    _, _, errors = map_headers(["姓名", "技能"])
    assert {e.column for e in errors} == {"mobile", "village"}
    plan = validate_register([["姓名", "技能"], ["王", "救护员"]], UNITS, {})
    assert plan.rows == [] and not plan.report.ok


def test_a_column_named_twice_is_an_error() -> None:
    _, _, errors = map_headers(["姓名", "手机号码", "手机", "区划代码"])
    assert [e.reason for e in errors] == ["column mobile appears twice"]


def test_empty_file() -> None:
    plan = validate_register([], UNITS, {})
    assert not plan.report.ok


@pytest.mark.parametrize("data", [[], [["", "", "", ""], [None, None, None, None]], [["1", "", "", ""]]])
def test_a_header_without_data_rows_is_an_error(data: list[list[object]]) -> None:
    # A sequence number alone (序号) is no data.
    plan = validate_register([["序号", "姓名", "手机号码", "区划代码"], *data], UNITS, {})
    assert not plan.report.ok and plan.rows == [] and plan.report.rows == 0
    assert [(e.row, e.column, e.reason.split(" (")[0]) for e in plan.report.errors] == [(2, "-", "no data rows")]


def test_certificate_without_skill_is_an_error() -> None:
    table = [HEADER, row(1, "王", "13800138000", "柯桥区", "平水镇", "东光", "", "A1", "2024-01-01", "", "", "", "", "")]
    plan = validate_register(table, UNITS, {})
    assert [e.reason for e in plan.report.errors] == ["a certificate is given but no skill it certifies"]


def test_many_messy_rows_all_valid() -> None:
    writings = ["13800{:06d}", "+86 138-00{:02d}-{:04d}", "0086 13800{:06d}"]
    table: list[list[object]] = [HEADER]
    for i in range(300):
        w = writings[i % 3]
        mobile = w.format(i) if w.count("{") == 1 else w.format(i // 10000, i % 10000)
        village = ["东光", "东光村", "东光村委会", " 东光 "][i % 4]
        dates = ["2024-03-01", "2024/3/1", "2024年3月1日", "20240301", 45352][i % 5]
        table.append(row(i, f"志愿者{i}", mobile, "柯桥区", "平水镇", village, "救护员，CPR", f"N{i}", dates, "", "", "",
                         "", ""))
    plan = validate_register(table, UNITS, {})
    assert plan.report.errors == []
    assert len({r.mobile for r in plan.rows}) == 300
    assert {r.unit_code for r in plan.rows} == {"330603105201"}
    assert {r.certificates[0].issued_on for r in plan.rows} == {date(2024, 3, 1)}


@pytest.mark.parametrize(("name", "key"), [("东光村委会", "东光"), ("中兴社区居委会", "中兴"), ("柯桥街道", "柯桥"),
                                           ("平水镇", "平水"), ("越城区", "越城"), ("村", "村")])
def test_name_keys(name: str, key: str) -> None:
    assert name_key(name) == key


def test_divisions_file_errors_are_all_listed() -> None:
    bad = """code,name,level,parent_code,lon_gcj02,lat_gcj02
330600,绍兴市,city,,,
33060,短码,county,330600,,
330602,越城区,town,330600,,
330603001,柯桥街道,town,330603,abc,30
330602001001,无名村,village,330602001,,
"""
    with pytest.raises(DivisionsFileError) as info:
        parse_divisions(bad)
    assert [n for n, _ in info.value.errors] == [3, 4, 5, 6]


def test_divisions_points_are_kept_with_their_datum_and_converted() -> None:
    city = UNITS.get("330600")
    assert city is not None
    assert city.centre_datum == "GCJ-02"
    assert (city.centre_lat, city.centre_lon) == (30.030192, 120.580364)
    assert city.lat is not None and city.lon is not None
    # GCJ-02 is offset from WGS84 by a few hundred metres around Shaoxing.
    assert 0.001 < abs(city.lon - city.centre_lon) < 0.01
    town = UNITS.get("330603001")
    assert town is not None and town.centre_datum is None and town.lat is None


@pytest.mark.parametrize(("written", "code"), [("马山村", "330603105205"), ("马山村委会", "330603105205"),
                                               ("马山社区", "330603105204"), ("马山居委会", "330603105204"),
                                               ("马山", None)])
def test_a_village_and_a_community_sharing_a_name(written: str, code: str | None) -> None:
    m = UNITS.find_child(["330603105"], written)
    assert (m.unit.code if m.unit else None) == code
    if code is None:  # ambiguous: both offered
        assert len(m.suggestions) == 2


def _stored(**over: object) -> Volunteer:
    v = Volunteer(id=uuid.UUID(int=1), revision=4, name="王小明", mobile="+8613800138000", unit_code="330603105201",
                  skills=("first_aid", "water_rescue"),
                  certificates=(Certificate("first_aid", "HZ1", date(2020, 1, 1), date(2023, 1, 1)),
                                Certificate("water_rescue", "W1", date(2021, 1, 1), None)),
                  team_ids=(TEAM_ID,), wechat_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
    return Volunteer(**{**v.__dict__, **over})


def test_a_sheet_without_skill_or_certificate_columns_leaves_them_alone() -> None:
    plan = validate_register([["姓名", "手机号码", "区划代码"], ["王晓明", "13800138000", "330603105202"]], UNITS)
    assert plan.report.errors == [] and "skills" not in plan.columns
    old = _stored()
    new = merge_into(old, plan.rows[0], plan.columns)
    assert (new.name, new.unit_code) == ("王晓明", "330603105202")
    assert new.skills == old.skills and new.certificates == old.certificates
    assert new.team_ids == old.team_ids and new.wechat_openid == old.wechat_openid
    assert (new.revision, new.active) == (old.revision, old.active)


def test_a_row_certificate_is_upserted_by_skill_and_number() -> None:
    header = ["姓名", "手机号码", "区划代码", "技能", "证书编号", "发证日期", "有效期至"]
    plan = validate_register([header,
                              ["王小明", "13800138000", "330603105201", "救护员", "HZ2", "2024-01-01", "2027-01-01"],
                              ["李娜", "13800138001", "330603105201", "救护员", "HZ1", "2023-01-01", "2026-01-01"]],
                             UNITS)
    assert plan.report.errors == []
    old = _stored()
    added = merge_into(old, plan.rows[0], plan.columns)
    assert added.certificates == (*old.certificates, Certificate("first_aid", "HZ2", date(2024, 1, 1), date(2027, 1, 1)))
    assert added.skills == ("first_aid",)  # the sheet has a skills column: it is the new list
    renewed = merge_into(old, plan.rows[1], plan.columns)
    assert renewed.certificates == (Certificate("first_aid", "HZ1", date(2023, 1, 1), date(2026, 1, 1)),
                                    old.certificates[1])


def test_merge_certificates_keeps_order_and_matches_unnumbered_ones_by_skill() -> None:
    a, b = Certificate("first_aid", None, date(2020, 1, 1)), Certificate("cpr_aed", "C1")
    again = Certificate("first_aid", None, date(2024, 1, 1))
    assert merge_certificates((a, b), (again,)) == (again, b)
    assert merge_certificates((a,), (b, b)) == (a, b)
    assert merge_certificates((), ()) == ()


def test_cells_longer_than_the_api_allows_are_errors_on_their_row_and_column() -> None:
    from services.roster.domain.model import MAX_CERT_NUMBER, MAX_NAME, MAX_TEAM_NAME

    ok = ["王小明", "13800138000", "柯桥区", "平水镇", "东光", "救护员", "HZ1", "", "", "柯桥区水上救援队"]
    header = HEADER[1:11]
    table = [
        header,
        ["名" * 5000, "13800138001", *ok[2:]],
        ["李娜", "13800138002", *ok[2:6], "9" * (MAX_CERT_NUMBER + 1), "", "", ok[9]],
        ["张三", "13800138003", *ok[2:9], "柯桥区水上救援队、" + "队" * (MAX_TEAM_NAME + 1)],
        ["赵四", "13800138004", ok[2], ok[3], "村" * 200, *ok[5:]],
        ["名" * MAX_NAME, "13800138005", *ok[2:6], "9" * MAX_CERT_NUMBER, "", "", ok[9]],  # at the limits: fine
    ]
    plan = validate_register(table, UNITS, TEAMS)
    got = {(e.row, e.column) for e in plan.report.errors}
    assert got == {(2, "姓名"), (3, "证书编号"), (4, "所属队伍"), (5, "村（社区）")}, plan.report.errors
    by_row = {e.row: e for e in plan.report.errors}
    assert "5000 characters" in by_row[2].reason and f"at most {MAX_NAME}" in by_row[2].reason
    assert by_row[2].value is not None and len(by_row[2].value) <= 101  # the report does not repeat 5,000 characters
    assert [r.row for r in plan.rows] == [6]
    assert plan.rows[0].name == "名" * MAX_NAME


@pytest.mark.parametrize(("written", "kept"), [
    ("John Smith", "John Smith"),
    ("  Mary   Ann\tO'Neil \n", "Mary Ann O'Neil"),
    ("李 娜", "李娜"),  # a two-character name padded to three characters' width
    ("李\u3000\u3000娜", "李娜"),
    ("Zhang 三", "Zhang 三"),
    ("阿依古丽 · 买买提", "阿依古丽 · 买买提"),
])
def test_names_keep_their_inner_spaces_collapsed(written: str, kept: str) -> None:
    plan = validate_register([["姓名", "手机号码", "区划代码"], [written, "13800138000", "330603105202"]], UNITS)
    assert plan.report.errors == []
    assert plan.rows[0].name == kept
