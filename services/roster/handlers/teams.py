"""``/teams``: create, read, update, retire, restore and list rescue teams (救援队)."""

from __future__ import annotations

import uuid
from typing import Annotated
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, status

from services.roster import commands
from services.roster.adapters import repository as repo
from services.roster.domain.model import Team
from services.roster.handlers.auth import AdminDep
from services.roster.handlers.bulk import require_confirmation
from services.roster.handlers.deps import connection
from services.roster.handlers.schemas import Page, PageNumber, PageSize, TeamIn, TeamOut, TeamPatch
from shared.http_errors import error_responses
from shared.vocabulary import TeamType

router = APIRouter(prefix="/teams", tags=["teams"])
Conn = Annotated[asyncpg.Connection, Depends(connection)]


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 409))
async def create_team(body: TeamIn, conn: Conn, actor: AdminDep) -> TeamOut:
    """Add a team. 409 when an active team has the name; 422 for unknown unit/members or a leader who is not a member."""
    t = Team(id=uuid.uuid4(), revision=1, name=body.name, team_type=body.team_type, unit_code=body.unit_code,
             leader_id=body.leader_id, member_ids=tuple(body.member_ids), lat=body.lat, lon=body.lon)
    return TeamOut.of(await commands.create_team(conn, t, actor=actor))


@router.get("")
async def list_teams(
    conn: Conn,
    unit: Annotated[str | None, Query(pattern=r"^\d{1,12}$", description="Unit code prefix (subtree).")] = None,
    team_type: TeamType | None = None,
    active: bool = True,
    page: PageNumber = 1,
    page_size: PageSize = 50,
) -> Page[TeamOut]:
    """Teams whose home unit lies in the subtree ``unit``, ordered by unit code then name."""
    items, total = await repo.list_teams(conn, unit=unit, team_type=team_type, active=active, page=page,
                                         page_size=page_size)
    return Page[TeamOut](items=[TeamOut.of(t) for t in items], page=page, page_size=page_size, total=total)


@router.get("/{team_id}", responses=error_responses(404))
async def get_team(
    team_id: UUID,
    conn: Conn,
    include_retired: Annotated[bool, Query(description="Answer a retired team too (with `active: false`).")] = False,
) -> TeamOut:
    """One team. 404 when unknown, or retired (unless ``include_retired``): a retired team is not live."""
    t = await repo.get_team(conn, team_id)
    if t is None:
        raise commands.NotFound(f"no team {team_id}")
    if not t.active and not include_retired:
        raise commands.NotFound(f"team {team_id} is retired (include_retired=true to read it)")
    return TeamOut.of(t)


@router.patch("/{team_id}", responses=error_responses(400, 404, 409))
async def update_team(team_id: UUID, body: TeamPatch, conn: Conn, actor: AdminDep) -> TeamOut:
    """Change the fields given; ``member_ids`` replaces the member list."""
    return TeamOut.of(await commands.update_team(conn, team_id, body.changes(), actor=actor))


@router.delete("/{team_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 428))
async def retire_team(team_id: UUID, request: Request, conn: Conn, actor: AdminDep) -> None:
    """Retire a team (tombstone published; members' profiles republished without it); restorable with its id.

    428 past the bulk threshold until confirmed (:mod:`services.roster.handlers.bulk`).
    """
    await require_confirmation(request, conn, actor)
    await commands.retire_team(conn, team_id, actor=actor)


@router.post("/{team_id}/restore", responses=error_responses(404, 409))
async def restore_team(team_id: UUID, conn: Conn, actor: AdminDep) -> TeamOut:
    """Make a retired team active again with its id (members still on the roster, snapshots published).

    404 unknown, 409 active or its name taken by an active team.
    """
    return TeamOut.of(await commands.restore_team(conn, team_id, actor=actor))
