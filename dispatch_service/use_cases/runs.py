"""StartRun, CancelRun and ResumeRun: the run's writes, each one transaction, parent_admin only.

StartRun is idempotent by key: the same key with the same precheck returns the existing run
(`created=False`), the same key with another precheck is ALREADY_EXISTS. Two concurrent calls
with one key race on the UNIQUE (workspace_id, idempotency_key) constraint; the loser answers
with the winner's run. A precheck starts at most one run (UNIQUE precheck_id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import TemplateStatus
from dispatch_service.domain.actors import SENDERS, Actor
from dispatch_service.domain.ids import id_violation, parse_uuid
from dispatch_service.domain.quiet_hours import parse_window
from dispatch_service.domain.runs import require_cancellable, require_resumable
from dispatch_service.domain.send_plan import HeaderMedia, build_send_plan, media_violations
from dispatch_service.domain.template_variables import (
    PER_RECIPIENT,
    EventFacts,
    VariableSource,
    event_value,
    variable_sources,
)
from dispatch_service.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    IdempotencyKeyRace,
    InvalidArgument,
)
from dispatch_service.persistence import message_transitions, run_transitions
from dispatch_service.persistence.audit_log import record_audit
from dispatch_service.persistence.runs import (
    FIRST_MESSAGES,
    NewRun,
    PrecheckRecord,
    TemplateRecord,
    create_more_messages,
    create_run,
    find_run_by_key,
    find_run_by_precheck,
    load_precheck,
    load_run,
    load_template,
    lock_event,
    sender_of,
)
from dispatch_service.persistence.send_plans import store_send_plan, venue_of
from dispatch_service.persistence.templates import get_template
from dispatch_service.read_models import RunRecord
from dispatch_service.use_cases.acting import READERS, acting

MAX_KEY_LENGTH = 200

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartRunCommand:
    """A validated StartRun request."""

    actor_id: uuid.UUID
    precheck_id: uuid.UUID
    idempotency_key: str
    send_at: datetime | None = None
    """In the future: the run is scheduled for then (None: it starts at once)."""
    deadline: datetime | None = None
    parent_run_id: uuid.UUID | None = None
    """ResendRun: the earlier run this one resends to."""
    send_window: str | None = None
    """Quiet hours overriding the workspace's (normalised "HH:MM-HH:MM")."""
    header_media: HeaderMedia | None = None


MAX_SCHEDULE_AHEAD = timedelta(days=366)


@dataclass(frozen=True)
class StartRunResult:
    """The run, and whether this call created it."""

    run: RunRecord
    created: bool


def start_run_command(
    actor_id: uuid.UUID,
    precheck_id: str,
    key: str,
    send_at: datetime | None = None,
    deadline: datetime | None = None,
    now: datetime | None = None,
    send_window: str = "",
    header_media: HeaderMedia | None = None,
) -> StartRunCommand:
    """Validate the raw request; InvalidArgument lists every bad field. A send_at that is not
    in the future (at `now`, default the wall clock) means at once."""
    violations: list[FieldViolation] = media_violations(header_media)
    parsed: uuid.UUID | None = None
    if (violation := id_violation(precheck_id, "precheck_id")) is not None:
        violations.append(violation)
    else:
        parsed = parse_uuid(precheck_id, "precheck_id")
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.strip():
        violations.append(FieldViolation("idempotency_key", f"must be 1-{MAX_KEY_LENGTH} chars"))
    now = now or datetime.now(UTC)
    if send_at is not None and send_at <= now:
        send_at = None
    if send_at is not None and send_at > now + MAX_SCHEDULE_AHEAD:
        violations.append(FieldViolation("send_at", "must be within a year"))
    if deadline is not None and deadline <= (send_at or now):
        violations.append(FieldViolation("deadline", "must be after send_at (or now)"))
    window: str | None = None
    if send_window:
        try:
            window = str(parse_window(send_window))
        except InvalidArgument as error:
            violations.extend(error.violations)
    if violations or parsed is None:
        raise InvalidArgument(*violations)
    return StartRunCommand(
        actor_id=actor_id,
        precheck_id=parsed,
        idempotency_key=key,
        send_at=send_at,
        deadline=deadline,
        send_window=window,
        header_media=header_media,
    )


async def start_run(
    sessions: async_sessionmaker[AsyncSession],
    command: StartRunCommand,
    creation: MessageCreation | None = None,
) -> StartRunResult:
    """Create the run with its first FIRST_MESSAGES messages and the invite.send audit entry in
    one transaction; the dispatcher can start on them at once. The rest of the messages are
    created in batches, one transaction each: in the background by `creation` (the answer does
    not wait for them), or before answering without one. A replayed call whose run is still
    unfinished (its StartRun died between transactions) carries on with it the same way."""
    result = await _start_or_replay(sessions, command)
    if result.run.next_candidate_position is not None:
        if creation is None:
            await finish_messages(sessions, result.run.id)
        else:
            creation.carry_on(result.run.id)
    return result


