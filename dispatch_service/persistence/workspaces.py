"""Workspaces and memberships in Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import Membership, Workspace
from common.vocabulary import Role
from dispatch_service.errors import NotFound


async def insert_workspace(
    session: AsyncSession,
    *,
    name: str,
    default_region: str,
    sender_phone_number_id: str,
    sender_provider: str = "meta",
    twilio_account_sid: str | None = None,
    waba_id: str | None = None,
) -> Workspace:
    """A new workspace (flushed, so it has its id)."""
    workspace = Workspace(
        id=uuid.uuid4(),
        name=name,
        default_region=default_region,
        sender_phone_number_id=sender_phone_number_id,
        sender_provider=sender_provider,
        twilio_account_sid=twilio_account_sid,
        waba_id=waba_id,
    )
    session.add(workspace)
    await session.flush()
    return workspace


async def get_workspace(session: AsyncSession, workspace_id: uuid.UUID) -> Workspace:
    """The workspace (the actor's own: it always exists)."""
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound("no such workspace", reason="WORKSPACE_NOT_FOUND")
    return workspace


async def insert_member(
    session: AsyncSession, *, workspace_id: uuid.UUID, display_name: str, role: Role
) -> Membership:
    """A new active membership."""
    member = Membership(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        display_name=display_name,
        role=role.value,
        active=True,
    )
    session.add(member)
    await session.flush()
    return member


async def lock_workspace(session: AsyncSession, workspace_id: uuid.UUID) -> None:
    """Serialise membership changes of one workspace until this transaction ends."""
    await session.execute(
        select(Workspace.id).where(Workspace.id == workspace_id).with_for_update()
    )


async def get_active_member(
    session: AsyncSession, workspace_id: uuid.UUID, member_id: uuid.UUID
) -> Membership:
    """An active membership of the workspace, or NotFound."""
    member = await session.scalar(
        select(Membership).where(
            Membership.id == member_id,
            Membership.workspace_id == workspace_id,
            Membership.active,
        )
    )
    if member is None:
        raise NotFound("no such active member in this workspace", reason="MEMBER_NOT_FOUND")
    return member


async def count_parent_admins(session: AsyncSession, workspace_id: uuid.UUID) -> int:
    """How many active parent_admins the workspace has."""
    count = await session.scalar(
        select(func.count()).where(
            Membership.workspace_id == workspace_id,
            Membership.active,
            Membership.role == Role.PARENT_ADMIN.value,
        )
    )
    return int(count or 0)


def deactivate_member(member: Membership) -> None:
    """Mark a membership removed (kept for history and audit)."""
    member.active = False
    member.removed_at = datetime.now(UTC)


async def list_active_members(session: AsyncSession, workspace_id: uuid.UUID) -> list[Membership]:
    """The workspace's active members, oldest first."""
    members = await session.scalars(
        select(Membership)
        .where(Membership.workspace_id == workspace_id, Membership.active)
        .order_by(Membership.created_at, Membership.id)
    )
    return list(members)
