"""The change stream's vocabulary (pure): kinds of change, cursors, filters.

A cursor is the decimal position (``seq``) of a change in its database's change log; positions
are dense and follow commit order (docs/changes.md). The empty cursor means "from the oldest
change still kept".
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from dispatch_service.errors import FieldViolation, InvalidArgument

NOT_OUR_CURSOR = "is not a cursor this stream returned"
DEFAULT_CHANGE_PAGE = 500
MAX_CHANGE_PAGE = 5000


class ChangeKind(StrEnum):
    """What changed: a message's lifecycle state or a run's state."""

    MESSAGE = "message"
    RUN = "run"


def parse_cursor(value: str, field: str = "after_cursor") -> int:
    """A cursor as its position (0 for the empty cursor); InvalidArgument when not ours."""
    value = value.strip()
    if not value:
        return 0
    if not value.isdigit() or len(value) > 19:
        raise InvalidArgument(FieldViolation(field, NOT_OUR_CURSOR))
    return int(value)


def format_cursor(position: int) -> str:
    """The cursor of the change at `position`."""
    return str(position)


@dataclass(frozen=True)
class ChangeFilter:
    """Which of a workspace's changes a reader wants (None / empty: all)."""

    workspace_id: uuid.UUID
    run_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None
    kinds: frozenset[ChangeKind] = frozenset()

    def kind_values(self) -> list[str]:
        """The kinds to read, as stored."""
        return sorted(k.value for k in (self.kinds or frozenset(ChangeKind)))


def page_size(requested: int, field: str = "page_size") -> int:
    """A validated page size (0: the default)."""
    if requested < 0 or requested > MAX_CHANGE_PAGE:
        raise InvalidArgument(FieldViolation(field, f"must be between 0 and {MAX_CHANGE_PAGE}"))
    return requested or DEFAULT_CHANGE_PAGE


def kinds_of(values: Sequence[ChangeKind]) -> frozenset[ChangeKind]:
    """The kinds filter."""
    return frozenset(values)
