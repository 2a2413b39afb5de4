"""Ids in requests and payloads: the one UUID parser, with one message for a bad id (pure)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from dispatch_service.errors import FieldViolation, InvalidArgument

NOT_AN_ID = "is not a valid id"


def parse_uuid_or_none(value: str) -> uuid.UUID | None:
    """`value` (surrounding spaces ignored) as a UUID, or None when it is not one."""
    try:
        return uuid.UUID(value.strip())
    except (ValueError, AttributeError):
        return None


def id_violation(value: str, field: str) -> FieldViolation | None:
    """The violation a bad or missing id of `field` makes, or None when it is a UUID."""
    if not value:
        return FieldViolation(field, "is required")
    return None if parse_uuid_or_none(value) is not None else FieldViolation(field, NOT_AN_ID)


def parse_uuid(value: str, field: str) -> uuid.UUID:
    """A required id field as a UUID, or InvalidArgument naming `field`."""
    parsed = parse_uuid_or_none(value) if value else None
    if parsed is None:
        violation = id_violation(value, field)
        assert violation is not None
        raise InvalidArgument(violation)
    return parsed


def parse_uuids(values: Iterable[str], field: str) -> list[uuid.UUID]:
    """A repeated id field; every bad element is named (``field[index]``)."""
    violations = [
        FieldViolation(f"{field}[{i}]", NOT_AN_ID)
        for i, value in enumerate(values)
        if parse_uuid_or_none(value) is None
    ]
    if violations:
        raise InvalidArgument(*violations)
    return [uuid.UUID(v.strip()) for v in values]
