"""ResendRun: a new run for an earlier run's recipients in chosen outcome classes.

One transaction, parent_admin only: select the earlier run's households by class
(``domain/resend.py``), take a fresh precheck restricted to them (the same resolver and rules as
PrecheckSend: Do-Not-Message, inactive guests, already_invited), then StartRun from it with the
earlier run as parent. A dry run stops after the precheck. The same idempotency key returns the
same run (the StartRun rule).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch_service.domain.actors import SENDERS
from dispatch_service.domain.ids import parse_uuid
from dispatch_service.domain.resend import ResendSelection
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.persistence.resend import selected_recipients
from dispatch_service.persistence.runs import find_run_by_key, load_run
from dispatch_service.read_models import RunRecord
from dispatch_service.use_cases.acting import acting
from dispatch_service.use_cases.precheck import PrecheckCommand, PrecheckResult, precheck_in
from dispatch_service.use_cases.runs import MAX_KEY_LENGTH, StartRunCommand, start_in

PAGE_SIZE = 20


@dataclass(frozen=True)
class ResendCommand:
    """A validated ResendRun request."""

    actor_id: uuid.UUID
    run_id: uuid.UUID
    selection: ResendSelection
    idempotency_key: str
    dry_run: bool


@dataclass(frozen=True)
class ResendResult:
    """The fresh precheck (None when the key replayed an earlier resend) and the new run."""

    precheck: PrecheckResult | None
    run: RunRecord | None
    created: bool


def resend_command(
    actor_id: uuid.UUID, run_id: str, selection: ResendSelection, key: str, dry_run: bool
) -> ResendCommand:
    """Validate the run id and key (the selection is validated by resend_selection)."""
    if not dry_run and (not 1 <= len(key) <= MAX_KEY_LENGTH or not key.strip()):
        raise InvalidArgument(
            FieldViolation("idempotency_key", f"must be 1-{MAX_KEY_LENGTH} chars")
        )
    return ResendCommand(
        actor_id=actor_id,
        run_id=parse_uuid(run_id, "run_id"),
        selection=selection,
        idempotency_key=key,
        dry_run=dry_run,
    )


async def resend_run(
    sessions: async_sessionmaker[AsyncSession],
    command: ResendCommand,
    ttl_seconds: int,
    now: datetime | None = None,
) -> ResendResult:
    """Select, precheck and (unless a dry run) start the resend run in one transaction."""
    async with acting(sessions, command.actor_id, SENDERS, "resend a run") as (session, actor):
        if not command.dry_run:
            existing = await find_run_by_key(session, actor.workspace_id, command.idempotency_key)
            if existing is not None and existing.parent_run_id == command.run_id:
                return ResendResult(precheck=None, run=existing, created=False)
        parent = await load_run(session, actor.workspace_id, command.run_id)
        selected = await selected_recipients(
            session, parent.id, command.selection, now or datetime.now(UTC)
        )
        precheck = await precheck_in(
            session,
            actor,
            PrecheckCommand(
                actor_id=command.actor_id,
                event_id=parent.event_id,
                template_id=parent.template_id,
                page_size=PAGE_SIZE,
                resend_phones=selected.not_read_phones,
            ),
            ttl_seconds,
            only_units=selected.units,
        )
        if command.dry_run or precheck.eligible_count == 0:
            return ResendResult(precheck=precheck, run=None, created=False)
        started = await start_in(
            session,
            actor,
            StartRunCommand(
                actor_id=command.actor_id,
                precheck_id=precheck.precheck_id,
                idempotency_key=command.idempotency_key,
                parent_run_id=parent.id,
            ),
        )
        return ResendResult(precheck=precheck, run=started.run, created=started.created)
