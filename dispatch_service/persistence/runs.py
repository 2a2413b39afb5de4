"""Send runs in Postgres: creating one from a precheck, reading it, its counts, state changes.

The message rows of a run are created by one INSERT ... SELECT from precheck_candidate (no
round trip per recipient); the run's counts come from invite_run_count, which triggers on
invite_message keep right for every writer.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg import errors as pg_errors
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import (
    Event,
    InviteSendRun,
    Precheck,
    Template,
    Workspace,
)
from common.vocabulary import RunState
from dispatch_service.domain.template_variables import (
    EventFacts,
    VariableSource,
    event_value,
)
from dispatch_service.errors import IdempotencyKeyRace, NotFound
from dispatch_service.persistence import message_transitions, run_transitions
from dispatch_service.persistence.prechecks import INVITED_STATES
from dispatch_service.read_models import RunRecord

RUN_NOT_FOUND = "no such run in this workspace"
IDEMPOTENCY_CONSTRAINT = "uq_invite_send_run_workspace_id_idempotency_key"


RUN_FIELDS = tuple(f.name for f in fields(RunRecord))
"""The run columns a RunRecord holds (same names in invite_send_run)."""


def run_record(run: Any) -> RunRecord:
    """The RunRecord of an InviteSendRun, or of a row with RUN_FIELDS' columns."""
    values = {name: getattr(run, name) for name in RUN_FIELDS}
    return RunRecord(**{**values, "state": RunState(run.state)})


async def load_run(
    session: AsyncSession, workspace_id: uuid.UUID, run_id: uuid.UUID, *, lock: bool = False
) -> RunRecord:
    """The run `run_id` of `workspace_id` (optionally locked FOR UPDATE), or NotFound."""
    statement = select(InviteSendRun).where(
        InviteSendRun.id == run_id, InviteSendRun.workspace_id == workspace_id
    )
    if lock:
        statement = statement.with_for_update()
    run = await session.scalar(statement.execution_options(populate_existing=True))
    if run is None:
        raise NotFound(RUN_NOT_FOUND, reason="RUN_NOT_FOUND")
    return run_record(run)


async def find_run_by_key(
    session: AsyncSession, workspace_id: uuid.UUID, idempotency_key: str
) -> RunRecord | None:
    """The run started with `idempotency_key` in the workspace, if any."""
    run = await session.scalar(
        select(InviteSendRun)
        .where(
            InviteSendRun.workspace_id == workspace_id,
            InviteSendRun.idempotency_key == idempotency_key,
        )
        .execution_options(populate_existing=True)
    )
    return run_record(run) if run is not None else None


async def find_run_by_precheck(session: AsyncSession, precheck_id: uuid.UUID) -> RunRecord | None:
    """The run started from `precheck_id`, if any."""
    run = await session.scalar(
        select(InviteSendRun).where(InviteSendRun.precheck_id == precheck_id)
    )
    return run_record(run) if run is not None else None


@dataclass(frozen=True)
class PrecheckRecord:
    """What StartRun needs from a precheck."""

    id: uuid.UUID
    event_id: uuid.UUID
    template_id: uuid.UUID
    created_at: datetime
    expires_at: datetime
    resend_phones: tuple[str, ...]


async def load_precheck(
    session: AsyncSession, workspace_id: uuid.UUID, precheck_id: uuid.UUID
) -> PrecheckRecord:
    """The precheck `precheck_id` of `workspace_id`, or NotFound."""
    row = await session.scalar(
        select(Precheck).where(Precheck.id == precheck_id, Precheck.workspace_id == workspace_id)
    )
    if row is None:
        raise NotFound("no such precheck in this workspace", reason="PRECHECK_NOT_FOUND")
    return PrecheckRecord(
        id=row.id,
        event_id=row.event_id,
        template_id=row.template_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        resend_phones=tuple(row.resend_phones),
    )


@dataclass(frozen=True)
class TemplateRecord:
    """A template as a run uses it."""

    id: uuid.UUID
    name: str
    language: str
    status: str
    variables: tuple[str, ...]


