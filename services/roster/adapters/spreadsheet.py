"""Reading registers: CSV in any encoding Excel in China writes, and XLSX.

* CSV: UTF-8 (with or without BOM), GB18030 (a superset of GBK and GB2312, which Excel on
  Chinese Windows writes), UTF-16 with a BOM (Excel's "Unicode text"); the delimiter (comma,
  semicolon, tab) is sniffed by :mod:`csv`.
* XLSX (and XLS/ODS): read with ``python-calamine`` (Rust, fast); the first sheet is the register.
  Cells keep their types (numbers, dates) for :mod:`services.roster.domain.normalise`.

Errors: :class:`SpreadsheetError` when the bytes are neither a spreadsheet nor text in one of
those encodings.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

__all__ = ["SpreadsheetError", "decode_text", "read_table"]

_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0"


class SpreadsheetError(ValueError):
    """The file cannot be read as a register."""


def decode_text(data: bytes) -> str:
    """Decode CSV bytes: UTF-16 when it starts with its BOM, UTF-8 (BOM stripped), else GB18030.

    Raises:
        SpreadsheetError: neither decoding fits.

    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text" export: UTF-16 with BOM, tabs
        return data.decode("utf-16")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for enc in ("utf-8", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise SpreadsheetError("the file is neither UTF-8 nor GBK/GB18030 text")


def read_table(data: bytes, filename: str = "") -> list[list[object]]:
    """The first sheet (or the CSV) as rows of cells, the header row first.

    Args:
        data: the file's bytes.
        filename: its name, used only as a hint (``.xlsx``/``.xls``/``.ods`` vs ``.csv``).

    Raises:
        SpreadsheetError: unreadable workbook or undecodable text.

    """
    suffix = Path(filename).suffix.lower()
    if data.startswith(_ZIP) or data.startswith(_OLE) or suffix in (".xlsx", ".xls", ".xlsm", ".ods"):
        return _read_workbook(data)
    text = decode_text(data)
    sample = text[:4096]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return [list(r) for r in csv.reader(io.StringIO(text, newline=""), dialect)]


def _read_workbook(data: bytes) -> list[list[object]]:
    from python_calamine import CalamineWorkbook

    try:
        wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
        sheet = wb.get_sheet_by_index(0)
        return [list(r) for r in sheet.to_python(skip_empty_area=False)]
    except Exception as exc:  # calamine raises its own error types for broken files
        raise SpreadsheetError(f"not a readable workbook: {exc}") from exc
