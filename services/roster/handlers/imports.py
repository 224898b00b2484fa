"""``POST /imports``: import a register (CSV or XLSX) — all or nothing, every bad row reported.

Send the file as multipart ``file``; ``dry_run=true`` validates and counts without writing.
Answers 200 with the report when it imported (or would, on a dry run), 422 with the same report
when any row is bad (nothing is written), 400 when the file is not a readable register, 413 when it is
over 50 MB or a workbook inflating beyond :data:`~services.roster.adapters.spreadsheet.MAX_INFLATED`,
422 (``detail`` naming the row) for a CSV cell over the csv module's field limit. The file is read and
validated in a worker thread: the event loop (``/health/live``) does not wait behind a parse.
The report's ``errors`` list row, column, reason, suggestion and the value (phones masked).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi.responses import JSONResponse

from services.roster import commands
from services.roster.adapters.spreadsheet import SpreadsheetError
from services.roster.domain.importing import ImportReport
from services.roster.handlers.auth import AdminDep
from services.roster.handlers.deps import connection
from shared.http_errors import error_responses

router = APIRouter(prefix="/imports", tags=["imports"])
Conn = Annotated[asyncpg.Connection, Depends(connection)]
MAX_BYTES = 50 * 1024 * 1024


@router.post("", responses={
    **error_responses(400, 409, 413),
    200: {"description": "The report: imported (or, on a dry run, would import)."},
    422: {"description": "The report when any row is bad (nothing imported), or an invalid request."},
})
async def import_register(
    file: Annotated[UploadFile, File(description="CSV (UTF-8, UTF-8 BOM, GBK/GB18030) or XLSX register.")],
    conn: Conn,
    actor: AdminDep,
    dry_run: Annotated[bool, Query()] = False,
) -> JSONResponse:
    return await answer_import(file, MAX_BYTES, lambda data, name: commands.import_file(
        conn, data, name, dry_run=dry_run, actor=actor))


async def answer_import(file: UploadFile, max_bytes: int,
                        run: Callable[[bytes, str], Awaitable[ImportReport]]) -> JSONResponse:
    """Read an uploaded sheet (at most ``max_bytes``), ``run`` its import, and answer as the module says.

    413 over the size, :class:`SpreadsheetError`'s own status (400 unreadable, 413 inflating, 422) when
    the sheet cannot be read, else the report with 200, or 422 when any row is bad.
    """
    data = await file.read(max_bytes + 1)
    if len(data) > max_bytes:
        return JSONResponse({"detail": f"file larger than {max_bytes // (1024 * 1024)} MB"}, status_code=413)
    try:
        report = await run(data, file.filename or "")
    except SpreadsheetError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)
    body: dict[str, Any] = report.to_json()
    return JSONResponse(body, status_code=200 if report.ok else 422)
