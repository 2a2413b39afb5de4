"""Persistence of the status path: matching statuses to messages, the event log, opt-outs.

Everything here runs inside the caller's transaction (one per ApplyStatus call) and is
set-based: a batch of N statuses costs a handful of statements, not N.

How a batch is applied (:func:`apply_status_updates`):

1. The messages the statuses name are locked (``SELECT … ORDER BY id FOR UPDATE``): first by
   provider message id, then, for ids nobody has, by ``biz_opaque_callback_data`` (our message
   id). A message only matches when its run's sender phone number id is the one the webhook was
   addressed to. The lock is what makes the read-decide-write below safe against a concurrent
   ApplyStatus or dispatcher touching the same message (rows are locked in id order to keep
   deadlocks rare; the use case retries the rare one).
2. Statuses whose message is unknown take an advisory lock on their provider message id and
   are checked again, so :func:`apply_orphaned_statuses` (which takes the same locks) can never
   miss an orphan inserted concurrently; if the message appeared meanwhile the batch is retried.
3. Each status is inserted into ``status_event`` (UNIQUE (provider, provider_message_id,
   status), ON CONFLICT DO NOTHING): a conflict is a duplicate and changes nothing, so the same
   (message, status) never makes a second transition, even across ingestors.
4. Per message, orphans left by earlier batches and then the new statuses are replayed in
   arrival order through the pure rules (``domain.lifecycle.apply_status``), and each changed
   message is written back by one bulk UPDATE (which also fires the run-counter triggers).

:func:`apply_orphaned_statuses` is the dispatcher's hook: call it right after storing provider
message ids (ideally in the same transaction) and the statuses that arrived first are applied.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import errors as pg_errors
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from common.vocabulary import ApplyOutcome, MessageState, RejectionReason
from dispatch_service.domain.lifecycle import (
    TRACKED_STATUSES,
    Lifecycle,
    ProviderError,
    ProviderStatus,
    StatusUpdate,
    apply_status,
)
from dispatch_service.domain.stop_keywords import OptOut

PROVIDER = "meta"
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


@dataclass(slots=True)
class _Message:
    """A locked invite_message row: what it was and what the batch makes of it."""

    id: uuid.UUID
    sender: str
    phone_e164: str | None
    provider_message_id: str | None
    wa_id: str | None
    before: Lifecycle
    after: Lifecycle
    assigned_wamid: bool = False
    assigned_wa_id: bool = False

    @property
    def changed(self) -> bool:
        return self.after != self.before or self.assigned_wamid or self.assigned_wa_id


@dataclass(slots=True)
class _Orphan:
    """An orphaned status_event row about to be resolved."""

    id: int
    provider_message_id: str
    phone_number_id: str
    callback_data: str
    recipient_id: str
    report: ProviderStatus
    outcome: ApplyOutcome = ApplyOutcome.ORPHANED
    message_id: uuid.UUID | None = None


@dataclass(slots=True)
class _Batch:
    """The batch's statuses and the messages they matched."""

    updates: Sequence[StatusUpdate]
    first_of: dict[tuple[str, str], int] = field(default_factory=dict)
    target: dict[int, _Message] = field(default_factory=dict)
    messages: dict[uuid.UUID, _Message] = field(default_factory=dict)
    known_wamids: set[str] = field(default_factory=set)
    """Provider ids some message had when the batch locked its messages (any sender)."""

    def unique_indexes(self) -> list[int]:
        return sorted(self.first_of.values())


# --- statements ---------------------------------------------------------------------------------
# Batches travel as one JSON parameter (jsonb_to_recordset / a JSON array of ids): Postgres parses
# JSON in C, which is several times cheaper than the driver building one typed array per column.
# Lists of ids come as a JSON array: ARRAY(SELECT jsonb_array_elements_text(...)).

