"""Send runs in Postgres: creating one from a precheck, reading it, its counts, state changes.

The message rows of a run are created by INSERT ... SELECT from precheck_candidate (no round
trip per recipient): StartRun commits the run with its first FIRST_MESSAGES, so the dispatcher
can start on them, and the rest follow in batches of MESSAGE_BATCH, one transaction each
(`create_more_messages`: by the process that started the run, or by the reconciler when that
process died). The run's counts come from invite_run_count, which triggers on
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
    PER_RECIPIENT,
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
    total_count: int = 0
    eligible_count: int = 0


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
        total_count=row.total_count,
        eligible_count=row.eligible_count,
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


async def sender_of(session: AsyncSession, workspace_id: uuid.UUID) -> tuple[str, str]:
    """The workspace's sender phone number id and the provider it sends through (a run and its
    messages are recorded with it: Twilio's statuses are looked up under `twilio`)."""
    row = (
        await session.execute(
            select(Workspace.sender_phone_number_id, Workspace.sender_provider).where(
                Workspace.id == workspace_id
            )
        )
    ).one()
    return str(row.sender_phone_number_id), str(row.sender_provider)


@dataclass(frozen=True)
class MessageSpec:
    """What every message of a run is created with (stored on the run as `message_spec`, so
    the messages created after StartRun's first transaction, by it or by another process, read
    exactly as the first): the provider, the template's variable sources, and the event's
    values frozen at StartRun: `values[""]` in the run's language, `values[language]` for each
    message language in which one reads differently (a date); None for per-recipient sources."""

    provider: str
    sources: tuple[VariableSource, ...]
    values: dict[str, list[str | None]]

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "sources": [s.value for s in self.sources],
            "values": self.values,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MessageSpec:
        return cls(
            provider=data["provider"],
            sources=tuple(VariableSource(s) for s in data["sources"]),
            values={k: list(v) for k, v in data["values"].items()},
        )


def message_spec(
    provider: str,
    sources: Sequence[VariableSource],
    event: EventFacts,
    run_language: str,
    languages: Sequence[str] = (),
) -> MessageSpec:
    """The spec of a run's messages: the event's values frozen now, in the run's language and
    in each of the messages' `languages` where one differs."""

    def frozen(language: str) -> list[str | None]:
        return [
            None if source in PER_RECIPIENT else event_value(source, event, language)
            for source in sources
        ]

    values = {"": frozen(run_language)}
    for language in languages:
        if (other := frozen(language)) != values[""]:
            values[language] = other
    return MessageSpec(provider, tuple(sources), values)


def _variables_sql(spec: MessageSpec) -> tuple[str, dict[str, str]]:
    """A jsonb_build_array(...) of each message's variable values, and its parameters: the
    contact's from its candidate row, the event's from the spec (by the message's language)."""
    parts: list[str] = []
    params: dict[str, str] = {}
    others = [(n, language, values) for n, (language, values) in enumerate(spec.values.items())]
    for index, source in enumerate(spec.sources):
        if source is VariableSource.CONTACT_NAME:
            parts.append("coalesce(nullif(btrim(c.display_name), ''), c.guest_unit_name)")
            continue
        if source is VariableSource.HOUSEHOLD_NAME:
            parts.append("c.guest_unit_name")
            continue
        default = spec.values[""][index]
        params[f"v{index}"] = default or ""
        whens = []
        for n, language, values in others:
            if language and values[index] != default:
                params[f"v{index}_{n}"], params[f"l{index}_{n}"] = values[index] or "", language
                whens.append(f"WHEN CAST(:l{index}_{n} AS text) THEN CAST(:v{index}_{n} AS text)")
        if whens:
            parts.append(f"CASE c.language {' '.join(whens)} ELSE CAST(:v{index} AS text) END")
        else:
            parts.append(f"CAST(:v{index} AS text)")
    return f"jsonb_build_array({', '.join(parts)})", params


PRECHECK_LANGUAGES = text(
    "SELECT DISTINCT language FROM precheck_candidate"
    " WHERE precheck_id = :precheck AND language IS NOT NULL ORDER BY language"
)

FIRST_MESSAGES = 1_000
"""Messages StartRun creates in the transaction that creates the run: the dispatcher starts on
them (more than a second's sending at the highest rate) while the rest are written."""
MESSAGE_BATCH = 20_000
"""Messages created by each later transaction (about 0.3 s of writing each)."""

