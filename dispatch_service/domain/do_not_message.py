"""Do-Not-Message: who may add an entry, where it applies, and the words it is recorded with (pure).

Every source goes through one writer (``persistence/do_not_message.add_entries``) with a
:class:`DoNotMessageRequest`; this module decides what such a request means.

Scope rule (docs/operations.md, "Do-Not-Message"):

* An opt-out the provider reports on a sender number (a ``user_preferences`` stop, an inbound stop
  keyword, a send or status failing with an opt-out error such as Meta's 131050) blocks that
  person in **every workspace that sends from that number**: the person told the number to stop,
  whichever organiser's invitation it carried.
* An operator's entry blocks the phone **in its own workspace** only.

A person is known by phone, by Meta's business-scoped user id, or both. An opt-out that names
only a user id is matched to the phone when a guest identity already carries that user id;
otherwise the entry keeps the user id alone and gains the phone as soon as a webhook pairs the
two (``persistence/do_not_message.learn_user_ids``). Prechecks and the dispatcher check phones,
so from then on the person is blocked like any other.

An entry is never removed automatically (a ``resume`` preference or a "START" reply changes
nothing): removal is an operator's audited decision.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from common.vocabulary import DnmSource


class DnmScope(StrEnum):
    """Where an entry applies."""

    WORKSPACE = "workspace"
    """The workspace the request names."""
    SENDER_NUMBER = "sender_number"
    """Every workspace that sends from the sender number the request names."""


SCOPE_OF: Mapping[DnmSource, DnmScope] = {
    DnmSource.OPERATOR: DnmScope.WORKSPACE,
    DnmSource.USER_PREFERENCES_STOP: DnmScope.SENDER_NUMBER,
    DnmSource.INBOUND_STOP_KEYWORD: DnmScope.SENDER_NUMBER,
    DnmSource.PROVIDER_ERROR_131050: DnmScope.SENDER_NUMBER,
    DnmSource.PROVIDER_ERROR_21610: DnmScope.SENDER_NUMBER,
}
"""The scope rule, by source (a test keeps it total over DnmSource)."""

AUTOMATIC_REASONS: Mapping[DnmSource, str] = {
    DnmSource.USER_PREFERENCES_STOP: "the user stopped marketing messages in WhatsApp",
    DnmSource.INBOUND_STOP_KEYWORD: "the user replied with a stop keyword",
    DnmSource.PROVIDER_ERROR_131050: "Meta error 131050: the user stopped marketing messages",
    DnmSource.PROVIDER_ERROR_21610: "Twilio error 21610: the recipient opted out of this sender",
}
"""The reason recorded on entries no person wrote (an operator gives their own)."""


@dataclass(frozen=True, slots=True)
class DoNotMessageRequest:
    """One person to block (by phone, user id or both), from one source, in the scope the source
    implies.

    `workspace_id` names the workspace for an operator's entry; `phone_number_id` names the
    sender number for every provider-reported opt-out. `context` is kept in the audit entry
    (the receipt, message or run that carried the opt-out).
    """

    phone_e164: str
    """The E.164 phone; empty when only the user id is known."""
    source: DnmSource
    reason: str
    user_id: str = ""
    """Meta's business-scoped user id, when the signal carried one."""
    workspace_id: uuid.UUID | None = None
    phone_number_id: str | None = None
    actor_id: uuid.UUID | None = None
    context: Mapping[str, str] = field(default_factory=dict)
    only_workspace_id: uuid.UUID | None = None
    """For a sender number's opt-out: apply it to this one of the number's workspaces only (one
    that starts sending from the number inherits the number's opt-outs)."""

    def __post_init__(self) -> None:
        if not (self.phone_e164 or self.user_id):
            raise ValueError("a Do-Not-Message entry needs a phone or a user id")
        named = self.workspace_id if self.scope is DnmScope.WORKSPACE else self.phone_number_id
        if not named:
            raise ValueError(f"a {self.source.value} entry needs its {self.scope.value}")

    @property
    def scope(self) -> DnmScope:
        """Where the entry applies (the scope rule)."""
        return SCOPE_OF[self.source]


def operator_entry(
    workspace_id: uuid.UUID, actor_id: uuid.UUID, phone_e164: str, reason: str
) -> DoNotMessageRequest:
    """An operator blocking a phone in their workspace."""
    return DoNotMessageRequest(
        phone_e164=phone_e164,
        source=DnmSource.OPERATOR,
        reason=reason,
        workspace_id=workspace_id,
        actor_id=actor_id,
    )


def provider_opt_out(
    phone_number_id: str,
    phone_e164: str,
    source: DnmSource,
    *,
    user_id: str = "",
    **context: uuid.UUID | str | None,
) -> DoNotMessageRequest:
    """An opt-out the provider reported on a sender number (reason text from the table above),
    naming the person by phone, user id (`phone_e164` empty) or both."""
    return DoNotMessageRequest(
        phone_e164=phone_e164,
        source=source,
        reason=AUTOMATIC_REASONS[source],
        user_id=user_id,
        phone_number_id=phone_number_id,
        context={k: str(v) for k, v in context.items() if v is not None},
    )
