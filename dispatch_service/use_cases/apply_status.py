"""ApplyStatus: apply one batch of provider updates (statuses, preferences, inbound texts,
template changes).

The whole batch is one transaction: message transitions, the status event log, do-not-message
entries, template changes (and the runs they pause) and their audit entries commit together or
not at all (then the ingestor retries the same batch, which is idempotent). A transaction that
meets a concurrent writer on the same messages (a deadlock, or a message whose provider id
appeared meanwhile) is retried here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import receipts
from common.vocabulary import ApplyOutcome
from dispatch_service.domain.do_not_message import DoNotMessageRequest, provider_opt_out
from dispatch_service.domain.identities import LearnedIdentity, learned_identities
from dispatch_service.domain.lifecycle import StatusUpdate, opt_out_source
from dispatch_service.domain.messaging_limit import LimitAnnouncement
from dispatch_service.domain.meta_templates import TemplateWebhook
from dispatch_service.domain.retry import MARKETING_CAP_DEFER_SECONDS
from dispatch_service.domain.stop_keywords import (
    InboundText,
    PreferenceUpdate,
    opt_out_from_preference,
    opt_out_from_text,
    phone_from_wa_id,
)
from dispatch_service.persistence import status as status_store
from dispatch_service.persistence.do_not_message import add_entries
from dispatch_service.persistence.identities import learn_user_ids
from dispatch_service.persistence.message_transitions import record_pricing
from dispatch_service.persistence.status import StatusApplication
from dispatch_service.use_cases.sending import record_limits
from dispatch_service.use_cases.templates import (
    RUNS_PAUSED,
    TemplateUpdateOutcome,
    TemplateUpdatesApplied,
    apply_template_updates,
)

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
    template_updates: Sequence[TemplateWebhook] = ()
    limit_updates: Sequence[LimitAnnouncement] = ()
    settle_receipts: Sequence[receipts.Settlement] = ()
    """Webhook receipts to mark applied in the batch's transaction (those another transaction
    holds are skipped: it settles them)."""


@dataclass(frozen=True)
class ApplyStatusResult:
    """One outcome per status (in order) and how many do-not-message entries were added."""

    outcomes: list[ApplyOutcome] = field(default_factory=list)
    do_not_message_added: int = 0
    template_outcomes: list[TemplateUpdateOutcome] = field(default_factory=list)
    paused_runs: list[uuid.UUID] = field(default_factory=list)
    settled_receipts: list[receipts.Settled] = field(default_factory=list)


@dataclass(frozen=True)
class _Applied:
    """What one transaction of the batch did."""

    applications: list[StatusApplication]
    added: dict[str, int]
    templates: TemplateUpdatesApplied
    settled: list[receipts.Settled]


def collect_opt_outs(
    command: ApplyStatusCommand, applications: Sequence[StatusApplication]
) -> list[DoNotMessageRequest]:
    """Every opt-out the batch asks for: 131050 failures, marketing stops, stop keywords.

    A duplicate status asks for nothing (it was acted on when first seen). A 131050 blocks the
    recipient's WhatsApp id and, when it differs, the phone the matched message was sent to,
    each with the recipient's business-scoped user id when the status carried one; with no phone
    at all, the user id alone. For a group status the recipient is the participant, never the
    group id. Opt-outs with an empty ``phone_e164`` name the person by ``user_id`` only.
    """
    opt_outs: list[DoNotMessageRequest] = []
    for update, application in zip(command.statuses, applications, strict=True):
        source = opt_out_source(update.report)
        if application.outcome is ApplyOutcome.DUPLICATE or source is None:
            continue
        group = update.recipient_type == "group"
        recipient = update.participant_id if group else update.recipient_id
        user_id = update.participant_user_id if group else update.recipient_user_id
        phones = {phone_from_wa_id(recipient), application.message_phone}
        found = sorted(p for p in phones if p) or [""]
        opt_outs.extend(
            provider_opt_out(
                update.phone_number_id,
                phone,
                source,
                user_id=user_id,
                receipt_id=update.receipt_id,
            )
            for phone in found
            if phone or user_id
        )
    for preference in command.preferences:
        if (opt_out := opt_out_from_preference(preference)) is not None:
            opt_outs.append(opt_out)
    for message in command.inbound_texts:
        if (opt_out := opt_out_from_text(message)) is not None:
            opt_outs.append(opt_out)
    return opt_outs


def collect_identities(
    command: ApplyStatusCommand, applications: Sequence[StatusApplication]
) -> list[LearnedIdentity]:
    """Every (phone, user id) pair the batch's statuses report, for the guest identities."""
    learned: list[LearnedIdentity] = []
    for update, application in zip(command.statuses, applications, strict=True):
        if update.recipient_type == "group":
            continue  # the recipient is a group, and its participants are not our guests
        learned += learned_identities(
            update.phone_number_id,
            update.contacts,
            update.recipient_user_id,
            application.message_phone,
        )
    return learned


async def _apply_once(
    session: AsyncSession,
    command: ApplyStatusCommand,
    defer_seconds: float,
    max_attempts: int | None,
) -> _Applied:
    applications = await status_store.apply_status_updates(
        session, command.statuses, defer_seconds, max_attempts
    )
    await record_pricing(
        session,
        [
            (a.message_id, update.pricing)
            for a, update in zip(applications, command.statuses, strict=True)
            if update.pricing is not None and a.message_id is not None
        ],
    )
    added = await add_entries(session, collect_opt_outs(command, applications))
    await learn_user_ids(session, collect_identities(command, applications))
    templates = await apply_template_updates(session, command.template_updates)
    await record_limits(session, command.limit_updates)
    settled = await receipts.settle(session, command.settle_receipts, skip_locked=True)
    tally = dict(Tally(entry.source.value for entry in added))
    return _Applied(applications, tally, templates, settled)


async def apply_status(
    command: ApplyStatusCommand,
    sessions: async_sessionmaker[AsyncSession],
    defer_seconds: float = MARKETING_CAP_DEFER_SECONDS,
    max_attempts: int | None = None,
) -> ApplyStatusResult:
    """Apply the batch in one transaction (retried on a conflict with a concurrent writer).
    A message a `failed` status defers (131049) is due again `defer_seconds` later, unless it
    has had `max_attempts` calls (DISPATCH_MAX_ATTEMPTS): then it fails retries_exhausted."""
    started = time.perf_counter()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with sessions() as session, session.begin():
                applied = await _apply_once(session, command, defer_seconds, max_attempts)
            break
        except Exception as error:
            if attempt == MAX_ATTEMPTS or not status_store.is_retryable(error):
                raise
            CONFLICT_RETRIES.inc()
            await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))
    APPLY_SECONDS.observe(time.perf_counter() - started)
    _record(command, applied.applications, applied.added)
    RUNS_PAUSED.inc(len(applied.templates.paused_runs))
    return ApplyStatusResult(
        outcomes=[a.outcome for a in applied.applications],
        do_not_message_added=sum(applied.added.values()),
        template_outcomes=applied.templates.outcomes,
        paused_runs=applied.templates.paused_runs,
        settled_receipts=applied.settled,
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