# The candidates from :from (the run's next_candidate_position) up to the `:limit`-th, in order;
# `next` is the first candidate left for a later batch (none: this batch is the last). With
# :phones, the candidates to those phones instead (StartRun's out-of-order already-invited ones).
_CREATE_MESSAGES = """
WITH next AS ({next}),
inserted AS (
  INSERT INTO invite_message (run_id, workspace_id, event_id, position, guest_unit_id,
    person_id, phone_e164, variables, state, rejection_reason, provider, language)
  SELECT :run, :ws, :event, c.position, c.guest_unit_id, c.person_id, c.phone_e164,
    {variables},
    CASE WHEN c.eligible THEN 'queued' ELSE 'blocked' END, c.rejection_reason, :provider,
    c.language
  FROM precheck_candidate c
  WHERE c.precheck_id = :precheck AND {which}
  ORDER BY c.position{skip_existing}
  RETURNING 1)
SELECT (SELECT position FROM next), (SELECT count(*) FROM inserted)
"""
_NEXT = (
    "SELECT c.position FROM precheck_candidate c WHERE c.precheck_id = :precheck"
    " AND c.position >= :from ORDER BY c.position OFFSET :limit LIMIT 1"
)
_NO_NEXT = "SELECT CAST(NULL AS integer) AS position"
_BATCH = "c.position >= :from AND c.position < coalesce((SELECT position FROM next), :end)"
# Not NOT EXISTS: for a run just created the statistics say it has no messages, and a plan
# that probed by run alone and filtered on position read every created message per candidate
# (8 s for a batch of 9,000). The arbiter index is always probed by its whole key.
_SKIP_EXISTING = " ON CONFLICT ON CONSTRAINT uq_invite_message_run_id_position DO NOTHING"
_TO_PHONES = "c.phone_e164 = ANY(CAST(:phones AS text[]))"
_END = 2**31 - 1
FIRST = -(2**31)
"""A position before every candidate's."""


async def _create_messages(
    session: AsyncSession,
    run: RunKeys,
    spec: MessageSpec,
    start: int,
    limit: int | None,
    *,
    existing: bool,
    phones: Sequence[str] = (),
) -> int | None:
    """Create the run's messages for candidates from position `start`, at most `limit` (all
    without one); `existing`: some may exist already (skipped). With `phones`: the candidates
    to those phones instead. Returns the position of the first candidate left (None: none)."""
    variables, params = _variables_sql(spec)
    batch = limit is not None and not phones
    row = (
        await session.execute(
            # Only the variables expression and the row filter are spliced in: built above from
            # our own constants.
            text(
                _CREATE_MESSAGES.format(
                    next=_NEXT if batch else _NO_NEXT,
                    variables=variables,
                    which=_TO_PHONES if phones else _BATCH,
                    skip_existing=_SKIP_EXISTING if existing or phones else "",
                )
            ),
            {
                "run": run.id,
                "ws": run.workspace_id,
                "event": run.event_id,
                "precheck": run.precheck_id,
                "provider": spec.provider,
                "from": start,
                "limit": limit if batch else 0,
                "end": _END,
                "phones": list(phones),
                **params,
            },
        )
    ).one()
    return None if row[0] is None else int(row[0])


@dataclass(frozen=True)
class RunKeys:
    """Which run messages belong to, and the precheck they come from."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    event_id: uuid.UUID
    precheck_id: uuid.UUID


# Phones a run must not invite because another run of the event invites them, one the precheck
# could not have seen: the messages of runs started after it was taken (with a margin for a
# StartRun that was still committing at the time), and the eligible candidates of any run of the
# event whose messages are not all created yet (they become messages without the event's lock;
# counting those that run created early as blocked too errs on the side of not inviting).
INVITED_SINCE = text(
    """
    SELECT m.phone_e164 FROM invite_send_run r
    JOIN invite_message m ON m.run_id = r.id
    WHERE r.event_id = :event AND r.id <> :run
      AND r.created_at > :since - interval '10 minutes'
      AND m.phone_e164 IS NOT NULL AND m.state = ANY(CAST(:invited_states AS text[]))
    UNION
    SELECT c.phone_e164 FROM invite_send_run r
    JOIN precheck_candidate c
      ON c.precheck_id = r.precheck_id AND c.position >= r.next_candidate_position
    WHERE r.event_id = :event AND r.id <> :run AND r.next_candidate_position IS NOT NULL
      AND r.state <> 'cancelled' AND c.eligible AND c.phone_e164 IS NOT NULL
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

    @property
    def keys(self) -> RunKeys:
        return RunKeys(self.id, self.workspace_id, self.event_id, self.precheck.id)