# The two lock queries differ only in how they find the messages; both read what _message() needs.
_LOCK_MESSAGES = """
    SELECT m.id, m.provider_message_id, m.wa_id, m.phone_e164, m.state, m.sent_at,
           m.delivered_at, m.read_at, m.failed_at, m.error_code, m.error_title, m.error_details,
           m.rejection_reason, r.sender_phone_number_id
    FROM invite_message m JOIN invite_send_run r ON r.id = m.run_id
    WHERE {match}
    ORDER BY m.id
    FOR UPDATE OF m
"""
LOCK_BY_PROVIDER_ID = text(
    _LOCK_MESSAGES.format(
        match="m.provider = :provider AND m.provider_message_id = ANY(ARRAY("
        "SELECT jsonb_array_elements_text(CAST(:wamids AS jsonb))))"
    )
)
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
ORPHANS_FOR = text("""
    SELECT id, provider_message_id, status, provider_timestamp, phone_number_id, callback_data,
           recipient_id, errors
    FROM status_event
    WHERE outcome = 'orphaned' AND provider = :provider
      AND (provider_message_id = ANY(ARRAY(
               SELECT jsonb_array_elements_text(CAST(:wamids AS jsonb))))
           OR callback_data = ANY(ARRAY(
               SELECT jsonb_array_elements_text(CAST(:callbacks AS jsonb)))))
    ORDER BY id
    FOR UPDATE
""")
INSERT_EVENTS = text("""
    INSERT INTO status_event (
        provider, provider_message_id, status, provider_timestamp, message_id, receipt_id,
        phone_number_id, recipient_id, callback_data, errors, outcome, resolved_at)
    SELECT :provider, v.wamid, v.status, v.at, v.message_id, r.id,
           v.pnid, v.recipient, v.callback, v.errors, v.outcome,
           CASE WHEN v.message_id IS NULL THEN NULL ELSE now() END
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS v(wamid text, status text, at timestamptz, message_id uuid, receipt_id uuid,
              pnid text, recipient text, callback text, errors jsonb, outcome text)
    LEFT JOIN webhook_receipt r ON r.id = v.receipt_id
    ORDER BY v.wamid, v.status
    ON CONFLICT (provider, provider_message_id, status) DO NOTHING
    RETURNING provider_message_id, status
""")
SET_EVENT_OUTCOMES = text("""
    UPDATE status_event AS e
    SET outcome = v.outcome, message_id = COALESCE(v.message_id, e.message_id),
        resolved_at = CASE WHEN v.message_id IS NULL THEN e.resolved_at ELSE now() END
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS v(wamid text, status text, outcome text, message_id uuid)
    WHERE e.provider = :provider AND e.provider_message_id = v.wamid AND e.status = v.status
""")
UPDATE_MESSAGES = text("""
    UPDATE invite_message AS m
    SET state = v.state, sent_at = v.sent_at, delivered_at = v.delivered_at,
        read_at = v.read_at, failed_at = v.failed_at, error_code = v.error_code,
        error_title = v.error_title, error_details = v.error_details,
        rejection_reason = v.rejection_reason, provider_message_id = v.wamid, wa_id = v.wa_id,
        updated_at = now()
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS v(id uuid, state text, sent_at timestamptz, delivered_at timestamptz,
              read_at timestamptz, failed_at timestamptz, error_code int, error_title text,
              error_details text, rejection_reason text, wamid text, wa_id text)
    WHERE m.id = v.id
""")
ADD_OPT_OUTS = text("""
    WITH candidate AS (
        SELECT DISTINCT ON (w.id, v.phone) w.id AS workspace_id, v.phone, v.source, v.reason,
               v.receipt_id
        FROM jsonb_to_recordset(CAST(:rows AS jsonb))
             AS v(pnid text, phone text, source text, reason text, receipt_id text)
        JOIN workspace w ON w.sender_phone_number_id = v.pnid
        ORDER BY w.id, v.phone
    ), added AS (
        INSERT INTO do_not_message_entry (workspace_id, phone_e164, reason, source)
        SELECT workspace_id, phone, reason, source FROM candidate
        ON CONFLICT (workspace_id, phone_e164) WHERE removed_at IS NULL DO NOTHING
        RETURNING id, workspace_id, phone_e164, source
    )
    INSERT INTO audit_entry (workspace_id, actor_id, action, subject_type, subject_id, details)
    SELECT a.workspace_id, NULL, 'dnm.add', 'do_not_message_entry', a.id::text,
           jsonb_build_object('phone_e164', a.phone_e164, 'source', a.source,
                              'reason', c.reason, 'receipt_id', c.receipt_id)
    FROM added a JOIN candidate c ON c.workspace_id = a.workspace_id AND c.phone = a.phone_e164
    RETURNING workspace_id, details ->> 'source' AS source
""")


