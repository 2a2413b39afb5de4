"""Persistence of the status path: locking the messages statuses name, and the status event log.

Everything here runs inside the caller's transaction (one per ApplyStatus call) and is
set-based: a batch of N statuses costs a handful of statements, not N. The decisions (which
message a status belongs to, duplicates, orphans, replay order) are pure functions of
``domain/status_matching.py``; the messages' new states are written by
``message_transitions.write_provider_statuses``.

How a batch is applied (:func:`apply_status_updates`):

1. The messages the statuses name are locked (``SELECT … ORDER BY id FOR UPDATE``): first by
   provider message id, then, for ids nobody has, by ``biz_opaque_callback_data`` (our message
   id); the domain matches each status to its message. The lock is what makes the
   read-decide-write below safe against a concurrent ApplyStatus or dispatcher touching the same
   message (rows are locked in id order to keep deadlocks rare; the use case retries the rare
   one).
2. Statuses whose message is unknown take an advisory lock on their provider message id and
   are checked again, so :func:`apply_orphaned_statuses` (which takes the same locks) can never
   miss an orphan inserted concurrently; if the message appeared meanwhile the batch is retried.
3. Each status is inserted into ``status_event`` (UNIQUE (provider, provider_message_id,
   status), ON CONFLICT DO NOTHING): a conflict is a duplicate and changes nothing, so the same
   (message, status) never makes a second transition, even across ingestors. `provider` is who
   reported it (the update's, from its receipt): a batch holding both Meta's and Twilio's
   statuses is applied as one part per provider, in the one transaction. Such a batch first
   locks every message its statuses name in one statement (id order across providers), and
   every part takes its row locks (step 1) before any takes an advisory lock (step 2), as the
   dispatcher does; a status only matches a message of its own provider.
4. Per message, orphans held from earlier batches and then the new statuses are replayed in
   arrival order through the lifecycle rules, and each changed message is written back by one
   bulk UPDATE (which also fires the run-counter triggers).

:func:`apply_orphaned_statuses` is the dispatcher's hook: call it right after storing provider
message ids (ideally in the same transaction) and the statuses that arrived first are applied.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from psycopg import errors as pg_errors
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from common.vocabulary import (
    ApplyOutcome,
    HoldReason,
    MessageState,
    RejectionReason,
    SenderProvider,
)
from dispatch_service.domain.lifecycle import (
    Lifecycle,
    ProviderError,
    ProviderStatus,
    StatusUpdate,
)
from dispatch_service.domain.pricing import Pricing
from dispatch_service.domain.retry import MARKETING_CAP_DEFER_SECONDS
from dispatch_service.domain.status_matching import (
    HeldStatus,
    MatchedMessage,
    StatusBatch,
    in_report_order,
    match_held,
    replay_held,
    status_key,
)
from dispatch_service.persistence import run_transitions
from dispatch_service.persistence.json_param import json_param
from dispatch_service.persistence.message_transitions import (
    record_pricing,
    write_provider_statuses,
)

# Namespace of this module's advisory locks (the first key of pg_advisory_xact_lock(int, int)).
WAMID_LOCK_CLASS = 0x57414D  # "WAM"


class RetryableConflict(Exception):
    """The transaction met a concurrent writer (deadlock, or a message appeared); run it again."""


def is_retryable(error: BaseException) -> bool:
    """True for errors the whole transaction may simply be retried after."""
    if isinstance(error, RetryableConflict):
        return True
    cause = error.orig if isinstance(error, DBAPIError) else None
    return isinstance(cause, pg_errors.DeadlockDetected | pg_errors.SerializationFailure)


@dataclass(frozen=True, slots=True)
class StatusApplication:
    """What applying one input status did."""

    outcome: ApplyOutcome
    message_id: uuid.UUID | None = None
    message_phone: str | None = None


# --- statements ---------------------------------------------------------------------------------
# Batches travel as one JSON parameter (jsonb_to_recordset / a JSON array of ids): Postgres parses
# JSON in C, which is several times cheaper than the driver building one typed array per column.
# Lists of ids come as a JSON array: ARRAY(SELECT jsonb_array_elements_text(...)).

# The two lock queries differ only in how they find the messages; both read what _message() needs,
# in the order it unpacks.
_LOCK_MESSAGES = """
    SELECT m.id, m.provider_message_id, m.wa_id, m.phone_e164, m.state, m.sent_at,
           m.delivered_at, m.read_at, m.failed_at, m.error_code, m.error_title, m.error_details,
           m.rejection_reason, m.hold_reason, r.sender_phone_number_id, m.provider,
           m.attempt_count
    FROM invite_message m JOIN invite_send_run r ON r.id = m.run_id
    WHERE {match}
    ORDER BY m.id
    FOR UPDATE OF m
