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

__all__ = ["MAX_INFLATED", "SpreadsheetError", "decode_text", "read_table"]

_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0"


#: Bytes the members of an XLSX/ODS (a zip of XML) may inflate to, together; a register of 100,000 rows is ~40 MB.
MAX_INFLATED = 100 * 1024 * 1024


class SpreadsheetError(ValueError):
    """The file cannot be read as a register; ``status`` is the HTTP answer (400 unreadable, 413, 422)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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


def read_table(data: bytes, filename: str = "", *, max_inflated: int = MAX_INFLATED) -> list[list[object]]:
    """The first sheet (or the CSV) as rows of cells, the header row first.

    CPU-bound (seconds for a large register): call it off the event loop (``asyncio.to_thread``).

    Args:
        data: the file's bytes.
        filename: its name, used only as a hint (``.xlsx``/``.xls``/``.ods`` vs ``.csv``).
        max_inflated: bytes a zipped workbook's members may declare, together, before anything is inflated.

    Raises:
        SpreadsheetError: unreadable workbook or undecodable text (400); a workbook inflating beyond
            ``max_inflated`` (413); a CSV cell longer than the :mod:`csv` field limit (422, row named).

    """
    suffix = Path(filename).suffix.lower()
    if data.startswith(_ZIP) or data.startswith(_OLE) or suffix in (".xlsx", ".xls", ".xlsm", ".ods"):
        return _read_workbook(data, max_inflated)
    text = decode_text(data)
    sample = text[:4096]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        return [list(r) for r in reader]
    except csv.Error as exc:
        raise SpreadsheetError(f"row {reader.line_num}: {exc} (at most {csv.field_size_limit()} characters a cell)",
                               status=422) from None


def _check_inflated(data: bytes, max_inflated: int) -> None:
    """Refuse a zip whose members declare more than ``max_inflated`` bytes (a decompression bomb), before inflating."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            total = sum(i.file_size for i in z.infolist())
    except zipfile.BadZipFile as exc:
        raise SpreadsheetError(f"not a readable workbook: {exc}") from exc
    if total > max_inflated:
        raise SpreadsheetError(f"the workbook inflates to {total} bytes; at most {max_inflated} are read "
                               "(split the register, or save it as CSV)", status=413)


def _read_workbook(data: bytes, max_inflated: int = MAX_INFLATED) -> list[list[object]]:
    from python_calamine import CalamineWorkbook

    if data.startswith(_ZIP):
        _check_inflated(data, max_inflated)
    try:
        wb = CalamineWorkbook.from_filelike(io.BytesIO(data))
        sheet = wb.get_sheet_by_index(0)
        return [list(r) for r in sheet.to_python(skip_empty_area=False)]
    except Exception as exc:  # calamine raises its own error types for broken files
        raise SpreadsheetError(f"not a readable workbook: {exc}") from exc
