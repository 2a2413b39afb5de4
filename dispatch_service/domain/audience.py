"""Event audiences: how an event's households are chosen, and what one resolved target is (pure).

An audience has a *base set* chosen by its mode, then overrides:

* ``all``: every household of the workspace;
* ``tags``: households carrying any of the tags;
* ``sides``: households on any of the sides;
* ``explicit``: exactly the listed households;
* ``include`` overrides add households to the base set, ``exclude`` overrides remove them;
  a household both included and excluded is excluded (exclusion wins).

Inactive households stay in the resolved list (with ``active=False``) so a precheck can report
them as ``guest_inactive`` instead of silently dropping them. The resolver itself is
dispatch_service.persistence.audience.resolve_audience.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from common.vocabulary import AudienceMode, PhoneStatus
from dispatch_service.errors import FieldViolation, InvalidArgument


@dataclass(frozen=True)
class AudienceTarget:
    """One household of a resolved audience, seen through its designated contact."""

    guest_unit_id: uuid.UUID
    guest_unit_name: str
    person_id: uuid.UUID | None
    """The household's designated contact (None when it has none)."""
    display_name: str
    """The contact's name ("" when there is no contact)."""
    phone_e164: str | None
    """The contact's normalised phone (None when missing or malformed)."""
    phone_status: PhoneStatus
    """The contact's phone status (MISSING when there is no contact)."""
    active: bool
    """The household is active and so is its contact person."""
    preferred_language: str | None = None
    """The household's language (domain/languages.py), None when it has none."""


@dataclass(frozen=True)
class AudienceDefinition:
    """An event's stored audience: a mode, its filter values and the household overrides."""

    mode: AudienceMode
    tags: tuple[str, ...] = ()
    sides: tuple[str, ...] = ()
    guest_unit_ids: tuple[uuid.UUID, ...] = ()
    """The households of an EXPLICIT audience."""
    include_guest_unit_ids: tuple[uuid.UUID, ...] = ()
    exclude_guest_unit_ids: tuple[uuid.UUID, ...] = ()

    def listed_guest_unit_ids(self) -> set[uuid.UUID]:
        """Every household id the definition names (they must all exist in the workspace)."""
        return {*self.guest_unit_ids, *self.include_guest_unit_ids, *self.exclude_guest_unit_ids}


def normalise_label(value: str) -> str:
    """Tags and sides compare trimmed and case-insensitively ("Family " == "family")."""
    return " ".join(value.split()).casefold()


def normalise_labels(values: Iterable[str]) -> tuple[str, ...]:
    """Normalised, de-duplicated (first kept), empty values dropped."""
    return tuple(dict.fromkeys(n for n in map(normalise_label, values) if n))


def _unique(ids: Iterable[uuid.UUID]) -> tuple[uuid.UUID, ...]:
    return tuple(dict.fromkeys(ids))


def build_audience(
    mode: AudienceMode | None,
    *,
    tags: Iterable[str] = (),
    sides: Iterable[str] = (),
    guest_unit_ids: Iterable[uuid.UUID] = (),
    include_guest_unit_ids: Iterable[uuid.UUID] = (),
    exclude_guest_unit_ids: Iterable[uuid.UUID] = (),
) -> AudienceDefinition:
    """A validated definition, or InvalidArgument naming every inconsistent field."""
    tags_, sides_, members = (
        normalise_labels(tags),
        normalise_labels(sides),
        _unique(guest_unit_ids),
    )
    violations: list[FieldViolation] = []
    if mode is None:
        violations.append(FieldViolation("audience.mode", "is required"))
    checks = (
        ("tags", tags_, AudienceMode.TAGS, "at least one tag"),
        ("sides", sides_, AudienceMode.SIDES, "at least one side"),
        ("guest_unit_ids", members, AudienceMode.EXPLICIT, "at least one household"),
    )
    for field, values, own_mode, need in checks:
        if mode is own_mode and not values:
            violations.append(FieldViolation(f"audience.{field}", f"mode {own_mode} needs {need}"))
        if mode is not None and mode is not own_mode and values:
            violations.append(FieldViolation(f"audience.{field}", f"only for mode {own_mode}"))
    if violations or mode is None:
        raise InvalidArgument(*violations)
    return AudienceDefinition(
        mode=mode,
        tags=tags_,
        sides=sides_,
        guest_unit_ids=members,
        include_guest_unit_ids=_unique(include_guest_unit_ids),
        exclude_guest_unit_ids=_unique(exclude_guest_unit_ids),
    )