"""


def _by_provider_ids(key: str = "") -> str:
    """_LOCK_MESSAGES's match for one provider's message ids (:provider<key>, :wamids<key>)."""
    return (
        f"(m.provider = :provider{key} AND m.provider_message_id = ANY(ARRAY("
        f"SELECT jsonb_array_elements_text(CAST(:wamids{key} AS jsonb)))))"
    )


LOCK_BY_PROVIDER_ID = text(_LOCK_MESSAGES.format(match=_by_provider_ids()))
LOCK_BY_ID = text(
    _LOCK_MESSAGES.format(
        match="m.id = ANY(CAST(ARRAY("
        "SELECT jsonb_array_elements_text(CAST(:ids AS jsonb))) AS uuid[]))"
    )
)
LOCK_WAMIDS = text("""
    SELECT pg_advisory_xact_lock(:lock_class, k) FROM unnest(CAST(:keys AS int[])) AS k
""")
ANY_MESSAGE_WITH = text("""
    SELECT 1 FROM invite_message
    WHERE provider = :provider
      AND provider_message_id = ANY(ARRAY(
          SELECT jsonb_array_elements_text(CAST(:wamids AS jsonb))))
    LIMIT 1
""")
# A message's orphans are the statuses naming its provider id or its id as callback data, looked
# up whoever reported them; matching (domain.status_matching) then keeps only its provider's.
ORPHANS_FOR = text("""
    SELECT id, provider, provider_message_id, status, provider_timestamp, phone_number_id,
           callback_data, recipient_id, errors, pricing
    FROM status_event
    WHERE outcome = 'orphaned'
      AND (provider_message_id = ANY(ARRAY(
               SELECT jsonb_array_elements_text(CAST(:wamids AS jsonb))))
           OR callback_data = ANY(ARRAY(
               SELECT jsonb_array_elements_text(CAST(:callbacks AS jsonb)))))
    ORDER BY id
    FOR UPDATE
""")
# A status keeps its receipt's id only when that receipt is stored, looked up by key for each
# status: joined, the planner scanned the whole receipt table whenever it was young enough for
# that to look cheaper (3.6 ms a call at 13,000 receipts).
INSERT_EVENTS = text("""
    INSERT INTO status_event (
        provider, provider_message_id, status, provider_timestamp, message_id, receipt_id,
        phone_number_id, recipient_id, callback_data, errors, outcome, resolved_at, pricing)
    SELECT :provider, v.wamid, v.status, v.at, v.message_id,
           (SELECT r.id FROM webhook_receipt r WHERE r.id = v.receipt_id),
           v.pnid, v.recipient, v.callback, v.errors, v.outcome,
           CASE WHEN v.message_id IS NULL THEN NULL ELSE now() END, v.pricing
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS v(wamid text, status text, at timestamptz, message_id uuid, receipt_id uuid,
              pnid text, recipient text, callback text, errors jsonb, outcome text,
              pricing jsonb)
    ORDER BY v.wamid, v.status
    ON CONFLICT (provider, provider_message_id, status) DO NOTHING
    RETURNING provider_message_id, status
""")
SET_EVENT_OUTCOMES = text("""
    UPDATE status_event AS e
    SET outcome = v.outcome, message_id = COALESCE(v.message_id, e.message_id),
        resolved_at = CASE WHEN v.message_id IS NULL THEN e.resolved_at ELSE now() END
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS v(provider text, wamid text, status text, outcome text, message_id uuid)
    WHERE e.provider = v.provider AND e.provider_message_id = v.wamid AND e.status = v.status