def _json(value: Any) -> str:
    """One JSON parameter: datetimes as ISO 8601 (with offset), UUIDs as strings."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_scalar)


def _json_scalar(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


# --- reading rows -------------------------------------------------------------------------------


def _lifecycle(row: Any) -> Lifecycle:
    error = (
        ProviderError(row.error_code, row.error_title or "", row.error_details or "")
        if row.error_code is not None
        else None
    )
    return Lifecycle(
        state=MessageState(row.state),
        sent_at=row.sent_at,
        delivered_at=row.delivered_at,
        read_at=row.read_at,
        failed_at=row.failed_at,
        error=error,
        rejection_reason=RejectionReason(row.rejection_reason) if row.rejection_reason else None,
    )


def _message(row: Any) -> _Message:
    lifecycle = _lifecycle(row)
    return _Message(
        id=row.id,
        sender=row.sender_phone_number_id,
        phone_e164=row.phone_e164,
        provider_message_id=row.provider_message_id,
        wa_id=row.wa_id,
        before=lifecycle,
        after=lifecycle,
    )


def _errors_from_json(raw: Any) -> tuple[ProviderError, ...]:
    items = raw if isinstance(raw, list) else []
    return tuple(
        ProviderError(int(e.get("code", 0)), str(e.get("title", "")), str(e.get("details", "")))
        for e in items
        if isinstance(e, dict)
    )


def _errors_to_json(errors: Iterable[ProviderError]) -> list[dict[str, Any]]:
    return [{"code": e.code, "title": e.title, "details": e.details} for e in errors]


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


def wamid_lock_key(provider_message_id: str) -> int:
    """A stable signed 32-bit key for a provider message id's advisory lock."""
    digest = hashlib.blake2b(provider_message_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _lock_messages(
    session: AsyncSession, *, wamids: Sequence[str] = (), ids: Sequence[uuid.UUID] = ()
) -> list[_Message]:
    if wamids:
        result = await session.execute(
            LOCK_BY_PROVIDER_ID, {"provider": PROVIDER, "wamids": _json(list(wamids))}
        )
    elif ids:
        result = await session.execute(LOCK_BY_ID, {"ids": _json(list(ids))})
    else:
        return []
    return [_message(row) for row in result]


async def _lock_wamids(session: AsyncSession, wamids: Iterable[str]) -> None:
    keys = sorted({wamid_lock_key(w) for w in wamids})
    if keys:
        await session.execute(LOCK_WAMIDS, {"lock_class": WAMID_LOCK_CLASS, "keys": keys})


async def _orphans_for(session: AsyncSession, messages: Iterable[_Message]) -> list[_Orphan]:
    messages = list(messages)
    if not messages:
        return []
    rows = await session.execute(
        ORPHANS_FOR,
        {
            "provider": PROVIDER,
            "wamids": _json([m.provider_message_id for m in messages if m.provider_message_id]),
            "callbacks": _json([str(m.id) for m in messages]),
        },
    )
    return [
        _Orphan(
            id=row.id,
            provider_message_id=row.provider_message_id,
            phone_number_id=row.phone_number_id,
            callback_data=row.callback_data,
            recipient_id=row.recipient_id,
            report=ProviderStatus(
                row.status, row.provider_timestamp, _errors_from_json(row.errors)
            ),
        )
        for row in rows
    ]


# --- matching -----------------------------------------------------------------------------------


def _claim(message: _Message, wamid: str, sender: str, recipient_id: str) -> bool:
    """Whether a status (wamid, sender) belongs to `message`; records a first wamid / wa_id."""
    if message.sender != sender:
        return False
    if message.provider_message_id is None:
        message.provider_message_id = wamid
        message.assigned_wamid = True
    elif message.provider_message_id != wamid:
        return False
    if message.wa_id is None and recipient_id:
        message.wa_id = recipient_id
        message.assigned_wa_id = True
    return True


def _match_orphans(orphans: list[_Orphan], messages: dict[uuid.UUID, _Message]) -> None:
    by_wamid = {m.provider_message_id: m for m in messages.values() if m.provider_message_id}
    for orphan in orphans:
        message = by_wamid.get(orphan.provider_message_id)
        if message is None:
            callback_id = _as_uuid(orphan.callback_data)
            message = messages.get(callback_id) if callback_id else None
        if message is not None and _claim(
            message, orphan.provider_message_id, orphan.phone_number_id, orphan.recipient_id
        ):
            orphan.message_id = message.id
            by_wamid[orphan.provider_message_id] = message


def _replay_orphans(orphans: list[_Orphan], messages: dict[uuid.UUID, _Message]) -> None:
    for orphan in orphans:
        if orphan.message_id is None:
            continue
        message = messages[orphan.message_id]
        orphan.outcome, message.after = apply_status(message.after, orphan.report)


# --- writing ------------------------------------------------------------------------------------


async def _write_messages(session: AsyncSession, messages: Iterable[_Message]) -> None:
    changed = [m for m in messages if m.changed]
    if not changed:
        return
    rows = [
        {
            "id": m.id,
            "state": m.after.state.value,
            "sent_at": m.after.sent_at,
            "delivered_at": m.after.delivered_at,
            "read_at": m.after.read_at,
            "failed_at": m.after.failed_at,
            "error_code": m.after.error.code if m.after.error else None,
            "error_title": m.after.error.title if m.after.error else None,
            "error_details": m.after.error.details if m.after.error else None,
            "rejection_reason": m.after.rejection_reason,
            "wamid": m.provider_message_id,
            "wa_id": m.wa_id,
        }
        for m in changed
    ]
    await session.execute(UPDATE_MESSAGES, {"rows": _json(rows)})


def _outcome_rows(
    items: Iterable[tuple[str, str, ApplyOutcome, uuid.UUID | None]],
) -> str:
    return _json(
        [
            {"wamid": wamid, "status": status, "outcome": outcome.value, "message_id": message_id}
            for wamid, status, outcome, message_id in items
        ]
    )


async def _write_orphans(session: AsyncSession, orphans: Iterable[_Orphan]) -> None:
    resolved = [o for o in orphans if o.message_id is not None]
    if resolved:
        rows = _outcome_rows(
            (o.provider_message_id, o.report.status, o.outcome, o.message_id) for o in resolved
        )
        await session.execute(SET_EVENT_OUTCOMES, {"provider": PROVIDER, "rows": rows})


# --- the batch ----------------------------------------------------------------------------------


async def _match_batch(session: AsyncSession, batch: _Batch) -> None:
    """Lock and match the messages of the batch's statuses (step 1 of the module docstring)."""
    unique = batch.unique_indexes()
    wamids = sorted({batch.updates[i].provider_message_id for i in unique})
    by_wamid = {m.provider_message_id: m for m in await _lock_messages(session, wamids=wamids)}
    batch.known_wamids = {w for w in by_wamid if w}
    by_id = {m.id: m for m in by_wamid.values()}
    callback_ids: set[uuid.UUID] = set()
    for i in unique:
        callback_id = _as_uuid(batch.updates[i].callback_data)
        if batch.updates[i].provider_message_id not in by_wamid and callback_id is not None:
            callback_ids.add(callback_id)
    fetched = await _lock_messages(session, ids=sorted(callback_ids - by_id.keys()))
    by_id.update((m.id, m) for m in fetched)
    batch.messages = by_id
    for i in unique:
        update = batch.updates[i]
        message = by_wamid.get(update.provider_message_id)
        if message is None and (cid := _as_uuid(update.callback_data)):
            message = by_id.get(cid)
        if message is not None and _claim(
            message, update.provider_message_id, update.phone_number_id, update.recipient_id
        ):
            batch.target[i] = message
            by_wamid[update.provider_message_id] = message


async def _guard_unmatched(session: AsyncSession, batch: _Batch) -> None:
    """Lock unmatched ids and raise RetryableConflict when their message appeared meanwhile."""
    unmatched = sorted(
        {
            batch.updates[i].provider_message_id
            for i in batch.unique_indexes()
            if i not in batch.target
            and batch.updates[i].provider_message_id not in batch.known_wamids
            and batch.updates[i].report.status in TRACKED_STATUSES
        }
    )
    if not unmatched:
        return
    await _lock_wamids(session, unmatched)
    found = await session.execute(
        ANY_MESSAGE_WITH, {"provider": PROVIDER, "wamids": _json(unmatched)}
    )
    if found.first() is not None:
        raise RetryableConflict("a message received its provider id while the batch was applied")


def _replay_batch(batch: _Batch, skip: set[int]) -> dict[int, ApplyOutcome]:
    """Outcomes of the batch's unique statuses (minus `skip`), replayed per message in order."""
    outcomes: dict[int, ApplyOutcome] = {}
    for i in batch.unique_indexes():
        if i in skip:
            continue
        update = batch.updates[i]
        message = batch.target.get(i)
        if update.report.status not in TRACKED_STATUSES:
            outcomes[i] = ApplyOutcome.UNKNOWN_STATUS
        elif message is None:
            outcomes[i] = ApplyOutcome.ORPHANED
        else:
            outcomes[i], message.after = apply_status(message.after, update.report)
    return outcomes


async def _insert_events(
    session: AsyncSession, batch: _Batch, outcomes: dict[int, ApplyOutcome]
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
            }
        )
    result = await session.execute(INSERT_EVENTS, {"provider": PROVIDER, "rows": _json(rows)})
    return {(row.provider_message_id, row.status) for row in result}