async def create_run(
    session: AsyncSession,
    run: NewRun,
    sources: Sequence[VariableSource],
    event: EventFacts,
    first_messages: int | None = None,
) -> tuple[int, int]:
    """Insert the run and one message per candidate, or (`first_messages`) only the first
    that many: the rest are left to `create_more_messages`, in later transactions. Returns the
    run's (total, eligible).

    Candidates eligible at precheck time whose phone got a (non-failed) invitation for this
    event since then are blocked as already_invited, unless the precheck listed them for resend:
    two runs started from two prechecks taken at the same time never invite anyone twice (the
    caller holds the event row lock). Their messages are created here whatever their position,
    so the later batches need no such check.
    """
    languages = list(await session.scalars(PRECHECK_LANGUAGES, {"precheck": run.precheck.id}))
    spec = message_spec(run.provider, sources, event, run.template.language, languages)
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
            message_spec=spec.to_json(),
        )
    )
    try:
        await session.flush()
    except IntegrityError as error:
        if _violates(error, IDEMPOTENCY_CONSTRAINT):
            raise IdempotencyKeyRace("another StartRun committed this key first") from error
        raise
    following = await _create_messages(
        session, run.keys, spec, FIRST, first_messages, existing=False
    )
    blocked = 0
    if phones := await _invited_since(session, run):
        if following is not None:
            await _create_messages(
                session, run.keys, spec, FIRST, None, existing=True, phones=phones
            )
        blocked = await message_transitions.block_already_invited(session, run.id, phones)
    total, eligible = run.precheck.total_count, run.precheck.eligible_count - blocked
    await session.execute(
        text(
            "UPDATE invite_send_run SET total_count = :total, eligible_count = :eligible,"
            " blocked_count = :total - :eligible, next_candidate_position = :following"
            " WHERE id = :run"
        ),
        {"total": total, "eligible": eligible, "run": run.id, "following": following},
    )
    if following is None and not eligible:
        await run_transitions.complete_finished(session, run.id)
    elif eligible and not run.send_at:
        await run_transitions.wake_dispatchers(session)
    return total, eligible


def _violates(error: IntegrityError, constraint: str) -> bool:
    cause = error.orig
    return isinstance(cause, pg_errors.UniqueViolation) and cause.diag.constraint_name == constraint


async def _invited_since(session: AsyncSession, run: NewRun) -> list[str]:
    """Phones another run of the event invited or will invite since the precheck was taken,
    less the ones the precheck lists for resend."""
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
    return sorted(phones)


_CREATION_KEY = "hashtextextended('run.messages:' || :run, 0)"
"""The advisory lock creators of one run's messages take turns on."""
CREATION_LOCK = text(f"SELECT pg_advisory_xact_lock({_CREATION_KEY})")
TRY_CREATION_LOCK = text(f"SELECT pg_try_advisory_xact_lock({_CREATION_KEY})")


async def create_more_messages(
    session: AsyncSession, run_id: uuid.UUID, *, wait: bool = True
) -> bool | None:
    """Create the run's next batch of messages (MESSAGE_BATCH) in the caller's transaction.
    True: all its messages exist now; False: more remain; None: (`wait` False) another
    transaction is creating them. Creators take turns on a transaction-scoped advisory lock;
    the run row is only written at the end, so claims on the run are not held up."""
    locked = await session.scalar(TRY_CREATION_LOCK if not wait else CREATION_LOCK, {"run": run_id})
    if locked is False:
        return None
    row = await session.get(InviteSendRun, run_id, populate_existing=True)
    if row is None or row.next_candidate_position is None or row.message_spec is None:
        return True
    keys = RunKeys(row.id, row.workspace_id, row.event_id, row.precheck_id)
    spec = MessageSpec.from_json(row.message_spec)
    following = await _create_messages(
        session, keys, spec, row.next_candidate_position, MESSAGE_BATCH, existing=True
    )
    await session.execute(
        text(
            "UPDATE invite_send_run SET next_candidate_position = :following, updated_at = now()"
            " WHERE id = :run"
        ),
        {"run": run_id, "following": following},
    )
    if following is None:
        await run_transitions.complete_finished(session, run_id)
        return True
    return False


UNFINISHED_RUNS = text(
    "SELECT id FROM invite_send_run WHERE next_candidate_position IS NOT NULL"
    " AND updated_at < now() - make_interval(secs => :idle) ORDER BY created_at"
)


async def runs_left_unfinished(session: AsyncSession, idle_seconds: float) -> list[uuid.UUID]:
    """Runs whose messages are not all created and whose creation made no progress for
    `idle_seconds` (the StartRun creating them died)."""
    return list(await session.scalars(UNFINISHED_RUNS, {"idle": idle_seconds}))


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