""")


# --- reading rows -------------------------------------------------------------------------------


_STATES = {state.value: state for state in MessageState}
_REASONS = {reason.value: reason for reason in RejectionReason}
_PROVIDERS = {provider.value: provider for provider in SenderProvider}


def _message(row: Any, max_attempts: int | None) -> MatchedMessage:
    """A locked message from a row of _LOCK_MESSAGES (unpacked in its column order: reading
    seventeen columns by name and the enums by call was a sixth of ApplyStatus's CPU);
    `max_attempts`: the retry policy's calls per message (None: no limit)."""
    (
        message_id,
        provider_message_id,
        wa_id,
        phone_e164,
        state_value,
        sent_at,
        delivered_at,
        read_at,
        failed_at,
        error_code,
        error_title,
        error_details,
        rejection_reason,
        hold_reason,
        sender,
        provider,
        attempt_count,
    ) = row
    state = _STATES[state_value]
    lifecycle = Lifecycle(
        state=state,
        sent_at=sent_at,
        delivered_at=delivered_at,
        read_at=read_at,
        failed_at=failed_at,
        error=(
            ProviderError(error_code, error_title or "", error_details or "")
            if error_code is not None
            else None
        ),
        rejection_reason=_REASONS[rejection_reason] if rejection_reason else None,
        deferred=state is MessageState.QUEUED and hold_reason == HoldReason.MARKETING_LIMIT,
        last_attempt=max_attempts is not None and attempt_count >= max_attempts,
    )
    return MatchedMessage(
        id=message_id,
        sender=sender,
        phone_e164=phone_e164,
        provider_message_id=provider_message_id,
        wa_id=wa_id,
        before=lifecycle,
        after=lifecycle,
        provider=_PROVIDERS[provider],
    )


def _errors_from_json(raw: Any) -> tuple[ProviderError, ...]:
    items = raw if isinstance(raw, list) else []
    return tuple(
        ProviderError(int(e.get("code", 0)), str(e.get("title", "")), str(e.get("details", "")))
        for e in items
        if isinstance(e, dict)
    )


def _pricing_from_json(raw: Any) -> Pricing | None:
    """An orphan's stored pricing block (None: none, or one without a category). Read by its
    known keys only: a row another release wrote must not fail the transaction that matches it."""
    if not isinstance(raw, dict) or not raw.get("category"):
        return None
    return Pricing(
        billable=bool(raw.get("billable")),
        category=str(raw["category"]),
        model=str(raw.get("model") or ""),
        type=str(raw.get("type") or ""),
    )


def _errors_to_json(errors: Iterable[ProviderError]) -> list[dict[str, Any]]:
    return [{"code": e.code, "title": e.title, "details": e.details} for e in errors]


def wamid_lock_key(provider_message_id: str) -> int:
    """A stable signed 32-bit key for a provider message id's advisory lock."""
    digest = hashlib.blake2b(provider_message_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _lock_messages(
    session: AsyncSession,
    *,
    provider: str = SenderProvider.META,
    wamids: Sequence[str] = (),
    ids: Sequence[uuid.UUID] = (),
    max_attempts: int | None = None,
) -> list[MatchedMessage]:
    if wamids:
        result = await session.execute(
            LOCK_BY_PROVIDER_ID, {"provider": provider, "wamids": json_param(list(wamids))}
        )
    elif ids:
        result = await session.execute(LOCK_BY_ID, {"ids": json_param(list(ids))})
    else:
        return []
    return [_message(row, max_attempts) for row in result]


async def _lock_wamids(session: AsyncSession, wamids: Iterable[str]) -> None:
    keys = sorted({wamid_lock_key(w) for w in wamids})
    if keys:
        await session.execute(LOCK_WAMIDS, {"lock_class": WAMID_LOCK_CLASS, "keys": keys})


async def _held_for(session: AsyncSession, messages: Iterable[MatchedMessage]) -> list[HeldStatus]:
    messages = list(messages)
    if not messages:
        return []
    rows = await session.execute(
        ORPHANS_FOR,
        {
            "wamids": json_param(
                [m.provider_message_id for m in messages if m.provider_message_id]
            ),
            "callbacks": json_param([m.id for m in messages]),
        },
    )
    return [
        HeldStatus(
            id=row.id,
            provider=_PROVIDERS[row.provider],
            provider_message_id=row.provider_message_id,
            phone_number_id=row.phone_number_id,
            callback_data=row.callback_data,
            recipient_id=row.recipient_id,
            report=ProviderStatus(
                row.status, row.provider_timestamp, _errors_from_json(row.errors)
            ),
            pricing=_pricing_from_json(row.pricing),
        )
        for row in rows
    ]


# --- writing ------------------------------------------------------------------------------------


def _outcome_rows(
    items: Iterable[tuple[str, str, str, ApplyOutcome, uuid.UUID | None]],
) -> str:
    return json_param(
        [
            {
                "provider": provider,
                "wamid": wamid,
                "status": status,
                "outcome": outcome.value,
                "message_id": message_id,
            }
            for provider, wamid, status, outcome, message_id in items
        ]
    )


async def _write_held(session: AsyncSession, held: Iterable[HeldStatus]) -> None:
    """The outcomes of the held statuses that found their message, and the pricing they were
    reported with (before the batch's own statuses record theirs: they were reported first)."""
    resolved = [o for o in held if o.message_id is not None]
    if resolved:
        rows = _outcome_rows(
            (o.provider, o.provider_message_id, o.report.status, o.outcome, o.message_id)
            for o in resolved
        )
        await session.execute(SET_EVENT_OUTCOMES, {"rows": rows})
        # The first reported first: record_pricing keeps the first block per message.
        priced = in_report_order(o for o in resolved if o.pricing)
        await record_pricing(
            session, [(o.message_id, o.pricing) for o in priced if o.message_id and o.pricing]
        )


# --- the batch ----------------------------------------------------------------------------------


async def _match_batch(
    session: AsyncSession, batch: StatusBatch, provider: str, max_attempts: int | None
) -> None:
    """Lock the messages of the batch's statuses and match them (step 1)."""
    locked = await _lock_messages(
        session, provider=provider, wamids=batch.wamids(), max_attempts=max_attempts
    )
    by_wamid = {m.provider_message_id: m for m in locked if m.provider_message_id}
    by_id = {m.id: m for m in locked}
    fetched = await _lock_messages(
        session, ids=sorted(batch.callback_ids(by_wamid) - set(by_id)), max_attempts=max_attempts
    )
    by_id.update((m.id, m) for m in fetched)
    batch.messages = by_id
    batch.match(by_wamid)


async def _guard_unmatched(session: AsyncSession, batch: StatusBatch, provider: str) -> None:
    """Lock unmatched ids and raise RetryableConflict when their message appeared meanwhile."""
    unmatched = batch.unmatched_wamids()
    if not unmatched:
        return
    await _lock_wamids(session, unmatched)
    found = await session.execute(
        ANY_MESSAGE_WITH, {"provider": provider, "wamids": json_param(unmatched)}
    )
    if found.first() is not None:
        raise RetryableConflict("a message received its provider id while the batch was applied")


async def _insert_events(
    session: AsyncSession, batch: StatusBatch, outcomes: dict[int, ApplyOutcome], provider: str
) -> set[tuple[str, str]]:
    rows = []
    for i in sorted(outcomes):
        update, target = batch.updates[i], batch.target.get(i)
        rows.append(
            {
                "wamid": update.provider_message_id,
                "status": update.report.status,
                "at": update.report.at,
                "message_id": target.id if target else None,
                "receipt_id": update.receipt_id,
                "pnid": update.phone_number_id,
                "recipient": update.recipient_id,
                "callback": update.callback_data,
                "errors": _errors_to_json(update.report.errors),
                "outcome": outcomes[i].value,
                # Kept for an orphan only: the others' pricing is recorded on their message now.
                "pricing": (
                    asdict(update.pricing)
                    if update.pricing and outcomes[i] is ApplyOutcome.ORPHANED
                    else None
                ),
            }
        )
    result = await session.execute(INSERT_EVENTS, {"provider": provider, "rows": json_param(rows)})
    return {(row.provider_message_id, row.status) for row in result}


async def _replay_held(session: AsyncSession, batch: StatusBatch) -> list[HeldStatus]:
    held = await _held_for(session, batch.messages.values())
    match_held(held, batch.messages)
    replay_held(held, batch.messages)
    return held


async def apply_status_updates(
    session: AsyncSession,
    updates: Sequence[StatusUpdate],
    defer_seconds: float = MARKETING_CAP_DEFER_SECONDS,
    max_attempts: int | None = None,
) -> list[StatusApplication]:
    """Apply a batch of provider statuses; one result per input, in order. A 131049 defers
    its message `defer_seconds`, or fails it once it has had `max_attempts` calls.

    Runs in the caller's transaction. May raise an error for which :func:`is_retryable` is true:
    roll back and run the whole transaction again.
    """
    parts: dict[SenderProvider, list[int]] = {}
    for i, update in enumerate(updates):
        parts.setdefault(update.provider, []).append(i)
    # One part per provider, in one order (concurrent batches lock alike). Every part takes its
    # row locks before any part takes an advisory lock, as the dispatcher's writes do (their
    # messages first, then the ids they store): otherwise a part holding a wamid's lock could
    # wait for a message the dispatcher holds while the dispatcher waits for that wamid.
    batches = {
        provider: StatusBatch([updates[i] for i in parts[provider]]) for provider in sorted(parts)
    }
    if len(batches) > 1:
        await _lock_known(session, {p: b.wamids() for p, b in batches.items()})
    for provider, batch in batches.items():
        await _match_batch(session, batch, provider, max_attempts)
    for provider, batch in batches.items():
        await _guard_unmatched(session, batch, provider)
    results: dict[int, StatusApplication] = {}
    for provider, batch in batches.items():
        part = await _apply_part(session, batch, provider, defer_seconds)
        results.update(zip(parts[provider], part, strict=True))
    return [results[i] for i in range(len(updates))]


async def _lock_known(session: AsyncSession, wamids: dict[SenderProvider, list[str]]) -> None:
    """Lock the messages several providers' statuses name, in one statement and so in id order
    (as the dispatcher locks a batch of any providers' messages); each part's own lock then
    finds them held already."""
    match = " OR ".join(_by_provider_ids(str(n)) for n in range(len(wamids)))
    params: dict[str, str] = {}
    for n, (provider, ids) in enumerate(wamids.items()):
        params[f"provider{n}"], params[f"wamids{n}"] = provider.value, json_param(ids)
    await session.execute(text(_LOCK_MESSAGES.format(match=match)), params)


async def _apply_part(
    session: AsyncSession, batch: StatusBatch, provider: str, defer_seconds: float
) -> list[StatusApplication]:
    """Apply statuses all reported by `provider`, their messages matched and the unmatched
    guarded (apply_status_updates)."""
    updates = batch.updates
    held = await _replay_held(session, batch)
    outcomes = batch.replay(skip=set())
    inserted = await _insert_events(session, batch, outcomes, provider)
    conflicts = {i for i in outcomes if status_key(updates[i]) not in inserted}
    if conflicts:
        # Someone recorded these first (another ingestor, or an earlier call): they are
        # duplicates, and the messages' statuses are replayed without them. Orphans that the
        # other writer committed meanwhile are visible now and are absorbed too.
        batch.reset()
        held = await _replay_held(session, batch)
        outcomes = batch.replay(skip=conflicts)
        await _fix_outcomes(session, batch, outcomes, provider)
    await _write_held(session, held)
    deferred = await write_provider_statuses(session, batch.messages.values(), defer_seconds)
    await run_transitions.reopen_for(session, deferred)
    return _results(batch, outcomes)


async def _fix_outcomes(
    session: AsyncSession, batch: StatusBatch, outcomes: dict[int, ApplyOutcome], provider: str
) -> None:
    rows = _outcome_rows(
        (
            provider,
            batch.updates[i].provider_message_id,
            batch.updates[i].report.status,
            outcomes[i],
            t.id if (t := batch.target.get(i)) is not None else None,
        )
        for i in sorted(outcomes)
    )
    await session.execute(SET_EVENT_OUTCOMES, {"rows": rows})


def _results(batch: StatusBatch, outcomes: dict[int, ApplyOutcome]) -> list[StatusApplication]:
    results = []
    for i, update in enumerate(batch.updates):
        message = batch.target.get(batch.first_of[status_key(update)])
        outcome = outcomes.get(i, ApplyOutcome.DUPLICATE)
        results.append(
            StatusApplication(
                outcome=outcome,
                message_id=message.id if message else None,
                message_phone=message.phone_e164 if message else None,
            )
        )
    return results


async def apply_orphaned_statuses(
    session: AsyncSession,
    message_ids: Sequence[uuid.UUID],
    defer_seconds: float = MARKETING_CAP_DEFER_SECONDS,
    max_attempts: int | None = None,
) -> int:
    """Apply the statuses that arrived before these messages' provider ids were stored.

    The dispatcher calls this right after it stores provider message ids, preferably in the same
    transaction (then nothing can slip between the two). Statuses are matched by provider message
    id, or by callback data (our message id) when the sender phone number id matches, and are
    replayed in arrival order through the lifecycle rules. Returns how many orphaned statuses
    were resolved. Runs in the caller's transaction; may raise an error for which
    :func:`is_retryable` is true (retry the transaction).
    """
    if not message_ids:
        return 0
    locked = await _lock_messages(session, ids=sorted(set(message_ids)), max_attempts=max_attempts)
    messages = {m.id: m for m in locked}
    await _lock_wamids(
        session, (m.provider_message_id for m in messages.values() if m.provider_message_id)
    )
    held = await _held_for(session, messages.values())
    match_held(held, messages)
    replay_held(held, messages)
    await _write_held(session, held)
    deferred = await write_provider_statuses(session, messages.values(), defer_seconds)
    await run_transitions.reopen_for(session, deferred)
    return sum(1 for o in held if o.message_id is not None)
