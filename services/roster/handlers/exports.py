"""``GET /exports/volunteers.csv``: the register as a CSV Excel opens, in the import's columns.

The file is UTF-8 with a BOM (Excel on Chinese Windows reads it as UTF-8), one row per volunteer of the
unit subtree (``unit``, a code prefix; default the whole roster), active ones unless ``active=false``,
ordered by unit code then id; mobiles in their 11 national digits (a leading ``+`` would be taken for a
formula); the columns are the import's (:mod:`services.roster.domain.importing`), so an
edited export imports back. A certificate per row: the first one (the import's rule). A cell starting with
``=``, ``+``, ``-`` or ``@`` is written with a leading ``'`` (:func:`shared.inputs.neutralise_cell`; OWASP
CSV injection) so that Excel shows it instead of running it. Each export is audited (``roster.export``:
who, which unit, how many rows); the file holds mobiles and openids, as the register does.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from services.roster.adapters import repository as repo
from services.roster.admins import audit
from services.roster.handlers.auth import AdminDep
from services.roster.handlers.deps import connection
from shared.inputs import neutralise_cell

router = APIRouter(prefix="/exports", tags=["exports"])
Conn = Annotated[asyncpg.Connection, Depends(connection)]
HEADERS = ("姓名", "手机号码", "区划代码", "技能", "证书编号", "发证日期", "有效期至", "所属队伍", "微信OpenID",
           "经度", "纬度", "坐标系")
_PAGE = 1000


@router.get("/volunteers.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "The register, UTF-8 CSV with a BOM."}})
async def export_volunteers(
    conn: Conn,
    actor: AdminDep,
    unit: Annotated[str | None, Query(pattern=r"^\d{1,12}$", description="Unit code prefix (subtree).")] = None,
    active: bool = True,
) -> Response:
    """The volunteers of ``unit`` as a register CSV (see the module docstring)."""
    teams = {tid: name for name, tid in (await repo.active_team_names(conn)).items()}
    out = io.StringIO()
    out.write("\ufeff")
    w = csv.writer(out)
    w.writerow(HEADERS)
    rows, page = 0, 1
    while True:
        items, total = await repo.search_volunteers(conn, repo.SearchFilter(unit=unit, active=active),
                                                    page=page, page_size=_PAGE)
        for v in items:
            cert = v.certificates[0] if v.certificates else None
            own_point = v.lat is not None and v.lon is not None and not v.position_approximate
            w.writerow([neutralise_cell(c) for c in (
                v.name, v.mobile.removeprefix("+86"), v.unit_code, "、".join(v.skills), cert.number if cert else "",
                cert.issued_on.isoformat() if cert and cert.issued_on else "",
                cert.expires_on.isoformat() if cert and cert.expires_on else "",
                "、".join(teams[t] for t in v.team_ids if t in teams), v.wechat_openid or "",
                v.lon if own_point else "", v.lat if own_point else "", "WGS-84" if own_point else "",
            )])
        rows += len(items)
        if not items or page * _PAGE >= total:
            break
        page += 1
    await audit(conn, actor, "roster.export", unit, None, {"rows": rows, "active": active})
    return Response(out.getvalue().encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="volunteers.csv"'})