def _reset(messages: Iterable[_Message]) -> None:
    for message in messages:
        message.after = message.before


async def apply_status_updates(
    session: AsyncSession, updates: Sequence[StatusUpdate]
) -> list[StatusApplication]:
    """Apply a batch of provider statuses; one result per input, in order.

    Runs in the caller's transaction. May raise an error for which :func:`is_retryable` is true:
    roll back and run the whole transaction again.
    """
    batch = _Batch(updates)
    for i, update in enumerate(updates):
        batch.first_of.setdefault((update.provider_message_id, update.report.status), i)
    await _match_batch(session, batch)
    await _guard_unmatched(session, batch)
    orphans = await _orphans_for(session, batch.messages.values())
    _match_orphans(orphans, batch.messages)
    _replay_orphans(orphans, batch.messages)
    outcomes = _replay_batch(batch, skip=set())
    inserted = await _insert_events(session, batch, outcomes)
    conflicts = {i for i in outcomes if _key(updates[i]) not in inserted}
    if conflicts:
        # Someone recorded these first (another ingestor, or an earlier call): they are
        # duplicates, and the messages' statuses are replayed without them. Orphans that the
        # other writer committed meanwhile are visible now and are absorbed too.
        _reset(batch.messages.values())
        orphans = await _orphans_for(session, batch.messages.values())
        _match_orphans(orphans, batch.messages)
        _replay_orphans(orphans, batch.messages)
        outcomes = _replay_batch(batch, skip=conflicts)
        await _fix_outcomes(session, batch, outcomes)
    await _write_orphans(session, orphans)
    await _write_messages(session, batch.messages.values())
    return _results(batch, outcomes)