async def load_template(session: AsyncSession, template_id: uuid.UUID) -> TemplateRecord:
    """The template `template_id` (the caller scoped it to the workspace)."""
    row = await session.get_one(Template, template_id)
    return TemplateRecord(row.id, row.name, row.language, row.status, tuple(row.variables))


async def lock_event(session: AsyncSession, event_id: uuid.UUID) -> EventFacts:
    """Lock the event row (StartRuns of one event run one at a time) and return its facts."""
    row = await session.scalar(select(Event).where(Event.id == event_id).with_for_update())
    if row is None:
        raise NotFound("no such event in this workspace", reason="EVENT_NOT_FOUND")
    return EventFacts(row.name, row.starts_at, row.location, time_zone=row.time_zone)


async def sender_of(session: AsyncSession, workspace_id: uuid.UUID) -> str:
    """The workspace's sender phone number id."""
    return str(
        await session.scalar(
            select(Workspace.sender_phone_number_id).where(Workspace.id == workspace_id)
        )
    )


def _variables_sql(
    sources: Sequence[VariableSource],
    event: EventFacts,
    run_language: str,
    languages: Sequence[str] = (),
) -> tuple[str, dict[str, str]]:
    """A jsonb_build_array(...) of each message's frozen variable values, and its parameters.
    An event value that reads differently in another of the messages' `languages` (a date) is
    chosen per message by its language (the run's for messages without one)."""
    parts: list[str] = []
    params: dict[str, str] = {}
    for index, source in enumerate(sources):
        if source is VariableSource.CONTACT_NAME:
            parts.append("coalesce(nullif(btrim(c.display_name), ''), c.guest_unit_name)")
        elif source is VariableSource.HOUSEHOLD_NAME:
            parts.append("c.guest_unit_name")
        else:
            params[f"v{index}"] = default = event_value(source, event, run_language)
            whens = []
            for n, language in enumerate(languages):
                value = event_value(source, event, language)
                if value != default:
                    params[f"v{index}_{n}"], params[f"l{index}_{n}"] = value, language
                    whens.append(
                        f"WHEN CAST(:l{index}_{n} AS text) THEN CAST(:v{index}_{n} AS text)"
                    )
            if whens:
                parts.append(f"CASE c.language {' '.join(whens)} ELSE CAST(:v{index} AS text) END")
            else:
                parts.append(f"CAST(:v{index} AS text)")
    return f"jsonb_build_array({', '.join(parts)})", params


PRECHECK_LANGUAGES = text(
    "SELECT DISTINCT language FROM precheck_candidate"
    " WHERE precheck_id = :precheck AND language IS NOT NULL ORDER BY language"
)


INSERT_MESSAGES = """
WITH inserted AS (
  INSERT INTO invite_message (run_id, workspace_id, event_id, position, guest_unit_id,
    person_id, phone_e164, variables, state, rejection_reason, provider, language)
  SELECT :run, :ws, :event, c.position, c.guest_unit_id, c.person_id, c.phone_e164,
    {variables},
    CASE WHEN c.eligible THEN 'queued' ELSE 'blocked' END, c.rejection_reason, :provider,
    c.language
  FROM precheck_candidate c
  WHERE c.precheck_id = :precheck
  ORDER BY c.position
  RETURNING state)
SELECT count(*), count(*) FILTER (WHERE state = 'queued') FROM inserted
"""

# Phones invited by runs of the event that the precheck could not have seen: runs started
# after it was taken (with a margin for a StartRun that was still committing at the time).
INVITED_SINCE = text(
    """
    SELECT DISTINCT m.phone_e164 FROM invite_send_run r
    JOIN invite_message m ON m.run_id = r.id
    WHERE r.event_id = :event AND r.id <> :run
      AND r.created_at > :since - interval '10 minutes'
      AND m.phone_e164 IS NOT NULL AND m.state = ANY(CAST(:invited_states AS text[]))
    """
)


