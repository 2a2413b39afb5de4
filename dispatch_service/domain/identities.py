"""Who the provider says a user is: phone (WhatsApp id), business-scoped user id, or both.

Since 2026 Meta identifies every user with a business-scoped user id (``US.1349…``) and may
withhold the phone of users who adopted a username. Webhooks then name a person by phone, by
user id, or both; these values carry what was said, unvalidated (Meta's own examples break any
strict pattern), with empty strings for what was not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dispatch_service.domain.stop_keywords import phone_from_wa_id


@dataclass(frozen=True, slots=True)
class ProviderContact:
    """One ``contacts[]`` entry of a webhook: a phone and user id seen together."""

    wa_id: str = ""
    """The WhatsApp id (phone digits); empty when Meta withholds the phone."""
    user_id: str = ""
    """The business-scoped user id."""
    parent_user_id: str = ""
    """The parent business-scoped user id (linked portfolios)."""
    username: str = ""
    """The user's WhatsApp username, if any."""


@dataclass(frozen=True, slots=True)
class LearnedIdentity:
    """A phone and a user id a webhook reported together, on one sender number."""

    phone_number_id: str
    phone_e164: str
    user_id: str


def learned_identities(
    phone_number_id: str,
    contacts: Iterable[ProviderContact],
    recipient_user_id: str = "",
    message_phone: str | None = None,
) -> list[LearnedIdentity]:
    """The (phone, user id) pairs one status tells: each ``contacts[]`` entry carrying both,
    and the recipient's user id beside the phone the matched message was sent to."""
    pairs = {
        (phone, c.user_id.strip())
        for c in contacts
        if c.user_id.strip() and (phone := phone_from_wa_id(c.wa_id))
    }
    if recipient_user_id.strip() and message_phone:
        pairs.add((message_phone, recipient_user_id.strip()))
    return [LearnedIdentity(phone_number_id, phone, user) for phone, user in sorted(pairs)]
