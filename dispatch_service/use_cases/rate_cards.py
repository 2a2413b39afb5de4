"""Rate cards: a workspace's prices per country calling code and pricing category.

Only a parent admin replaces the card (audited as ``rate_card.set``); any member reads it.
Validation refuses the whole request, naming every bad field.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch_service.domain.actors import SENDERS
from dispatch_service.domain.pricing import ANY_COUNTRY, RateCard, pricing
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.persistence.audit_log import record_audit
from dispatch_service.persistence.pricing import rate_card, replace_rate_card
from dispatch_service.use_cases.acting import READERS, acting

CALLING_CODE = re.compile(r"^[1-9][0-9]{0,3}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")


def validate_rates(
    currency: str, rates: Sequence[tuple[str, str, str]]
) -> tuple[str, list[tuple[str, str, Decimal]]]:
    """(currency, [(code, category, price)]) checked and normalised; InvalidArgument otherwise."""
    violations = []
    currency = currency.strip().upper() or "USD"
    if not CURRENCY.match(currency):
        violations.append(FieldViolation("rate_card.currency", "must be an ISO 4217 code"))
    result: list[tuple[str, str, Decimal]] = []
    seen: set[tuple[str, str]] = set()
    for i, (code, category, price) in enumerate(rates):
        field = f"rate_card.rates[{i}]"
        code = code.strip().lstrip("+")
        if code != ANY_COUNTRY and not CALLING_CODE.match(code):
            violations.append(FieldViolation(f"{field}.country_code", "must be 1-4 digits or *"))
        category = pricing(True, category).category
        if not category:
            violations.append(FieldViolation(f"{field}.category", "is required"))
        try:
            value = Decimal(price.strip())
            if not value.is_finite() or value < 0 or value >= 1_000_000:
                raise InvalidOperation
        except InvalidOperation:
            violations.append(FieldViolation(f"{field}.price", "must be a decimal >= 0"))
            continue
        if (code, category) in seen:
            violations.append(FieldViolation(field, "repeats a country code and category"))
        seen.add((code, category))
        result.append((code, category, value))
    if violations:
        raise InvalidArgument(*violations)
    return currency, result


async def set_rate_card(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    currency: str,
    rates: Sequence[tuple[str, str, str]],
) -> RateCard:
    """Replace the actor's workspace's rate card; the card as stored."""
    currency, checked = validate_rates(currency, rates)
    async with acting(sessions, actor_id, SENDERS, "set the rate card") as (session, actor):
        await replace_rate_card(session, actor.workspace_id, checked, currency)
        record_audit(
            session,
            workspace_id=actor.workspace_id,
            actor_id=actor.member_id,
            action="rate_card.set",
            subject_type="workspace",
            subject_id=actor.workspace_id,
            details={"currency": currency, "rates": len(checked)},
        )
        await session.flush()
        return await rate_card(session, actor.workspace_id)


async def get_rate_card(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID
) -> RateCard:
    """The actor's workspace's rate card."""
    async with acting(sessions, actor_id, READERS, "read the rate card") as (session, actor):
        return await rate_card(session, actor.workspace_id)
