"""Which message a provider status belongs to, and in which order statuses are replayed (pure).

``persistence/status.py`` locks rows and writes results; every decision in between is here:

* **Matching.** A status names its message by provider message id, or (for an id nobody has
  yet) by ``biz_opaque_callback_data``, our message id as sent. Either way it only belongs to a
  message its own provider sent (a Meta status never moves a Twilio message, nor the reverse),
  from the sender number the webhook was addressed to. The first status
  matched to a message with no provider id gives it one (and its recipient's WhatsApp id).
* **Duplicates in a batch.** Only the first of the same (provider id, status) in a batch counts;
  the others answer ``duplicate``.
* **Orphans.** A tracked status whose message is unknown is held (``orphaned``) and applied when
  the message's provider id is stored or its callback data matches. Held statuses of a message
  are replayed before the batch's new ones, each group in arrival order.
* **Untracked statuses** (``played``, future ones) are recorded and never held or applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from common.vocabulary import ApplyOutcome, SenderProvider
from dispatch_service.domain.ids import parse_uuid_or_none
from dispatch_service.domain.lifecycle import (
    DELIVERED,
    FAILED,
    READ,
    SENT,
    TRACKED_STATUSES,
    Lifecycle,
    ProviderStatus,
    StatusUpdate,
    apply_status,
)
from dispatch_service.domain.pricing import Pricing


def is_tracked(status: ProviderStatus) -> bool:
    """Whether a status takes part in the lifecycle (others are recorded and ignored)."""
    return status.status in TRACKED_STATUSES


@dataclass(slots=True)
class MatchedMessage:
    """A locked message: what it was and what the statuses make of it."""

    id: uuid.UUID
    sender: str
    phone_e164: str | None
    provider_message_id: str | None
    wa_id: str | None
    before: Lifecycle
    after: Lifecycle
    assigned_wamid: bool = False
    assigned_wa_id: bool = False
    provider: SenderProvider = SenderProvider.META
    """Who sent it: only that provider's statuses belong to it."""

    @property
    def changed(self) -> bool:
        """Whether the message must be written back."""
        return self.after != self.before or self.assigned_wamid or self.assigned_wa_id

    def take(self, wamid: str, sender: str, recipient_id: str, provider: SenderProvider) -> bool:
        """Whether a status (wamid, sender, provider) belongs here; records a first wamid /
        wa_id."""
        if self.sender != sender or self.provider != provider:
            return False
        if self.provider_message_id is None:
            self.provider_message_id = wamid
            self.assigned_wamid = True
        elif self.provider_message_id != wamid:
            return False
        if self.wa_id is None and recipient_id:
            self.wa_id = recipient_id
            self.assigned_wa_id = True
        return True


@dataclass(slots=True)
class HeldStatus:
    """An orphaned status (kept from an earlier batch) about to be resolved."""

    id: int
    provider_message_id: str
    phone_number_id: str
    callback_data: str
    recipient_id: str
    report: ProviderStatus
    outcome: ApplyOutcome = ApplyOutcome.ORPHANED
    message_id: uuid.UUID | None = None
    provider: SenderProvider = SenderProvider.META
    """Who reported it: with the provider message id and status, its event's key."""
    pricing: Pricing | None = None
    """The pricing block it was reported with, recorded on its message once it is matched."""


def _match(
    status: StatusUpdate | HeldStatus,
    by_wamid: dict[str, MatchedMessage],
    messages: dict[uuid.UUID, MatchedMessage],
) -> MatchedMessage | None:
    """The message a status belongs to: the one with its provider id, else the one its
    callback data names, if that message takes it (MatchedMessage.take). A match is recorded
    under the provider id, for the statuses after it."""
    message = by_wamid.get(status.provider_message_id)
    if message is None and (callback_id := parse_uuid_or_none(status.callback_data)):
        message = messages.get(callback_id)
    if message is None or not message.take(
        status.provider_message_id, status.phone_number_id, status.recipient_id, status.provider
    ):
        return None
    by_wamid[status.provider_message_id] = message
    return message


def match_held(held: Sequence[HeldStatus], messages: dict[uuid.UUID, MatchedMessage]) -> None:
    """Find each held status' message (by provider id, else callback data)."""
    by_wamid = {m.provider_message_id: m for m in messages.values() if m.provider_message_id}
    for status in held:
        if (message := _match(status, by_wamid, messages)) is not None:
            status.message_id = message.id