async def finish_messages(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> None:
    """Create the run's remaining messages, a batch per transaction."""
    while True:
        async with sessions() as session, session.begin():
            if await create_more_messages(session, run_id):
                return


class MessageCreation:
    """Creates the remaining messages of runs this process started, in the background (a batch
    per transaction). `drain` waits for them on shutdown; what a process that dies leaves
    undone, a dispatcher's reconciler finishes (dispatcher/reconciler)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}

    def carry_on(self, run_id: uuid.UUID) -> None:
        """Create the run's remaining messages (once per run at a time)."""
        if run_id in self._tasks:
            return
        task = asyncio.create_task(self._finish(run_id), name=f"run-messages-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run_id, None))

    async def _finish(self, run_id: uuid.UUID) -> None:
        try:
            await finish_messages(self.sessions, run_id)
        except Exception as error:  # the reconciler carries on once the run's creation is idle
            log.warning(
                "creating a run's messages stopped; a dispatcher will finish them: %s",
                error,
                extra={"run_id": run_id},
            )

    async def drain(self, grace_seconds: float) -> None:
        """Wait up to `grace_seconds` for the runs being created, then cancel the rest."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _start_or_replay(
    sessions: async_sessionmaker[AsyncSession], command: StartRunCommand
) -> StartRunResult:
    try:
        async with acting(sessions, command.actor_id, SENDERS, "start a send run") as (
            session,
            actor,
        ):
            return await start_in(session, actor, command, FIRST_MESSAGES)
    except IdempotencyKeyRace:
        pass
    # Another call with the same key committed first: answer with its run.
    async with acting(sessions, command.actor_id, READERS, "read send runs") as (session, actor):
        existing = await find_run_by_key(session, actor.workspace_id, command.idempotency_key)
        if existing is None:  # pragma: no cover - the constraint said it exists
            raise FailedPrecondition("the run could not be created; try again")
        return _replay(existing, command)


def _replay(existing: RunRecord, command: StartRunCommand) -> StartRunResult:
    if existing.precheck_id != command.precheck_id:
        raise AlreadyExists(
            "this idempotency key already started a run from another precheck",
            reason="IDEMPOTENCY_KEY_REUSED",
        )
    return StartRunResult(run=existing, created=False)


async def start_in(
    session: AsyncSession,
    actor: Actor,
    command: StartRunCommand,
    first_messages: int | None = None,
) -> StartRunResult:
    """StartRun inside the caller's transaction (ResendRun starts its run this way): every
    message, or only the first `first_messages` (the caller creates the rest afterwards)."""
    existing = await find_run_by_key(session, actor.workspace_id, command.idempotency_key)
    if existing is not None:
        return _replay(existing, command)
    precheck = await load_precheck(session, actor.workspace_id, command.precheck_id)
    event = await lock_event(session, precheck.event_id)
    # Starts of one event run one at a time from here: look for the key again under the lock.
    existing = await find_run_by_key(session, actor.workspace_id, command.idempotency_key)
    if existing is not None:
        return _replay(existing, command)
    if precheck.expires_at <= datetime.now(UTC):
        raise FailedPrecondition(
            "the precheck expired; run PrecheckSend again", reason="PRECHECK_EXPIRED"
        )
    template = await load_template(session, precheck.template_id)
    _require_approved(template)
    sources = variable_sources(template.variables)
    _require_event_values(sources, event)
    used = await find_run_by_precheck(session, precheck.id)
    if used is not None:
        raise FailedPrecondition(
            f"the precheck already started run {used.id}; run PrecheckSend again",
            reason="PRECHECK_USED",
        )
    plan = await _send_plan(session, actor, precheck, command)
    sender, provider = await sender_of(session, actor.workspace_id)
    run = _new_run(actor, precheck, template, command, sender, provider)
    total, eligible = await create_run(session, run, sources, event, first_messages)
    if plan:
        await store_send_plan(session, run.id, plan)
    record_audit(
        session,
        workspace_id=actor.workspace_id,
        actor_id=actor.member_id,
        action="invite.send",
        subject_type="invite_send_run",
        subject_id=run.id,
        details={
            "event_id": precheck.event_id,
            "precheck_id": precheck.id,
            "template": f"{template.name}/{template.language}",
            "idempotency_key": command.idempotency_key,
            "total": total,
            "eligible": eligible,
            "blocked": total - eligible,
            "send_at": command.send_at.isoformat() if command.send_at else None,
            "deadline": command.deadline.isoformat() if command.deadline else None,
            "parent_run_id": command.parent_run_id,
        },
    )
    return StartRunResult(run=await load_run(session, actor.workspace_id, run.id), created=True)


async def _send_plan(
    session: AsyncSession, actor: Actor, precheck: PrecheckRecord, command: StartRunCommand
) -> dict[str, Any]:
    """The run's header, parameter format and buttons (domain/send_plan); InvalidArgument
    when the template needs what the request or the event does not give."""
    stored = await get_template(session, actor.workspace_id, precheck.template_id)
    venue = await venue_of(session, actor.workspace_id, precheck.event_id)
    if venue is None:  # pragma: no cover - the precheck's event is the workspace's (locked)
        raise FailedPrecondition("the precheck's event is gone; run PrecheckSend again")
    plan, violations = build_send_plan(
        stored.components or [], stored.parameter_format, venue, command.header_media
    )
    if violations:
        raise InvalidArgument(*violations)
    return plan


def _require_approved(template: TemplateRecord) -> None:
    if template.status != TemplateStatus.APPROVED.value:
        raise FailedPrecondition(
            f"template {template.name} ({template.language}) is {template.status}, not APPROVED",
            reason="TEMPLATE_NOT_APPROVED",
        )


def _require_event_values(sources: Sequence[VariableSource], event: EventFacts) -> None:
    empty = [s.value for s in sources if s not in PER_RECIPIENT and not event_value(s, event)]
    if empty:
        raise FailedPrecondition(
            f"the template uses {', '.join(empty)} but the event has no value for it",
            reason="EMPTY_TEMPLATE_VALUE",
        )


def _new_run(
    actor: Actor,
    precheck: PrecheckRecord,
    template: TemplateRecord,
    command: StartRunCommand,
    sender: str,
    provider: str,
) -> NewRun:
    return NewRun(
        id=uuid.uuid4(),
        workspace_id=actor.workspace_id,
        event_id=precheck.event_id,
        template=template,
        precheck=precheck,
        actor_id=actor.member_id,
        idempotency_key=command.idempotency_key,
        sender_phone_number_id=sender,
        provider=provider,
        send_at=command.send_at,
        deadline=command.deadline,
        parent_run_id=command.parent_run_id,
        send_window=command.send_window,
    )


@dataclass(frozen=True)
class RunCommand:
    """CancelRun / ResumeRun: who, and which run."""

    actor_id: uuid.UUID
    run_id: uuid.UUID


def run_command(actor_id: uuid.UUID, run_id: str) -> RunCommand:
    """Validate a run id."""
    return RunCommand(actor_id=actor_id, run_id=parse_uuid(run_id, "run_id"))


async def cancel_run(sessions: async_sessionmaker[AsyncSession], command: RunCommand) -> RunRecord:
    """Cancel a run: its queued messages become cancelled; messages already in a provider call
    finish (their outcome is recorded as usual). Audited as invite.cancel.

    The run is cancelled, audited and its first batch of messages cancelled in one transaction;
    the rest follow in batches of ``CANCEL_BATCH``, one transaction each, before it answers, so
    no transaction holds many messages (the send worker, shared by every sender, would wait for
    them). Once the first commits nothing of the run is claimed or marked any more; a batch a
    crash left undone is the reconciler's (cancel_stragglers)."""
    async with acting(sessions, command.actor_id, SENDERS, "cancel a send run") as (session, actor):
        run = await load_run(session, actor.workspace_id, command.run_id, lock=True)
        require_cancellable(run.state)
        queued = await message_transitions.count_cancellable(session, run.id)
        cancelled = await message_transitions.cancel_queued(session, run.id)
        await run_transitions.cancel(session, run.id)
        record_audit(
            session,
            workspace_id=actor.workspace_id,
            actor_id=actor.member_id,
            action="invite.cancel",
            subject_type="invite_send_run",
            subject_id=run.id,
            details={"queued_messages": queued, "previous_state": run.state.value},
        )
    while cancelled == message_transitions.CANCEL_BATCH:
        async with sessions.begin() as session:
            cancelled = await message_transitions.cancel_queued(session, run.id)
    async with sessions() as session:
        return await load_run(session, actor.workspace_id, run.id)


async def resume_run(sessions: async_sessionmaker[AsyncSession], command: RunCommand) -> RunRecord:
    """Resume a paused run: the dispatcher claims its queued messages again. Audited."""
    async with acting(sessions, command.actor_id, SENDERS, "resume a send run") as (session, actor):
        run = await load_run(session, actor.workspace_id, command.run_id, lock=True)
        require_resumable(run.state)
        # A run paused by its template (PAUSED, DISABLED, REJECTED on Meta) resumes only once
        # Meta approved it again: resuming earlier would only meet 132015/132016 again.
        _require_approved(await load_template(session, run.template_id))
        await run_transitions.resume(session, run.id)
        record_audit(
            session,
            workspace_id=actor.workspace_id,
            actor_id=actor.member_id,
            action="invite.resume",
            subject_type="invite_send_run",
            subject_id=run.id,
            details={"pause_reason": run.pause_reason},
        )
        return await load_run(session, actor.workspace_id, run.id)
