"""Console keys: stored as SHA-256 digests of the key, looked up by digest."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import ConsoleKey, Membership, Workspace


def insert_console_key(session: AsyncSession, membership_id: uuid.UUID, digest: bytes) -> None:
    """Store a key's digest for `membership_id`."""
    session.add(ConsoleKey(id=uuid.uuid4(), membership_id=membership_id, key_sha256=digest))


async def member_of_key(
    session: AsyncSession, digest: bytes
) -> tuple[Membership, Workspace] | None:
    """The active membership (and its workspace) a key digest belongs to, else None."""
    row = (
        await session.execute(
            select(Membership, Workspace)
            .join(ConsoleKey, ConsoleKey.membership_id == Membership.id)
            .join(Workspace, Workspace.id == Membership.workspace_id)
            .where(ConsoleKey.key_sha256 == digest, Membership.active)
        )
    ).one_or_none()
    return None if row is None else (row[0], row[1])