def in_report_order(held: Iterable[HeldStatus]) -> list[HeldStatus]:
    """Held statuses in the order the provider reported them: by provider time; within one
    second (Meta's timestamps are whole seconds, and `sent` and `delivered` often share one) in
    lifecycle order (sent, delivered, read, failed, then any other status); then by arrival
    (their event ids: a batch inserts its events sorted by provider id and status, so ids follow
    arrival across batches only)."""
    lifecycle = {SENT: 0, DELIVERED: 1, READ: 2, FAILED: 3}
    return sorted(
        held, key=lambda o: (o.report.at, lifecycle.get(o.report.status, len(lifecycle)), o.id)
    )


def replay_held(held: Iterable[HeldStatus], messages: dict[uuid.UUID, MatchedMessage]) -> None:
    """Apply each matched held status to its message, in arrival order."""
    for status in held:
        if status.message_id is not None:
            message = messages[status.message_id]
            status.outcome, message.after = apply_status(message.after, status.report)


@dataclass(slots=True)
class StatusBatch:
    """One ApplyStatus batch: its statuses and the messages they matched."""

    updates: Sequence[StatusUpdate]
    first_of: dict[tuple[str, str], int] = field(default_factory=dict)
    """Index of the first update of each (provider id, status): the others are duplicates."""
    target: dict[int, MatchedMessage] = field(default_factory=dict)
    messages: dict[uuid.UUID, MatchedMessage] = field(default_factory=dict)
    known_wamids: set[str] = field(default_factory=set)
    """Provider ids some message had when the batch locked its messages (any sender)."""

    def __post_init__(self) -> None:
        for i, update in enumerate(self.updates):
            self.first_of.setdefault(status_key(update), i)

    def unique_indexes(self) -> list[int]:
        """The first update of each (provider id, status), in arrival order."""
        return sorted(self.first_of.values())

    def wamids(self) -> list[str]:
        """The distinct provider ids the batch names (sorted: the lock order)."""
        return sorted({self.updates[i].provider_message_id for i in self.unique_indexes()})

    def callback_ids(self, by_wamid: dict[str, MatchedMessage]) -> set[uuid.UUID]:
        """Message ids named by callback data of statuses whose provider id matched nothing."""
        ids = set()
        for i in self.unique_indexes():
            update = self.updates[i]
            callback_id = parse_uuid_or_none(update.callback_data)
            if update.provider_message_id not in by_wamid and callback_id is not None:
                ids.add(callback_id)
        return ids

    def match(self, by_wamid: dict[str, MatchedMessage]) -> None:
        """Give each unique status its message (by provider id, else by callback data)."""
        self.known_wamids = {w for w in by_wamid if w}
        by_wamid = dict(by_wamid)
        for i in self.unique_indexes():
            if (message := _match(self.updates[i], by_wamid, self.messages)) is not None:
                self.target[i] = message

    def unmatched_wamids(self) -> list[str]:
        """Provider ids of tracked statuses no message has: they will be held as orphans."""
        return sorted(
            {
                self.updates[i].provider_message_id
                for i in self.unique_indexes()
                if i not in self.target
                and self.updates[i].provider_message_id not in self.known_wamids
                and is_tracked(self.updates[i].report)
            }
        )

    def replay(self, skip: set[int]) -> dict[int, ApplyOutcome]:
        """Outcomes of the unique statuses (minus `skip`), applied per message in order."""
        outcomes: dict[int, ApplyOutcome] = {}
        for i in self.unique_indexes():
            if i in skip:
                continue
            update, message = self.updates[i], self.target.get(i)
            if not is_tracked(update.report):
                outcomes[i] = ApplyOutcome.UNKNOWN_STATUS
            elif message is None:
                outcomes[i] = ApplyOutcome.ORPHANED
            else:
                outcomes[i], message.after = apply_status(message.after, update.report)
        return outcomes

    def reset(self) -> None:
        """Forget what replaying did (before replaying again without some statuses)."""
        for message in self.messages.values():
            message.after = message.before


def status_key(update: StatusUpdate) -> tuple[str, str]:
    """What makes two statuses the same: (provider message id, status)."""
    return update.provider_message_id, update.report.status
