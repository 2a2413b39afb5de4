"""PrecheckSend: resolve an event's audience, apply eligibility, store the snapshot.

Needs an admin or parent_admin. The audience comes only from
dispatch_service.persistence.audience.resolve_audience (the one recipient resolver), so the
precheck and the run it starts can never disagree on who the recipients are.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.models import PrecheckCandidate
from common.vocabulary import RejectionReason
from dispatch_service.domain.actors import WRITERS, Actor
from dispatch_service.domain.eligibility import (
    Candidate,
    PolicyInputs,
    audience_hash,
    blocked_by_reason,
    evaluate_audience,
)
from dispatch_service.domain.ids import id_violation, parse_uuid
from dispatch_service.domain.messaging_limit import Allowance
from dispatch_service.domain.paging import encode_page_token, page_request, single_key
from dispatch_service.domain.pricing import estimate, total
from dispatch_service.domain.template_checks import TemplateCheck
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.persistence.audience import resolve_audience
from dispatch_service.persistence.messaging_limit import allowance, workspace_sending
from dispatch_service.persistence.prechecks import (
    NewPrecheck,
    do_not_message_phones,
    invited_phones,
    list_candidates,
    require_template,
    store_precheck,
)
from dispatch_service.persistence.pricing import rate_card, template_category
from dispatch_service.use_cases.acting import READERS, acting
from dispatch_service.use_cases.template_checks import template_step

UNLIMITED = Allowance(limit=None, used=0, frees_at=None)
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
    allowance: Allowance = UNLIMITED
    """The sender's messaging-limit window now (how many may be started now)."""
    template: TemplateCheck | None = None
    """The template step's facts and notes (use_cases/template_checks)."""
    estimated_cost: Decimal | None = None
    """Every eligible recipient billed at the template's category (None: no rate card)."""
    currency: str = ""

    @property
    def blocked_count(self) -> int:
        """Candidates that would be blocked."""
        return self.total_count - self.eligible_count


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
        if (violation := id_violation(raw, field)) is not None:
            violations.append(violation)
        else:
            ids[field] = parse_uuid(raw, field)
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
    sessions: async_sessionmaker[AsyncSession],
    command: PrecheckCommand,
    ttl_seconds: int,
    parameter_format: str = "positional",
) -> PrecheckResult:
    """Resolve, evaluate and store one precheck (one transaction)."""
    async with acting(sessions, command.actor_id, WRITERS, "run a precheck") as (session, actor):
        return await precheck_in(
            session, actor, command, ttl_seconds, parameter_format=parameter_format
        )


async def precheck_in(
    session: AsyncSession,
    actor: Actor,
    command: PrecheckCommand,
    ttl_seconds: int,
    only_units: frozenset[uuid.UUID] | None = None,
    parameter_format: str = "positional",
) -> PrecheckResult:
    """A precheck in the caller's transaction; `only_units` restricts the resolved audience to
    those households (ResendRun), the rules applied being the same."""
    await require_template(session, actor.workspace_id, command.template_id)
    template = await template_step(
        session, actor.workspace_id, command.template_id, parameter_format, command.event_id
    )
    targets = await resolve_audience(session, actor.workspace_id, command.event_id)
    if only_units is not None:
        targets = [t for t in targets if t.guest_unit_id in only_units]
    inputs = PolicyInputs(
        do_not_message=await do_not_message_phones(session, actor.workspace_id),
        already_invited=await invited_phones(session, command.event_id),
        resend_phones=frozenset(command.resend_phones),
    )
    candidates = evaluate_audience(targets, inputs)
    eligible = sum(1 for c in candidates if c.eligible)
    precheck = NewPrecheck(
        id=uuid.uuid4(),
        workspace_id=actor.workspace_id,
        event_id=command.event_id,
        template_id=command.template_id,
        actor_id=actor.member_id,
        audience_hash=audience_hash(candidates),
        total_count=len(candidates),
        eligible_count=eligible,
        resend_phones=command.resend_phones,
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl_seconds),
    )
    await store_precheck(session, precheck, candidates)
    sender, limit, _ = await workspace_sending(session, actor.workspace_id)
    card = await rate_card(session, actor.workspace_id)
    category = await template_category(session, command.template_id)
    by_prefix = Counter((c.target.phone_e164 or "")[:5] for c in candidates if c.eligible)
    costs = estimate(card, ((prefix, category, n) for prefix, n in sorted(by_prefix.items())))
    return PrecheckResult(
        precheck_id=precheck.id,
        expires_at=precheck.expires_at,
        audience_hash=precheck.audience_hash,
        total_count=precheck.total_count,
        eligible_count=eligible,
        blocked_by_reason=blocked_by_reason(candidates),
        first_page=candidates[: command.page_size],
        allowance=await allowance(session, sender, limit),
        template=template,
        estimated_cost=total(costs) if card.prices else None,
        currency=card.currency,
    )


async def list_precheck_recipients(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    precheck_id: uuid.UUID,
    eligible: bool | None,
    page_size: int,
    page_token: str,
) -> tuple[list[PrecheckCandidate], str]:
    """A page of a precheck's recipients in audience order (any role may read), and the next
    page's token: every recipient can be read, not only PrecheckSend's first page."""
    page = page_request(page_size, page_token, key_length=1)
    after = single_key(page, int, -1)
    async with acting(sessions, actor_id, READERS, "read a precheck") as (session, actor):
        rows = await list_candidates(
            session, actor.workspace_id, precheck_id, eligible, after, page.size + 1
        )
    token = ""
    if len(rows) > page.size:
        rows = rows[: page.size]
        token = encode_page_token([rows[-1].position])
    return rows, token
