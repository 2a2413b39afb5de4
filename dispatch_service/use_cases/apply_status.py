"""ApplyStatus: apply one batch of provider updates (statuses, preferences, inbound texts).

The whole batch is one transaction: message transitions, the status event log, do-not-message
entries and their audit entries commit together or not at all (then the ingestor retries the
same batch, which is idempotent). A transaction that meets a concurrent writer on the same
messages (a deadlock, or a message whose provider id appeared meanwhile) is retried here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import ApplyOutcome, DnmSource
from dispatch_service.domain.do_not_message import DoNotMessageRequest, provider_opt_out
from dispatch_service.domain.lifecycle import StatusUpdate, opts_out
from dispatch_service.domain.pricing import Pricing
from dispatch_service.domain.stop_keywords import (
    InboundText,
    PreferenceUpdate,
    opt_out_from_preference,
    opt_out_from_text,
    phone_from_wa_id,
)
from dispatch_service.persistence import status as status_store
from dispatch_service.persistence.do_not_message import add_entries
from dispatch_service.persistence.message_transitions import record_pricing
from dispatch_service.persistence.status import StatusApplication

log = logging.getLogger(__name__)

STATUS_UPDATES = Counter(
    "invites_status_updates_total",
    "Provider status updates applied by ApplyStatus, by outcome (applied, duplicate, stale, "
    "after_terminal, unknown_status, orphaned).",
    ["outcome"],
)
DO_NOT_MESSAGE_ADDED = Counter(
    "invites_do_not_message_added_total",
    "Do-not-message entries added by the status path, by source.",
    ["source"],
)
APPLY_SECONDS = Histogram(
    "invites_apply_status_seconds",
    "Duration of one ApplyStatus batch (all attempts).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CONFLICT_RETRIES = Counter(
    "invites_apply_status_retries_total",
    "ApplyStatus transactions retried after meeting a concurrent writer.",
)

MAX_ATTEMPTS = 6


@dataclass(frozen=True)
class ApplyStatusCommand:
    """One batch of normalised provider updates."""

    statuses: Sequence[StatusUpdate] = ()
    preferences: Sequence[PreferenceUpdate] = ()
    inbound_texts: Sequence[InboundText] = ()
    pricing: Sequence[Pricing | None] = ()
    """The pricing block reported with each status (by index; shorter or None: none)."""


@dataclass(frozen=True)
class ApplyStatusResult:
    """One outcome per status (in order) and how many do-not-message entries were added."""

    outcomes: list[ApplyOutcome] = field(default_factory=list)
    do_not_message_added: int = 0


def collect_opt_outs(
    command: ApplyStatusCommand, applications: Sequence[StatusApplication]
) -> list[DoNotMessageRequest]:
    """Every opt-out the batch asks for: 131050 failures, marketing stops, stop keywords.

    A duplicate status asks for nothing (it was acted on when first seen). A 131050 blocks the
    recipient's WhatsApp id and, when it differs, the phone the matched message was sent to.
    """
    opt_outs: list[DoNotMessageRequest] = []
    for update, application in zip(command.statuses, applications, strict=True):
        if application.outcome is ApplyOutcome.DUPLICATE or not opts_out(update.report):
            continue
        phones = {phone_from_wa_id(update.recipient_id), application.message_phone}
        opt_outs.extend(
            provider_opt_out(
                update.phone_number_id,
                phone,
                DnmSource.PROVIDER_ERROR_131050,
                receipt_id=update.receipt_id,
            )
            for phone in sorted(p for p in phones if p)
        )
    for preference in command.preferences:
        if (opt_out := opt_out_from_preference(preference)) is not None:
            opt_outs.append(opt_out)
    for message in command.inbound_texts:
        if (opt_out := opt_out_from_text(message)) is not None:
            opt_outs.append(opt_out)
    return opt_outs


async def _apply_once(
    session: AsyncSession, command: ApplyStatusCommand
) -> tuple[list[StatusApplication], dict[str, int]]:
    applications = await status_store.apply_status_updates(session, command.statuses)
    await record_pricing(
        session,
        [
            (a.message_id, block)
            for a, block in zip(applications, command.pricing, strict=False)
            if block is not None and a.message_id is not None
        ],
    )
    added = await add_entries(session, collect_opt_outs(command, applications))
    return applications, dict(Tally(entry.source.value for entry in added))


async def apply_status(
    command: ApplyStatusCommand, sessions: async_sessionmaker[AsyncSession]
) -> ApplyStatusResult:
    """Apply the batch in one transaction (retried on a conflict with a concurrent writer)."""
    started = time.perf_counter()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with sessions() as session, session.begin():
                applications, added = await _apply_once(session, command)
            break
        except Exception as error:
            if attempt == MAX_ATTEMPTS or not status_store.is_retryable(error):
                raise
            CONFLICT_RETRIES.inc()
            await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))
    APPLY_SECONDS.observe(time.perf_counter() - started)
    _record(command, applications, added)
    return ApplyStatusResult(
        outcomes=[a.outcome for a in applications], do_not_message_added=sum(added.values())
    )


def _record(
    command: ApplyStatusCommand,
    applications: Sequence[StatusApplication],
    added: dict[str, int],
) -> None:
    for outcome, count in Tally(a.outcome for a in applications).items():
        STATUS_UPDATES.labels(outcome.value).inc(count)
    for source, count in added.items():
        DO_NOT_MESSAGE_ADDED.labels(source).inc(count)
        log.info("do-not-message entries added (source %s)", source, extra={"count": count})
    for update, application in zip(command.statuses, applications, strict=True):
        if application.outcome is ApplyOutcome.ORPHANED:
            log.debug(
                "status %s kept as orphaned: no message with this provider id yet",
                update.report.status,
                extra={"receipt_id": update.receipt_id},
            )
        elif application.outcome in (ApplyOutcome.AFTER_TERMINAL, ApplyOutcome.UNKNOWN_STATUS):
            log.debug(
                "status %s recorded, not applied (%s)",
                update.report.status,
                application.outcome.value,
                extra={"receipt_id": update.receipt_id, "message_id": application.message_id},
            )
