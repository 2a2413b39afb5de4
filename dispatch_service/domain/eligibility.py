"""Who of a resolved audience may be invited, and why not (pure).

`evaluate_audience` turns the resolver's targets (in audience order) into candidates, each
eligible or blocked with exactly one reason. The rules, in the order they are applied:

1. A phone that appears more than once keeps one *canonical* target: the first active one, or
   the first one when none is active. Every other target with that phone is
   ``duplicate_target`` ("first wins"; an inactive household never shadows an active one).
   This also keeps the database invariant: one non-duplicate message per (run, phone).
2. ``guest_inactive``: the household or its contact is inactive.
3. ``no_phone`` / ``invalid_phone``: the contact has no phone, or one that could not be
   normalised (stored as written, never inviteable).
4. ``do_not_message``: the phone has an active do-not-message entry in the workspace.
5. ``already_invited``: an invitation for this event that did not fail, was not blocked and was
   not cancelled already exists for the phone, unless the request lists the phone in
   ``resend_phones``.
6. ``no_approved_translation``: the precheck has no fallback language and no approved
   translation of the template fits the household's language (domain/languages.py).

Everything else is eligible. The audience hash covers every target and its outcome in order, so
two prechecks with the same hash would send exactly the same thing.

These functions are the reference statement of the rules. PrecheckSend computes them in Postgres
(dispatch_service.persistence.prechecks, one set-based statement); a test generates audiences
and proves the SQL gives the same outcome per candidate and the same hash.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from common.vocabulary import PhoneStatus, RejectionReason
from dispatch_service.domain.audience import AudienceTarget
from dispatch_service.domain.languages import LanguagePolicy, resolve

PRECHECK_REASONS = (
    RejectionReason.DUPLICATE_TARGET,
    RejectionReason.GUEST_INACTIVE,
    RejectionReason.INVALID_PHONE,
    RejectionReason.NO_PHONE,
    RejectionReason.DO_NOT_MESSAGE,
    RejectionReason.ALREADY_INVITED,
    RejectionReason.NO_APPROVED_TRANSLATION,
)
"""The reasons a precheck can give, in the order they are applied."""


class Candidate(NamedTuple):
    """One target of a precheck with its eligibility, at `position` (0-based) in the audience.

    A NamedTuple rather than a frozen dataclass: a precheck makes 100,000 of them."""

    position: int
    target: AudienceTarget
    reason: RejectionReason | None

    @property
    def eligible(self) -> bool:
        """True when the candidate would be sent."""
        return self.reason is None


@dataclass(frozen=True)
class PolicyInputs:
    """The workspace and event facts eligibility depends on, loaded before evaluating."""

    do_not_message: frozenset[str]
    """Phones with an active do-not-message entry in the workspace."""
    already_invited: frozenset[str]
    """Phones with a non-failed, non-blocked, non-cancelled invitation for this event."""
    resend_phones: frozenset[str] = frozenset()
    """Phones the operator explicitly asked to invite again."""
    languages: LanguagePolicy | None = None
    """The template's approved translations and the fallback (None: languages not checked)."""


def evaluate_audience(targets: Sequence[AudienceTarget], inputs: PolicyInputs) -> list[Candidate]:
    """Every target, in order, with its eligibility (see the module docstring for the rules)."""
    canonical = _canonical_positions(targets)
    return [
        Candidate(position, target, _reason(position, target, canonical, inputs))
        for position, target in enumerate(targets)
    ]


def _canonical_positions(targets: Sequence[AudienceTarget]) -> dict[str, int]:
    """Per phone, the position of the target that represents it (first active, else first)."""
    first: dict[str, int] = {}
    first_active: dict[str, int] = {}
    for position, target in enumerate(targets):
        phone = target.phone_e164
        if phone is None:
            continue
        if phone not in first:
            first[phone] = position
        if target.active and phone not in first_active:
            first_active[phone] = position
    first.update(first_active)
    return first


def _reason(
    position: int,
    target: AudienceTarget,
    canonical: dict[str, int],
    inputs: PolicyInputs,
) -> RejectionReason | None:
    phone = target.phone_e164
    if phone is not None and canonical[phone] != position:
        return RejectionReason.DUPLICATE_TARGET
    if not target.active:
        return RejectionReason.GUEST_INACTIVE
    if phone is None:
        if target.phone_status is PhoneStatus.MALFORMED:
            return RejectionReason.INVALID_PHONE
        return RejectionReason.NO_PHONE
    if phone in inputs.do_not_message:
        return RejectionReason.DO_NOT_MESSAGE
    if phone in inputs.already_invited and phone not in inputs.resend_phones:
        return RejectionReason.ALREADY_INVITED
    if inputs.languages and resolve(target.preferred_language, inputs.languages) is None:
        return RejectionReason.NO_APPROVED_TRANSLATION
    return None


def blocked_by_reason(candidates: Iterable[Candidate]) -> dict[RejectionReason, int]:
    """How many candidates each reason blocked (reasons with none are left out)."""
    counts = Counter(c.reason for c in candidates if c.reason is not None)
    return dict(sorted(counts.items(), key=lambda item: item[0].value))


def audience_hash(candidates: Iterable[Candidate]) -> str:
    """A stable hash of the targets and their outcomes, in order (hex, 32 characters).

    SHA-256 (truncated) because Postgres computes the same digest with its built-in sha256()."""
    digest = hashlib.sha256()
    lines = []
    for c in candidates:
        t = c.target
        person = t.person_id.bytes if t.person_id else b""
        outcome = c.reason.value if c.reason else "eligible"
        lines.append(
            b"%s|%s|%s|%s\n"
            % (t.guest_unit_id.bytes, person, (t.phone_e164 or "").encode(), outcome.encode())
        )
    digest.update(b"".join(lines))
    return digest.hexdigest()[:32]
