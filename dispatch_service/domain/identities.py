"""Who the provider says a user is: phone (WhatsApp id), business-scoped user id, or both.

Since 2026 Meta identifies every user with a business-scoped user id (``US.1349…``) and may
withhold the phone of users who adopted a username. Webhooks then name a person by phone, by
user id, or both; these values carry what was said, unvalidated (Meta's own examples break any
strict pattern), with empty strings for what was not.
"""

from __future__ import annotations

from dataclasses import dataclass


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