def _key(update: StatusUpdate) -> tuple[str, str]:
    return update.provider_message_id, update.report.status


async def _fix_outcomes(
    session: AsyncSession, batch: _Batch, outcomes: dict[int, ApplyOutcome]
) -> None:
    rows = _outcome_rows(
        (
            batch.updates[i].provider_message_id,
            batch.updates[i].report.status,
            outcomes[i],
            t.id if (t := batch.target.get(i)) is not None else None,
        )
        for i in sorted(outcomes)
    )
    await session.execute(SET_EVENT_OUTCOMES, {"provider": PROVIDER, "rows": rows})


def _results(batch: _Batch, outcomes: dict[int, ApplyOutcome]) -> list[StatusApplication]:
    results = []
    for i, update in enumerate(batch.updates):
        message = batch.target.get(batch.first_of[_key(update)])
        outcome = outcomes.get(i, ApplyOutcome.DUPLICATE)
        results.append(
            StatusApplication(
                outcome=outcome,
                message_id=message.id if message else None,
                message_phone=message.phone_e164 if message else None,
            )
        )
    return results


async def apply_orphaned_statuses(session: AsyncSession, message_ids: Sequence[uuid.UUID]) -> int:
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
    messages = {m.id: m for m in await _lock_messages(session, ids=sorted(set(message_ids)))}
    await _lock_wamids(
        session, (m.provider_message_id for m in messages.values() if m.provider_message_id)
    )
    orphans = await _orphans_for(session, messages.values())
    _match_orphans(orphans, messages)
    _replay_orphans(orphans, messages)
    await _write_orphans(session, orphans)
    await _write_messages(session, messages.values())
    return sum(1 for o in orphans if o.message_id is not None)


async def add_opt_outs(session: AsyncSession, opt_outs: Sequence[OptOut]) -> dict[str, int]:
    """Add each phone to do-not-message in every workspace using its sender phone number id.

    Idempotent: a phone already on the list (active entry) is left alone. Each new entry gets a
    ``dnm.add`` audit entry with no actor. Returns the number of entries added per source.
    """
    if not opt_outs:
        return {}
    rows = [
        {
            "pnid": o.phone_number_id,
            "phone": o.phone_e164,
            "source": o.source.value,
            "reason": o.reason,
            "receipt_id": o.receipt_id,
        }
        for o in opt_outs
    ]
    result = await session.execute(ADD_OPT_OUTS, {"rows": _json(rows)})
    added: dict[str, int] = defaultdict(int)
    for row in result:
        added[row.source] += 1
    return dict(added)
