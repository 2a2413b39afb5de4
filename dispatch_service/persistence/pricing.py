"""Pricing reads: a workspace's rate card, a run's billable messages, a precheck's eligible
recipients, grouped by phone prefix (enough for any calling code) and category."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_service.domain.pricing import RateCard


def rates_sql(workspace: str = ":workspace") -> str:
    """The rate card's rows of the workspace `workspace` (a parameter, or a column of an
    enclosing statement)."""
    return f"""
        SELECT country_code, category, price::text AS price, currency FROM workspace_rate
        WHERE workspace_id = {workspace} ORDER BY country_code, category
    """


RATES = text(rates_sql())
# '+' and at most four digits: the longest calling code a rate may name.
PRECHECK_ELIGIBLE = text("""
    SELECT substr(phone_e164, 1, 5) AS prefix, count(*) AS n
    FROM precheck_candidate WHERE precheck_id = :precheck AND eligible
    GROUP BY 1 ORDER BY 1
""")
DELETE_RATES = text("DELETE FROM workspace_rate WHERE workspace_id = :workspace")
INSERT_RATES = text("""
    INSERT INTO workspace_rate (workspace_id, country_code, category, price, currency)
    SELECT :workspace, v.country_code, v.category, v.price, :currency
    FROM unnest(CAST(:codes AS text[]), CAST(:categories AS text[]), CAST(:prices AS numeric[]))
      AS v(country_code, category, price)
""")


async def rate_card(session: AsyncSession, workspace_id: uuid.UUID) -> RateCard:
    """The workspace's rate card (empty when it has none)."""
    rows = (await session.execute(RATES, {"workspace": workspace_id})).mappings().all()
    return card_of(rows)


def card_of(rows: Sequence[Mapping[str, Any]] | Sequence[RowMapping]) -> RateCard:
    """The rate card rates_sql's rows describe."""
    return RateCard(
        prices={(r["country_code"], r["category"]): Decimal(r["price"]) for r in rows},
        currency=rows[0]["currency"] if rows else "",
    )


async def replace_rate_card(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    rates: Iterable[tuple[str, str, Decimal]],
    currency: str,
) -> None:
    """The workspace's rate card becomes `rates` (calling code, category, price)."""
    rates = list(rates)
    await session.execute(DELETE_RATES, {"workspace": workspace_id})
    if rates:
        await session.execute(
            INSERT_RATES,
            {
                "workspace": workspace_id,
                "currency": currency,
                "codes": [r[0] for r in rates],
                "categories": [r[1] for r in rates],
                "prices": [r[2] for r in rates],
            },
        )


async def precheck_eligible(session: AsyncSession, precheck_id: uuid.UUID) -> list[tuple[str, int]]:
    """The precheck's eligible recipients as (phone prefix, count)."""
    rows = await session.execute(PRECHECK_ELIGIBLE, {"precheck": precheck_id})
    return [(r.prefix or "", int(r.n)) for r in rows]


TEMPLATE_CATEGORY = text("SELECT category FROM template WHERE id = :template")


async def template_category(session: AsyncSession, template_id: uuid.UUID) -> str:
    """The template's category as a pricing category (MARKETING -> marketing)."""
    value = await session.scalar(TEMPLATE_CATEGORY, {"template": template_id})
    return str(value or "").lower()
