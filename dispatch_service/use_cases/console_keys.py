"""Console sign-in keys: a member issues one for themselves; the console resolves it at sign-in.

A key is 32 random bytes (URL-safe text with an `ick_` prefix); only its SHA-256 is stored, so a
database dump signs nobody in. Resolving answers the membership as stored now: a removed member's
keys stop working, and the role the console acts with is read from the database on every call it
makes afterwards (the console sends the membership id as `x-actor-id` like any backend).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.models import Membership, Workspace
from dispatch_service.errors import FieldViolation, InvalidArgument, Unauthenticated
from dispatch_service.persistence.audit_log import record_audit
from dispatch_service.persistence.console_keys import insert_console_key, member_of_key
from dispatch_service.persistence.workspaces import get_active_member
from dispatch_service.use_cases.acting import READERS, acting

KEY_PREFIX = "ick_"
MAX_KEY_CHARS = 200


def digest(key: str) -> bytes:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).digest()


async def issue_console_key(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID
) -> tuple[str, Membership]:
    """A new key for the acting member (any role), audited as ``console_key.issue``."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with acting(sessions, actor_id, READERS, "issue console keys") as (session, actor):
        member = await get_active_member(session, actor.workspace_id, actor.member_id)
        insert_console_key(session, member.id, digest(key))
        record_audit(
            session,
            workspace_id=actor.workspace_id,
            actor_id=actor.member_id,
            action="console_key.issue",
            subject_type="membership",
            subject_id=member.id,
            details={},
        )
    return key, member


async def resolve_console_key(
    sessions: async_sessionmaker[AsyncSession], key: str
) -> tuple[Membership, Workspace]:
    """The active membership of `key`, or Unauthenticated (the same answer for every failure)."""
    key = key.strip()
    if not key or len(key) > MAX_KEY_CHARS:
        raise InvalidArgument(FieldViolation("console_key", "is required"))
    async with sessions() as session:
        found = await member_of_key(session, digest(key))
    if found is None:
        raise Unauthenticated("unknown console key, or its member was removed")
    return found
