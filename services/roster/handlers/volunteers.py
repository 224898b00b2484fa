"""``/volunteers``: create, read, update, retire and search volunteers.

Search (``GET /volunteers``) is what dispatch's drills and operators use::

    GET /volunteers?unit=330603&skill=first_aid&certified_on=2026-11-29&availability=available&page=1&page_size=100

``unit`` is a code prefix (a county's 6 digits = the whole county), results are ordered by unit
code then id, each with id, name, mobile (E.164), unit_code, skills, certificates, availability
and team ids. Indexed: prefix b-tree on ``unit_code``, GIN on ``skills``.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, status

from services.roster import commands
from services.roster.adapters import repository as repo
from services.roster.domain.model import MAX_NAME, Volunteer
from services.roster.handlers.auth import AdminDep
from services.roster.handlers.bulk import require_confirmation
from services.roster.handlers.deps import connection
from services.roster.handlers.schemas import (
    Page,
    PageNumber,
    PageSize,
    SkillCode,
    VolunteerIn,
    VolunteerOut,
    VolunteerPatch,
)
from shared.events import Availability
from shared.http_errors import error_responses
from shared.inputs import SingleLine

router = APIRouter(prefix="/volunteers", tags=["volunteers"])
Conn = Annotated[asyncpg.Connection, Depends(connection)]


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 409))
async def create_volunteer(body: VolunteerIn, conn: Conn, actor: AdminDep) -> VolunteerOut:
    """Add a volunteer. 409 when the mobile is taken; 422 for an unknown unit or skill."""
    v = Volunteer(
        id=uuid.uuid4(), revision=1, name=body.name, mobile=body.mobile, unit_code=body.unit_code, lat=body.lat,
        lon=body.lon, skills=tuple(dict.fromkeys(body.skills)), certificates=tuple(c.to_domain() for c in body.certificates),
        availability=body.availability, unavailable_until=body.unavailable_until, wechat_openid=body.wechat_openid,
        wechat_subscribed=body.wechat_subscribed, preferred_channel=body.preferred_channel, consent=body.consent,
        sms_consent=body.sms_consent, cardiac_alerts=body.cardiac_alerts,
    )
    return VolunteerOut.of(await commands.create_volunteer(conn, v, actor=actor))


@router.get("")
async def search_volunteers(
    conn: Conn,
    unit: Annotated[str | None, Query(pattern=r"^\d{1,12}$", description="Unit code prefix (subtree).")] = None,
    skill: Annotated[SkillCode | None, Query()] = None,
    certified_on: Annotated[date | None, Query(description="A certificate (of `skill` if given) valid on this day.")] = None,
    availability: Availability | None = None,
    active: bool = True,
    name: Annotated[SingleLine | None, Query(max_length=MAX_NAME)] = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
) -> Page[VolunteerOut]:
    """Search volunteers (see the module docstring)."""
    f = repo.SearchFilter(unit=unit, skill=skill, certified_on=certified_on, availability=availability,
                          active=active, name=name)
    items, total = await repo.search_volunteers(conn, f, page=page, page_size=page_size)
    return Page[VolunteerOut](items=[VolunteerOut.of(v) for v in items], page=page, page_size=page_size, total=total)


@router.get("/{volunteer_id}", responses=error_responses(404))
async def get_volunteer(volunteer_id: UUID, conn: Conn) -> VolunteerOut:
    """One volunteer (retired ones too). 404 when unknown."""
    v = await repo.get_volunteer(conn, volunteer_id)
    if v is None:
        raise commands.NotFound(f"no volunteer {volunteer_id}")
    return VolunteerOut.of(v)


@router.patch("/{volunteer_id}", responses=error_responses(400, 404, 409))
async def update_volunteer(volunteer_id: UUID, body: VolunteerPatch, conn: Conn, actor: AdminDep) -> VolunteerOut:
    """Change the fields given; the revision grows when anything changed."""
    return VolunteerOut.of(await commands.update_volunteer(conn, volunteer_id, body.changes(), actor=actor))


@router.delete("/{volunteer_id}", responses=error_responses(404, 428))
async def retire_volunteer(volunteer_id: UUID, request: Request, conn: Conn, actor: AdminDep) -> VolunteerOut:
    """Retire a volunteer (kept, inactive; tombstones published). 404 when unknown or already retired.

    428 past the bulk threshold until confirmed (:mod:`services.roster.handlers.bulk`).
    """
    await require_confirmation(request, conn, actor)
    return VolunteerOut.of(await commands.retire_volunteer(conn, volunteer_id, actor=actor))


@router.post("/{volunteer_id}/restore", responses=error_responses(404, 409))
async def restore_volunteer(volunteer_id: UUID, conn: Conn, actor: AdminDep) -> VolunteerOut:
    """Make a retired volunteer active again (snapshots published; teams not restored). 404 unknown, 409 active."""
    return VolunteerOut.of(await commands.restore_volunteer(conn, volunteer_id, actor=actor))
