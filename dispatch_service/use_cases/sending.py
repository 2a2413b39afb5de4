"""ConfigureSending: the workspace's messaging limit and quiet hours (read by any role, set by a
parent_admin, audited as workspace.configure_sending)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import LimitSource
from dispatch_service.domain.actors import SENDERS
from dispatch_service.domain.messaging_limit import Allowance, LimitAnnouncement, parse_limit
from dispatch_service.domain.quiet_hours import parse_window
from dispatch_service.persistence.audit_log import record_audit
from dispatch_service.persistence.messaging_limit import (
    allowance,
    record_provider_limit,
    set_workspace_sending,
    workspace_sending,
)
from dispatch_service.use_cases.acting import READERS, acting

log = logging.getLogger(__name__)

CLEAR = ("none", "off")


@dataclass(frozen=True)
class SendingSettings:
    """The workspace's sending settings and its messaging-limit window now."""

    messaging_limit: int | None
    send_window: str | None
    window: Allowance


@dataclass(frozen=True)
class SendingChange:
    """What ConfigureSending sets: each field None when kept, else its (validated) new value."""

    messaging_limit: tuple[int | None] | None = None
    send_window: tuple[str | None] | None = None

    @property
    def changes(self) -> bool:
        """Whether anything is set."""
        return self.messaging_limit is not None or self.send_window is not None


def sending_change(messaging_limit: str, send_window: str) -> SendingChange:
    """Validate the raw fields (empty: keep; "unlimited" / "none": clear)."""
    limit = (parse_limit(messaging_limit),) if messaging_limit else None
    window: tuple[str | None] | None = None
    if send_window:
        cleared = send_window.strip().lower() in CLEAR
        window = (None,) if cleared else (str(parse_window(send_window)),)
    return SendingChange(messaging_limit=limit, send_window=window)


async def configure_sending(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    messaging_limit: str = "",
    send_window: str = "",
) -> SendingSettings:
    """Set what is given (validated first), then answer the settings now."""
    change = sending_change(messaging_limit, send_window)
    allowed = SENDERS if change.changes else READERS
    async with acting(sessions, actor_id, allowed, "configure sending") as (session, actor):
        sender, old_limit, old_window = await workspace_sending(session, actor.workspace_id)
        limit = change.messaging_limit[0] if change.messaging_limit else old_limit
        window = change.send_window[0] if change.send_window else old_window
        if change.changes:
            await set_workspace_sending(session, actor.workspace_id, limit, window)
            record_audit(
                session,
                workspace_id=actor.workspace_id,
                actor_id=actor.member_id,
                action="workspace.configure_sending",
                subject_type="workspace",
                subject_id=actor.workspace_id,
                details={
                    "messaging_limit": [old_limit, limit],
                    "send_window": [old_window, window],
                },
            )
        return SendingSettings(limit, window, await allowance(session, sender, limit))


async def record_limits(
    session: AsyncSession, announced: Sequence[LimitAnnouncement], sender: str = ""
) -> None:
    """Meta's word on messaging limits (its webhooks, or the phone number `sender` read by
    SyncTemplates): each workspace of the account (or number) takes the newest one, audited as
    ``workspace.messaging_limit`` (actor: none, source: provider)."""
    for announcement in sorted(announced, key=lambda a: a.at):
        changes = await record_provider_limit(
            session, announcement.waba_id, sender, announcement.limit, announcement.at
        )
        for change in changes:
            record_audit(
                session,
                workspace_id=change.workspace_id,
                actor_id=None,
                action="workspace.messaging_limit",
                subject_type="workspace",
                subject_id=change.workspace_id,
                details={
                    "from": change.before,
                    "to": change.after,
                    "source": LimitSource.PROVIDER.value,
                    "field": announcement.field,
                },
            )
            log.info(
                "messaging limit %s (from Meta, was %s)",
                change.after or "unlimited",
                change.before or "unlimited",
                extra={"workspace_id": change.workspace_id},
            )
