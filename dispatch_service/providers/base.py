"""The port the dispatcher sends through, and the outcomes every provider adapter returns.

An adapter (Meta Cloud API today, Twilio later) turns one `TemplateSend` into exactly one
`SendOutcome` and never raises for anything the provider or the network did: timeouts, refused
connections and error bodies all become outcomes, classified with dispatch_service.domain.retry.
The dispatcher only looks at `retry_class`, so a new adapter needs no dispatcher change.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dispatch_service.domain.retry import RetryClass


@dataclass(frozen=True)
class TemplateSend:
    """One template message to one recipient."""

    message_id: uuid.UUID
    """Our message id; sent as callback data so webhooks can be matched without the wamid."""
    sender_id: str
    """The sender (Meta: the phone number id)."""
    to_e164: str
    """The recipient, E.164 with '+'."""
    template_name: str
    language: str
    body_parameters: tuple[str, ...]
    body_parameter_names: tuple[str, ...] = ()
    """The template's variable names, for providers or templates that use named parameters."""
    send_plan: Mapping[str, Any] = field(default_factory=dict)
    """The run's header, parameter format and buttons (domain/send_plan; empty: body only)."""


@dataclass(frozen=True)
class Accepted:
    """The provider took the message."""

    provider_message_id: str
    recipient_id: str | None
    """The provider's id for the recipient (Meta: wa_id), when it reports one."""
    message_status: str = "accepted"
    """Meta: accepted, held_for_quality_assessment or paused (none of them means delivered)."""
    retry_class: RetryClass = RetryClass.ACCEPTED


@dataclass(frozen=True)
class Failed:
    """The provider did not (or may not have) take the message; `retry_class` says which."""

    retry_class: RetryClass
    error_code: int | None
    error_title: str
    error_details: str
    lowers_rate: bool = False
    adds_do_not_message: bool = False
    http_status: int | None = None


@dataclass(frozen=True)
class NotSent:
    """The request was never written: its send window (`not_after`) passed first, for example
    while it waited for a pooled connection. Nothing reached the provider; the slot is lost and
    the message may be claimed again."""

    reason: str


SendOutcome = Accepted | Failed | NotSent


class Provider(Protocol):
    """A messaging provider the dispatcher can send templates through."""

    name: str
    """Stored in invite_message.provider (for example "meta")."""

    async def send_template(
        self, send: TemplateSend, *, not_after: float | None = None
    ) -> SendOutcome:
        """Send one template message; never raises for provider or network failures.

        `not_after` (time.monotonic()): the request must not be written later than this; when
        it would be, the adapter answers NotSent without writing anything."""
        ...
