"""`invites send --at/--deadline`: relative offsets and ISO 8601 instants."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from cli.commands.runs import when

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_relative_offsets_count_from_now() -> None:
    assert when("+30s", NOW) == NOW + timedelta(seconds=30)
    assert when("+10m", NOW) == NOW + timedelta(minutes=10)
    assert when("+2h", NOW) == NOW + timedelta(hours=2)
    assert when("+1d", NOW) == NOW + timedelta(days=1)


def test_instants_need_their_offset() -> None:
    assert when("2026-12-24T18:00:00+01:00") == datetime(2026, 12, 24, 17, 0, tzinfo=UTC)
    assert when("2026-12-24T18:00Z") == datetime(2026, 12, 24, 18, 0, tzinfo=UTC)
    for bad in ("2026-12-24T18:00", "tomorrow", "+5y"):
        with pytest.raises(argparse.ArgumentTypeError):
            when(bad)
