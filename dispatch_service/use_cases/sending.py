"""ConfigureSending: the workspace's messaging limit and quiet hours (read by any role, set by a
parent_admin, audited as workspace.configure_sending)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch_service.domain.actors import SENDERS
from dispatch_service.domain.messaging_limit import Allowance, parse_limit
from dispatch_service.domain.quiet_hours import parse_window
from dispatch_service.persistence.audit_log import record_audit
from dispatch_service.persistence.messaging_limit import (
    allowance,
    set_workspace_sending,
    workspace_sending,
)
from dispatch_service.use_cases.acting import READERS, acting

CLEAR = ("none", "off", "")
_KEEP = object()


@dataclass(frozen=True)
class SendingSettings:
    """The workspace's sending settings and its messaging-limit window now."""

    messaging_limit: int | None
    send_window: str | None
    window: Allowance


async def configure_sending(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    messaging_limit: str = "",
    send_window: str = "",
) -> SendingSettings:
    """Set what is given (validated first), then answer the settings now."""
    limit = parse_limit(messaging_limit) if messaging_limit else _KEEP
    window: object = _KEEP
    if send_window:
        window = None if send_window.strip().lower() in CLEAR else str(parse_window(send_window))
    changing = limit is not _KEEP or window is not _KEEP
    allowed = SENDERS if changing else READERS
    async with acting(sessions, actor_id, allowed, "configure sending") as (session, actor):
        sender, old_limit, old_window = await workspace_sending(session, actor.workspace_id)
        new_limit = old_limit if limit is _KEEP else limit
        new_window = old_window if window is _KEEP else window
        assert new_limit is None or isinstance(new_limit, int)
        assert new_window is None or isinstance(new_window, str)
        if changing:
            await set_workspace_sending(session, actor.workspace_id, new_limit, new_window)
            record_audit(
                session,
                workspace_id=actor.workspace_id,
                actor_id=actor.member_id,
                action="workspace.configure_sending",
                subject_type="workspace",
                subject_id=actor.workspace_id,
                details={
                    "messaging_limit": [old_limit, new_limit],
                    "send_window": [old_window, new_window],
                },
            )
        return SendingSettings(new_limit, new_window, await allowance(session, sender, new_limit))
