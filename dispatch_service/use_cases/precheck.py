"""PrecheckSend: resolve an event's audience, apply eligibility, store the snapshot.

Needs an admin or parent_admin. The audience comes only from
dispatch_service.persistence.audience.audience_select (the one recipient resolver), and the run
starts from the stored snapshot, so the precheck and its run can never disagree on who the
recipients are. Resolution, eligibility and the snapshot are one statement in Postgres
(persistence.prechecks.evaluate_and_store); Python validates, and maps the answer.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import RejectionReason
from dispatch_service.domain.actors import WRITERS
from dispatch_service.domain.eligibility import Candidate
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.persistence.audience import audience_select
from dispatch_service.persistence.prechecks import (
    NewPrecheck,
    evaluate_and_store,
    require_template,
)
from dispatch_service.use_cases.acting import acting

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass(frozen=True)
class PrecheckCommand:
    """A validated PrecheckSend request."""

    actor_id: uuid.UUID
    event_id: uuid.UUID
    template_id: uuid.UUID
    page_size: int
    resend_phones: tuple[str, ...]


@dataclass(frozen=True)
class PrecheckResult:
    """What PrecheckSend answers."""

    precheck_id: uuid.UUID
    expires_at: datetime
    audience_hash: str
    total_count: int
    eligible_count: int
    blocked_by_reason: dict[RejectionReason, int]
    first_page: list[Candidate]

    @property
    def blocked_count(self) -> int:
        """Candidates that would be blocked."""
        return self.total_count - self.eligible_count


def parse_uuid(value: str, field: str) -> uuid.UUID:
    """`value` as a UUID, or InvalidArgument naming `field`."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(FieldViolation(field, "must be a UUID")) from None


def precheck_command(
    actor_id: uuid.UUID,
    event_id: str,
    template_id: str,
    page_size: int,
    resend_phones: Sequence[str],
) -> PrecheckCommand:
    """Validate the raw request; InvalidArgument lists every bad field."""
    violations: list[FieldViolation] = []
    ids: dict[str, uuid.UUID] = {}
    for field, raw in (("event_id", event_id), ("template_id", template_id)):
        try:
            ids[field] = uuid.UUID(raw)
        except ValueError:
            violations.append(FieldViolation(field, "must be a UUID"))
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        violations.append(FieldViolation("page_size", f"must be 0..{MAX_PAGE_SIZE}"))
    bad = [p for p in resend_phones if not E164.match(p)]
    if bad:
        violations.append(
            FieldViolation("resend_phones", f"must be E.164 like +14155550123: {', '.join(bad)}")
        )
    if violations:
        raise InvalidArgument(*violations)
    return PrecheckCommand(
        actor_id=actor_id,
        event_id=ids["event_id"],
        template_id=ids["template_id"],
        page_size=page_size or DEFAULT_PAGE_SIZE,
        resend_phones=tuple(dict.fromkeys(resend_phones)),
    )


async def precheck_send(
    sessions: async_sessionmaker[AsyncSession], command: PrecheckCommand, ttl_seconds: int
) -> PrecheckResult:
    """Resolve, evaluate and store one precheck (one transaction)."""
    async with acting(sessions, command.actor_id, WRITERS, "run a precheck") as (session, actor):
        await require_template(session, actor.workspace_id, command.template_id)
        resolved = await audience_select(session, actor.workspace_id, command.event_id)
        precheck = NewPrecheck(
            id=uuid.uuid4(),
            workspace_id=actor.workspace_id,
            event_id=command.event_id,
            template_id=command.template_id,
            actor_id=actor.member_id,
            resend_phones=command.resend_phones,
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl_seconds),
        )
        stored = await evaluate_and_store(session, precheck, resolved, command.page_size)
    return PrecheckResult(
        precheck_id=precheck.id,
        expires_at=precheck.expires_at,
        audience_hash=stored.audience_hash,
        total_count=stored.total_count,
        eligible_count=stored.eligible_count,
        blocked_by_reason=stored.blocked_by_reason,
        first_page=stored.first_page,
    )
