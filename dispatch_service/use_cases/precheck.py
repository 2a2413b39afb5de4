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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.models import PrecheckCandidate
from common.vocabulary import RejectionReason
from dispatch_service.domain.actors import WRITERS, Actor
from dispatch_service.domain.eligibility import Candidate
from dispatch_service.domain.ids import id_violation, parse_uuid
from dispatch_service.domain.languages import LanguagePolicy, resolve
from dispatch_service.domain.messaging_limit import Allowance
from dispatch_service.domain.meta_templates import normalise_language
from dispatch_service.domain.paging import encode_page_token, page_request, single_key
from dispatch_service.domain.pricing import estimate, total
from dispatch_service.domain.template_checks import TemplateCheck
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.persistence.audience import audience_select
from dispatch_service.persistence.messaging_limit import allowance, workspace_sending
from dispatch_service.persistence.prechecks import (
    NewPrecheck,
    evaluate_and_store,
    list_candidates,
    require_template,
    template_translations,
)
from dispatch_service.persistence.pricing import precheck_eligible, rate_card, template_category
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
    fallback_language: str = ""
    """For guests no approved translation fits: "" the template's own language, NO_FALLBACK
    none (they are blocked no_approved_translation), else that approved language."""


NO_FALLBACK = "none"


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
    by_language: dict[str, int] = field(default_factory=dict)
    """Eligible recipients per template translation they get (domain/languages.py)."""
    languages: LanguagePolicy | None = None

    def language_of(self, candidate: Candidate) -> str:
        """The translation an eligible candidate gets ("" for a blocked one)."""
        if not candidate.eligible or self.languages is None:
            return ""
        return resolve(candidate.target.preferred_language, self.languages) or ""

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
    fallback_language: str = "",
) -> PrecheckCommand:
    """Validate the raw request; InvalidArgument lists every bad field."""
    violations: list[FieldViolation] = []
    ids: dict[str, uuid.UUID] = {}
    for name, raw in (("event_id", event_id), ("template_id", template_id)):
        if (violation := id_violation(raw, name)) is not None:
            violations.append(violation)
        else:
            ids[name] = parse_uuid(raw, name)
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
        fallback_language=fallback_language.strip(),
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
    """A precheck in the caller's transaction, resolved, judged and stored in Postgres;
    `only_units` restricts the audience to those households (ResendRun), the rules applied
    being the same."""
    await require_template(session, actor.workspace_id, command.template_id)
    template = await template_step(
        session, actor.workspace_id, command.template_id, parameter_format, command.event_id
    )
    resolved = await audience_select(session, actor.workspace_id, command.event_id, only_units)
    languages = await _language_policy(
        session, actor.workspace_id, command.template_id, command.fallback_language
    )
    precheck = NewPrecheck(
        id=uuid.uuid4(),
        workspace_id=actor.workspace_id,
        event_id=command.event_id,
        template_id=command.template_id,
        actor_id=actor.member_id,
        resend_phones=command.resend_phones,
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl_seconds),
        languages=languages,
    )
    stored = await evaluate_and_store(session, precheck, resolved, command.page_size)
    sender, limit, _ = await workspace_sending(session, actor.workspace_id)
    card = await rate_card(session, actor.workspace_id)
    category = await template_category(session, command.template_id)
    prefixes = await precheck_eligible(session, precheck.id) if card.prices else []
    costs = estimate(card, ((prefix, category, n) for prefix, n in prefixes))
    return PrecheckResult(
        precheck_id=precheck.id,
        expires_at=precheck.expires_at,
        audience_hash=stored.audience_hash,
        total_count=stored.total_count,
        eligible_count=stored.eligible_count,
        blocked_by_reason=stored.blocked_by_reason,
        first_page=stored.first_page,
        allowance=await allowance(session, sender, limit),
        template=template,
        estimated_cost=total(costs) if card.prices else None,
        currency=card.currency,
        by_language=stored.by_language,
        languages=languages,
    )


async def _language_policy(
    session: AsyncSession, workspace_id: uuid.UUID, template_id: uuid.UUID, fallback: str
) -> LanguagePolicy:
    """The approved translations of the template's name, and the fallback the request asks for
    (InvalidArgument for a fallback that is not one of them)."""
    language, approved = await template_translations(session, workspace_id, template_id)
    if not fallback:
        return LanguagePolicy(approved, language, language)
    if fallback.lower() == NO_FALLBACK:
        return LanguagePolicy(approved, None, language)
    chosen = normalise_language(fallback)
    if chosen not in approved:
        known = ", ".join(sorted(approved)) or "none"
        raise InvalidArgument(
            FieldViolation(
                "fallback_language",
                f"must be an approved translation of the template ({known}) or {NO_FALLBACK}",
            )
        )
    return LanguagePolicy(approved, chosen, language)


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
