"""Pure rules of cost estimates and change-stream cursors."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from dispatch_service.domain.changes import ChangeFilter, ChangeKind, page_size, parse_cursor
from dispatch_service.domain.pricing import CategoryCost, RateCard, estimate, pricing, total
from dispatch_service.errors import InvalidArgument

CARD = RateCard(
    prices={
        ("1", "marketing"): Decimal("0.025"),
        ("1242", "marketing"): Decimal("0.07"),
        ("44", "marketing"): Decimal("0.05"),
        ("*", "marketing"): Decimal("0.06"),
        ("44", "utility"): Decimal("0.02"),
    },
    currency="USD",
)


def test_billable_follows_the_type_and_the_flag_only_without_one() -> None:
    assert pricing(False, "marketing", "pmp", "regular").billable
    assert not pricing(True, "utility", "PMP", "free_customer_service").billable
    assert pricing(True, "marketing").billable
    assert not pricing(False, "marketing").billable
    block = pricing(True, "Authentication-International", "pmp", "Regular")
    assert (block.category, block.model, block.type) == (
        "authentication_international",
        "PMP",
        "regular",
    )


@pytest.mark.parametrize(
    ("phone", "category", "price"),
    [
        ("+14155550001", "marketing", Decimal("0.025")),
        ("+12425550001", "marketing", Decimal("0.07")),  # the longest calling code wins
        ("+447700900000", "marketing", Decimal("0.05")),
        ("+351912345678", "marketing", Decimal("0.06")),  # any other country
        ("+447700900000", "utility", Decimal("0.02")),
        ("+14155550001", "utility", None),  # no rate: counted, not costed
        (None, "marketing", Decimal("0.06")),
    ],
)
def test_the_rate_of_a_message(phone: str | None, category: str, price: Decimal | None) -> None:
    assert CARD.rate(phone, category) == price


def test_estimate_sums_per_category_and_counts_unpriced_messages() -> None:
    costs = estimate(
        CARD,
        [("+1415", "marketing", 3), ("+4477", "marketing", 2), ("+1415", "utility", 4)],
    )
    assert costs == [
        CategoryCost("marketing", 5, Decimal("0.175")),
        CategoryCost("utility", 4, Decimal(0), unpriced=4),
    ]
    assert total(costs) == Decimal("0.175")
    assert estimate(RateCard({}), [("+1415", "marketing", 3)]) == [
        CategoryCost("marketing", 3, Decimal(0), unpriced=3)
    ]


def test_cursors_are_positions_and_nothing_else() -> None:
    assert parse_cursor("") == 0
    assert parse_cursor(" 42 ") == 42
    for bad in ("-1", "abc", "1.5", "9" * 20):
        with pytest.raises(InvalidArgument):
            parse_cursor(bad)
    with pytest.raises(InvalidArgument):
        page_size(5001)
    assert page_size(0) == 500


def test_an_empty_kinds_filter_means_every_kind() -> None:
    workspace = uuid.uuid4()
    assert ChangeFilter(workspace).kind_values() == ["message", "run"]
    assert ChangeFilter(workspace, kinds=frozenset({ChangeKind.RUN})).kind_values() == ["run"]
