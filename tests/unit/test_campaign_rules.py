"""Pure campaign rules: Meta's messaging-limit tiers and window, ResendRun's classes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.vocabulary import RejectionReason
from dispatch_service.domain.messaging_limit import Allowance, parse_limit, provider_limit
from dispatch_service.domain.resend import ResendSelection, resend_selection
from dispatch_service.errors import InvalidArgument

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "limit"),
    [("250", 250), ("2,000", 2000), ("10000", 10000), ("100_000", 100000), ("unlimited", None)],
)
def test_the_tiers_parse(raw: str, limit: int | None) -> None:
    assert parse_limit(raw) == limit


@pytest.mark.parametrize("raw", ["300", "0", "lots", "-5"])
def test_anything_else_is_refused(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="messaging_limit"):
        parse_limit(raw)


def test_the_allowance_says_what_may_go_now() -> None:
    assert Allowance(None, 0, None).sendable(500) == 500
    room = Allowance(250, 200, None)
    assert (room.remaining, room.sendable(80), room.sendable(10)) == (50, 50, 10)
    full = Allowance(250, 250, NOW + timedelta(hours=3))
    assert (full.remaining, full.sendable(80)) == (0, 0)


def test_resend_classes_map_to_reasons() -> None:
    assert ResendSelection(failed=True).failed_reasons == {
        RejectionReason.RETRIES_EXHAUSTED,
        RejectionReason.EXPIRED,
    }
    assert ResendSelection(rejected=True, outcome_unknown=True).failed_reasons == {
        RejectionReason.PROVIDER_REJECTED,
        RejectionReason.OUTCOME_UNKNOWN,
    }
    assert ResendSelection(error_codes=(131026,)).failed_reasons == frozenset()


def test_resend_selection_normalises_and_validates() -> None:
    chosen = resend_selection(False, (131049, 131026, 131049), False, 7200)
    assert chosen.error_codes == (131026, 131049)
    assert chosen.not_read_after == timedelta(hours=2)
    with pytest.raises(InvalidArgument, match="not_read_after_seconds"):
        resend_selection(True, (), False, -1)
    with pytest.raises(InvalidArgument, match="at least one class"):
        resend_selection(False, (), False, 0, rejected=False)


@pytest.mark.parametrize(
    ("written", "limit"),
    [
        (2000, 2000),  # Meta's example: an integer
        ("2000", 2000),
        ("TIER_250", 250),
        ("TIER_2K", 2000),
        ("TIER_10K", 10_000),
        ("TIER_100K", 100_000),
        ("TIER_1K", 1000),  # an older tier
        ("TIER_UNLIMITED", None),
        (-1, None),
        ("-1", None),
    ],
)
def test_metas_messaging_limit_is_read_as_an_integer_or_a_tier(
    written: object, limit: int | None
) -> None:
    assert provider_limit(written) == limit


@pytest.mark.parametrize("written", ["TIER_", "lots", 0, -5, True, "TIER_2M", ""])
def test_anything_else_is_not_a_messaging_limit(written: object) -> None:
    with pytest.raises(ValueError, match="not a messaging limit tier"):
        provider_limit(written)
