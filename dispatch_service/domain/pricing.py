"""What a message costs (pure): the provider's pricing block and a workspace's rate card.

Meta reports ``pricing`` with a status (sent, delivered or read): ``pricing_model`` (PMP since
July 2025), ``type`` (``regular`` is billed; ``free_customer_service``, ``free_entry_point``,
``free_group_customer_service`` are not) and ``category``. ``billable`` is deprecated: a
message is billable when its type is ``regular``; only without a type does the flag decide.
Meta spells one category ``authentication-international`` in pricing and
``authentication_international`` elsewhere; both are stored with the underscore.

A rate card prices one billable message per country calling code (``1``, ``44``, ``351``; ``*``
for any other) and category. A message's rate is the card's entry for its category and the
longest calling code its phone starts with, else ``*``, else none (then it adds nothing and the
estimate says how many messages had no rate).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

ANY_COUNTRY = "*"


@dataclass(frozen=True, slots=True)
class Pricing:
    """The pricing block a provider reported with a status."""

    billable: bool
    category: str
    model: str = ""
    type: str = ""


def pricing(billable: bool, category: str, model: str = "", type_: str = "") -> Pricing:
    """A reported block, normalised (category lower-case with underscores; billable from the
    type when there is one)."""
    category = category.strip().lower().replace("-", "_")
    type_ = type_.strip().lower()
    return Pricing(
        billable=(type_ == "regular") if type_ else billable,
        category=category,
        model=model.strip().upper(),
        type=type_,
    )


@dataclass(frozen=True)
class RateCard:
    """A workspace's prices: (calling code or '*', category) -> price per billable message."""

    prices: Mapping[tuple[str, str], Decimal]
    currency: str = ""

    def rate(self, phone_e164: str | None, category: str) -> Decimal | None:
        """The price of one billable message of `category` to `phone_e164` (None: no rate)."""
        digits = (phone_e164 or "").lstrip("+")
        for length in range(4, 0, -1):
            price = self.prices.get((digits[:length], category)) if len(digits) >= length else None
            if price is not None:
                return price
        return self.prices.get((ANY_COUNTRY, category))


@dataclass(frozen=True)
class CategoryCost:
    """Billable messages of one category and their estimated cost."""

    category: str
    billable: int
    cost: Decimal
    unpriced: int = 0
    """Billable messages the rate card has no price for (counted, not costed)."""


def estimate(card: RateCard, billable: Iterable[tuple[str | None, str, int]]) -> list[CategoryCost]:
    """Per category, the count and estimated cost of (phone, category, count) groups."""
    totals: dict[str, tuple[int, Decimal, int]] = {}
    for phone, category, count in billable:
        n, cost, unpriced = totals.get(category, (0, Decimal(0), 0))
        price = card.rate(phone, category)
        if price is None:
            totals[category] = (n + count, cost, unpriced + count)
        else:
            totals[category] = (n + count, cost + price * count, unpriced)
    return [CategoryCost(c, n, cost, u) for c, (n, cost, u) in sorted(totals.items())]


def total(costs: Iterable[CategoryCost]) -> Decimal:
    """The estimate over every category."""
    return sum((c.cost for c in costs), Decimal(0))