@dataclass(frozen=True)
class NewRun:
    """The header of a run about to be created."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    event_id: uuid.UUID
    template: TemplateRecord
    precheck: PrecheckRecord
    actor_id: uuid.UUID
    idempotency_key: str
    sender_phone_number_id: str
    provider: str
    send_at: datetime | None = None
    """Set: the run is created `scheduled` and waits for this instant."""
    deadline: datetime | None = None
    parent_run_id: uuid.UUID | None = None
    send_window: str | None = None


async def create_run(
    session: AsyncSession,
    run: NewRun,
    sources: Sequence[VariableSource],
    event: EventFacts,
) -> tuple[int, int]:
    """Insert the run and one message per candidate; returns (total, eligible).

    Candidates eligible at precheck time whose phone got a (non-failed) invitation for this
    event since then are blocked as already_invited, unless the precheck listed them for resend:
    two runs started from two prechecks taken at the same time never invite anyone twice (the
    caller holds the event row lock).
    """
    session.add(
        InviteSendRun(
            id=run.id,
            workspace_id=run.workspace_id,
            event_id=run.event_id,
            template_id=run.template.id,
            language=run.template.language,
            precheck_id=run.precheck.id,
            actor_id=run.actor_id,
            idempotency_key=run.idempotency_key,
            sender_phone_number_id=run.sender_phone_number_id,
            state=(RunState.SCHEDULED if run.send_at else RunState.QUEUED).value,
            send_at=run.send_at,
            deadline=run.deadline,
            parent_run_id=run.parent_run_id,
            send_window=run.send_window,
        )
    )
    try:
        await session.flush()
    except IntegrityError as error:
        if _violates(error, IDEMPOTENCY_CONSTRAINT):
            raise IdempotencyKeyRace("another StartRun committed this key first") from error
        raise
    languages = list(await session.scalars(PRECHECK_LANGUAGES, {"precheck": run.precheck.id}))
    variables, params = _variables_sql(sources, event, run.template.language, languages)
    # Only the variables expression is spliced in: built above from our own constants.
    result = await session.execute(
        text(INSERT_MESSAGES.replace("{variables}", variables)),
        {
            "run": run.id,
            "ws": run.workspace_id,
            "event": run.event_id,
            "precheck": run.precheck.id,
            "provider": run.provider,
            **params,
        },
    )
    row = result.one()
    total, eligible = int(row[0]), int(row[1])
    eligible -= await _block_invited_since(session, run)
    await session.execute(
        text(
            "UPDATE invite_send_run SET total_count = :total, eligible_count = :eligible,"
            " blocked_count = :total - :eligible WHERE id = :run"
        ),
        {"total": total, "eligible": eligible, "run": run.id},
    )
    if not eligible:
        await run_transitions.complete_finished(session, run.id)
    elif not run.send_at:
        await run_transitions.wake_dispatchers(session)
    return total, eligible


def _violates(error: IntegrityError, constraint: str) -> bool:
    cause = error.orig
    return isinstance(cause, pg_errors.UniqueViolation) and cause.diag.constraint_name == constraint


async def _block_invited_since(session: AsyncSession, run: NewRun) -> int:
    """Block (already_invited) phones a run started after the precheck invited meanwhile."""
    phones = set(
        await session.scalars(
            INVITED_SINCE,
            {
                "event": run.event_id,
                "run": run.id,
                "since": run.precheck.created_at,
                "invited_states": [s.value for s in INVITED_STATES],
            },
        )
    ) - set(run.precheck.resend_phones)
    if not phones:
        return 0
    return await message_transitions.block_already_invited(session, run.id, sorted(phones))


async def event_runs(
    session: AsyncSession, workspace_id: uuid.UUID, event_id: uuid.UUID
) -> list[RunRecord]:
    """The event's runs, newest first."""
    rows = await session.scalars(
        select(InviteSendRun)
        .where(InviteSendRun.workspace_id == workspace_id, InviteSendRun.event_id == event_id)
        .order_by(InviteSendRun.created_at.desc(), InviteSendRun.id)
    )
    return [run_record(r) for r in rows]
