"""Reading registers from bytes in memory: every encoding Excel in China writes, and XLSX."""

import io
from datetime import date, datetime

import pytest

from services.roster.adapters.spreadsheet import SpreadsheetError, read_table

TEXT = "姓名,手机号码,村(社区)\n王小明,13800138000,东光村委会\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "gb2312"])
def test_csv_in_every_encoding(encoding: str) -> None:
    assert read_table(TEXT.encode(encoding), "r.csv") == [["姓名", "手机号码", "村(社区)"],
                                                          ["王小明", "13800138000", "东光村委会"]]


def test_gb18030_only_characters() -> None:
    text = "姓名\n䶮\n"  # U+4DAE is not in GBK
    assert read_table(text.encode("gb18030"), "r.csv")[1] == ["䶮"]


def test_excel_unicode_text_utf16_with_tabs() -> None:
    data = "姓名\t手机号码\r\n王小明\t13800138000\r\n".encode("utf-16")
    assert read_table(data, "r.txt") == [["姓名", "手机号码"], ["王小明", "13800138000"]]


def test_semicolon_and_crlf() -> None:
    data = "姓名;手机号码\r\n王小明;13800138000\r\n".encode()
    assert read_table(data, "r.csv") == [["姓名", "手机号码"], ["王小明", "13800138000"]]


def test_bytes_that_are_no_text_are_an_error() -> None:
    with pytest.raises(SpreadsheetError):
        read_table(bytes(range(128, 256)) * 3, "r.csv")


def test_xlsx_keeps_cell_types() -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["姓名", "手机号码", "发证日期"])
    ws.append(["王小明", 13800138000, datetime(2024, 3, 1)])
    buf = io.BytesIO()
    wb.save(buf)
    rows = read_table(buf.getvalue(), "r.xlsx")
    assert rows[0] == ["姓名", "手机号码", "发证日期"]
    name, mobile, issued = rows[1]
    assert name == "王小明" and int(mobile) == 13800138000  # type: ignore[call-overload]
    assert issued in (date(2024, 3, 1), datetime(2024, 3, 1))


def test_broken_workbook_is_an_error() -> None:
    with pytest.raises(SpreadsheetError):
        read_table(b"PK\x03\x04 not really a zip", "r.xlsx")
