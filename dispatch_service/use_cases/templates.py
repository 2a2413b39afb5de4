"""Message templates: register (name + language unique per workspace), change status, list."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.models import Template
from common.vocabulary import TemplateCategory, TemplateSource, TemplateStatus
from dispatch_service.domain.actors import WRITERS, Actor
from dispatch_service.domain.messaging_limit import LimitAnnouncement, provider_limit
from dispatch_service.domain.meta_templates import (
    HALTING_STATUSES,
    StoredTemplate,
    TemplateDefinition,
    TemplateItemError,
    TemplateWebhook,
    parse_template,
    registry_variables,
    template_changes,
    template_effect,
)
from dispatch_service.domain.template_variables import SOURCES_BY_NAME
from dispatch_service.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
)
from dispatch_service.persistence import run_transitions
from dispatch_service.persistence.audit_log import record_audit
from dispatch_service.persistence.templates import (
    active_runs_by_template,
    get_template_for_update,
    insert_synced_template,
    insert_template,
    list_templates,
    lock_templates,
    templates_for_webhook,
)
from dispatch_service.persistence.workspaces import get_workspace
from dispatch_service.providers.meta_templates import TemplateCatalog, TemplateCatalogError
from dispatch_service.use_cases.acting import READERS, acting
from dispatch_service.use_cases.sending import record_limits

# Meta's rules: template names are lowercase letters, digits and underscores (at most 512);
# languages are codes like "en", "en_US", "pt_BR", "zh_HK".
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9]{2,4})?$")
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
log = logging.getLogger(__name__)

RUNS_PAUSED = Counter(
    "invites_template_runs_paused_total",
    "Runs paused because Meta paused, disabled or deleted their template (a template webhook"
    " through ApplyStatus, or a template sync), counted once committed.",
)

WABA_ID = re.compile(r"^[0-9]{1,64}$")
MAX_VARIABLE = 100
MAX_VARIABLES = 100


@dataclass(frozen=True)
class NewTemplate:
    """A validated RegisterTemplate request."""

    name: str
    language: str
    category: TemplateCategory
    variables: tuple[str, ...]
    status: TemplateStatus
    twilio_content_sid: str | None = None
    """The Twilio Content SID it is sent as by Twilio workspaces."""


def _variable_violations(variables: tuple[str, ...]) -> list[FieldViolation]:
    violations = []
    if len(variables) > MAX_VARIABLES:
        violations.append(FieldViolation("template.variables", f"at most {MAX_VARIABLES}"))
    seen: set[str] = set()
    for index, name in enumerate(variables):
        field = f"template.variables[{index}]"
        if not name.strip() or len(name) > MAX_VARIABLE:
            violations.append(FieldViolation(field, f"must be 1 to {MAX_VARIABLE} characters"))
        elif name.strip().casefold() in seen:
            violations.append(FieldViolation(field, f"{name!r} appears more than once"))
        elif name.strip().casefold() not in SOURCES_BY_NAME:
            # Caught here rather than at StartRun: a template we cannot fill is never sendable.
            known = ", ".join(sorted(SOURCES_BY_NAME))
            violations.append(FieldViolation(field, f"no value for {name!r}; known: {known}"))
        seen.add(name.strip().casefold())
    return violations


def new_template(
    *,
    name: str,
    language: str,
    category: TemplateCategory | None,
    variables: tuple[str, ...],
    status: TemplateStatus | None,
    twilio_content_sid: str = "",
) -> NewTemplate:
    """Validate a RegisterTemplate request; an unset status registers it as PENDING."""
    violations = []
    content_sid = twilio_content_sid.strip()
    if content_sid and not CONTENT_SID.match(content_sid):
        violations.append(
            FieldViolation("template.twilio_content_sid", "must be HX followed by 32 hex digits")
        )
    if not TEMPLATE_NAME.match(name):
        violations.append(
            FieldViolation("template.name", "must be lowercase letters, digits and underscores")
        )
    if not LANGUAGE.match(language):
        violations.append(
            FieldViolation("template.language", "must be a language code like en or en_US")
        )
    if category is None:
        violations.append(FieldViolation("template.category", "is required"))
    violations += _variable_violations(variables)
    if violations or category is None:
        raise InvalidArgument(*violations)
    return NewTemplate(
        name=name,
        language=language,
        category=category,
        variables=tuple(v.strip() for v in variables),
        status=status or TemplateStatus.PENDING,
        twilio_content_sid=content_sid or None,
    )


async def register_template(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID, command: NewTemplate
) -> Template:
    """Register a template; ALREADY_EXISTS when the name + language is taken. Audited."""
    async with acting(sessions, actor_id, WRITERS, "register templates") as (session, actor):
        template = await insert_template(
            session,
            workspace_id=actor.workspace_id,
            name=command.name,
            language=command.language,
            category=command.category,
            variables=list(command.variables),
            status=command.status,
            twilio_content_sid=command.twilio_content_sid,
        )
        if template is None:
            raise AlreadyExists(
                f"template {command.name} ({command.language}) is already registered",
                reason="TEMPLATE_EXISTS",
            )
        record_audit(
            session,
            workspace_id=actor.workspace_id,
            actor_id=actor.member_id,
            action="template.register",
            subject_type="template",
            subject_id=template.id,
            details={
                "name": template.name,
                "language": template.language,
                "category": template.category,
                "variables": list(template.variables),
                "status": template.status,
                "twilio_content_sid": template.twilio_content_sid,
            },
        )
    return template


async def update_template_status(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    template_id: uuid.UUID,
    status: TemplateStatus | None,
) -> Template:
    """Set a template's approval status, audited as ``template.status`` (from -> to)."""
    if status is None:
        raise InvalidArgument(FieldViolation("status", "is required"))
    async with acting(sessions, actor_id, WRITERS, "update templates") as (session, actor):
        template = await get_template_for_update(session, actor.workspace_id, template_id)
        previous = template.status
        if previous != status.value:
            template.status = status.value
            record_audit(
                session,
                workspace_id=actor.workspace_id,
                actor_id=actor.member_id,
                action="template.status",
                subject_type="template",
                subject_id=template.id,
                details={"from": previous, "to": status.value},
            )
        await session.flush()
    return template


async def list_workspace_templates(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID
) -> list[Template]:
    """The actor's workspace's templates."""
    async with acting(sessions, actor_id, READERS, "list templates") as (session, actor):
        return await list_templates(session, actor.workspace_id)


# --- templates owned by Meta ---------------------------------------------------------------------


class TemplateChangeKind(StrEnum):
    """What one sync did to one registry template."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED_ON_META = "deleted_on_meta"


@dataclass(frozen=True)
class TemplateChange:
    """One registry template after a sync, and what the sync changed."""

    template: Template
    kind: TemplateChangeKind
    fields: tuple[str, ...] = ()
    runs_in_use: tuple[uuid.UUID, ...] = ()
    """Runs not final yet that use it (a deleted template's are paused)."""


@dataclass(frozen=True)
class SyncReport:
    """What SyncTemplates read and changed."""

    waba_id: str
    read: int
    changes: tuple[TemplateChange, ...]
    skipped: tuple[str, ...]
    """Items Meta returned that could not be read, each with why."""
    paused_runs: tuple[uuid.UUID, ...]
    messaging_limit: tuple[int | None] | None = None
    """The portfolio messaging limit read from the sender's phone number ((None,): unlimited);
    None when it could not be read (the reason is in `skipped`)."""


async def sync_templates(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    catalog: TemplateCatalog | None,
    waba_id: str = "",
) -> SyncReport:
    """Read every template of the workspace's WABA from Meta into the registry (see
    domain/meta_templates). A given `waba_id` is recorded on the workspace first. Templates
    read before but gone from Meta are marked deleted_on_meta and DISABLED (never removed); the
    runs still using them are paused with a reason naming the template. Audited as
    ``template.sync``."""
    waba_id = waba_id.strip()
    if waba_id and not WABA_ID.match(waba_id):
        raise InvalidArgument(FieldViolation("waba_id", "must be a WhatsApp Business Account id"))
    async with acting(sessions, actor_id, WRITERS, "sync templates") as (session, actor):
        workspace = await get_workspace(session, actor.workspace_id)
        if waba_id and workspace.waba_id != waba_id:
            record_audit(
                session,
                workspace_id=actor.workspace_id,
                actor_id=actor.member_id,
                action="workspace.waba",
                subject_type="workspace",
                subject_id=workspace.id,
                details={"from": workspace.waba_id, "to": waba_id},
            )
            workspace.waba_id = waba_id
        account = workspace.waba_id
        sender = workspace.sender_phone_number_id
    if not account:
        raise FailedPrecondition(
            "the workspace has no WhatsApp Business Account id: pass waba_id once",
            reason="WABA_ID_MISSING",
        )
    if catalog is None:
        raise FailedPrecondition(
            "this service has no connection to Meta configured", reason="META_NOT_CONFIGURED"
        )
    try:
        items = await catalog.list_templates(account)
    except TemplateCatalogError as error:
        raise FailedPrecondition(str(error), reason="META_TEMPLATES_UNAVAILABLE") from None
    definitions: list[TemplateDefinition] = []
    skipped: list[str] = []
    for item in items:
        try:
            definitions.append(parse_template(item))
        except TemplateItemError as error:
            skipped.append(str(error))
    limit = await _read_limit(catalog, sender, skipped)
    async with acting(sessions, actor_id, WRITERS, "sync templates") as (session, actor):
        report = await _apply_sync(session, actor, account, definitions)
        if limit is not None:
            announced = LimitAnnouncement(account, limit[0], datetime.now(UTC))
            await record_limits(session, [announced], sender)
    RUNS_PAUSED.inc(len(report[1]))
    return SyncReport(account, len(items), report[0], tuple(skipped), report[1], limit)


async def _read_limit(
    catalog: TemplateCatalog, sender: str, skipped: list[str]
) -> tuple[int | None] | None:
    """The sender's portfolio messaging limit from Meta ((None,): unlimited), or None with why
    added to `skipped` (a failed read never fails the template sync)."""
    if not sender.isdigit():
        return None  # not a Meta phone number id (a Twilio sender)
    try:
        return (provider_limit(await catalog.messaging_limit(sender)),)
    except (TemplateCatalogError, ValueError) as error:
        skipped.append(f"messaging limit: {error}")
        return None


async def _apply_sync(
    session: AsyncSession, actor: Actor, account: str, definitions: list[TemplateDefinition]
) -> tuple[tuple[TemplateChange, ...], tuple[uuid.UUID, ...]]:
    now = datetime.now(UTC)
    stored = {(t.name, t.language): t for t in await lock_templates(session, actor.workspace_id)}
    changes: list[TemplateChange] = []
    paused_by_status: list[uuid.UUID] = []
    seen: set[tuple[str, str]] = set()
    for definition in definitions:
        key = (definition.name, definition.language)
        if key in seen:
            continue  # Meta lists each translation once; a repeat changes nothing
        seen.add(key)
        existing = stored.get(key)
        if existing is None:
            variables = registry_variables(definition, ())
            template = await insert_synced_template(
                session,
                workspace_id=actor.workspace_id,
                values=_synced_values(definition, variables, now),
            )
            changes.append(TemplateChange(template, TemplateChangeKind.CREATED))
            continue
        variables = registry_variables(definition, existing.variables)
        fields = template_changes(_stored(existing), definition, variables)
        values = _synced_values(definition, variables, now)
        if "category" in fields:
            values["previous_category"] = existing.category
        for name, value in values.items():
            setattr(existing, name, value)
        kind = TemplateChangeKind.UPDATED if fields else TemplateChangeKind.UNCHANGED
        runs: tuple[uuid.UUID, ...] = ()
        if "status" in fields and definition.status in HALTING_STATUSES:
            # A webhook missed (or not subscribed): the sync pauses the runs as it would have.
            using = (await active_runs_by_template(session, [existing.id])).get(existing.id, [])
            reason = (
                f"template {existing.name} ({existing.language}) is "
                f"{definition.status.value} on Meta (found by a sync)"
            )
            paused_now = await pause_runs(session, using, reason)
            runs, paused_by_status = tuple(using), [*paused_by_status, *paused_now]
        changes.append(TemplateChange(existing, kind, tuple(fields), runs))
    gone = [
        t for key, t in stored.items() if key not in seen and t.source == TemplateSource.META.value
    ]
    in_use = await active_runs_by_template(session, [t.id for t in gone])
    paused: list[uuid.UUID] = list(paused_by_status)
    for template in gone:
        marked: tuple[str, ...] = ()
        if template.deleted_on_meta_at is None:
            marked = ("deleted", "status") if template.status != "DISABLED" else ("deleted",)
            template.deleted_on_meta_at = now
            template.status = TemplateStatus.DISABLED.value
            template.status_reason = "deleted on Meta"
            template.updated_at = now
            reason = f"template {template.name} ({template.language}) was deleted on Meta"
            paused += await pause_runs(session, in_use.get(template.id, []), reason)
        changes.append(
            TemplateChange(
                template,
                TemplateChangeKind.DELETED_ON_META,
                marked,
                tuple(in_use.get(template.id, [])),
            )
        )
    await session.flush()
    record_audit(
        session,
        workspace_id=actor.workspace_id,
        actor_id=actor.member_id,
        action="template.sync",
        subject_type="workspace",
        subject_id=actor.workspace_id,
        details={
            "waba_id": account,
            "changes": [
                {
                    "template": f"{c.template.name}/{c.template.language}",
                    "kind": c.kind.value,
                    "fields": list(c.fields),
                }
                for c in changes
                if c.kind is not TemplateChangeKind.UNCHANGED or c.fields
            ],
            "paused_runs": [str(r) for r in paused],
        },
    )
    return tuple(changes), tuple(paused)


def _stored(template: Template) -> StoredTemplate:
    return StoredTemplate(
        meta_template_id=template.meta_template_id,
        category=template.category,
        status=template.status,
        quality=template.quality,
        parameter_format=template.parameter_format,
        components=template.components,
        variables=template.variables,
        deleted=template.deleted_on_meta_at is not None,
        source=template.source,
    )


def _synced_values(
    definition: TemplateDefinition, variables: list[str], now: datetime
) -> dict[str, Any]:
    return {
        "name": definition.name,
        "language": definition.language,
        "source": TemplateSource.META.value,
        "meta_template_id": definition.meta_template_id,
        "category": definition.category.value,
        "status": definition.status.value,
        "quality": definition.quality,
        "parameter_format": definition.parameter_format.value,
        "components": [dict(c) for c in definition.components],
        "variables": variables,
        "synced_at": now,
        "deleted_on_meta_at": None,
        "updated_at": now,
    }


async def pause_runs(
    session: AsyncSession, run_ids: list[uuid.UUID], reason: str
) -> list[uuid.UUID]:
    """Pause each active run (queued or dispatching) with `reason`; the ones that paused."""
    paused = []
    for run_id in run_ids:
        if await run_transitions.pause(session, run_id, reason):
            paused.append(run_id)
    return paused


# --- template webhooks (through ApplyStatus) -----------------------------------------------------


class TemplateUpdateOutcome(StrEnum):
    """What applying one template webhook did."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"
    STALE = "stale"
    """An older webhook of the same field than the last one applied: nothing changes."""
    UNMATCHED = "unmatched"
    """No workspace with this WABA id has the template (synced or registered)."""


@dataclass(frozen=True)
class TemplateUpdatesApplied:
    """One outcome per webhook (in order) and the runs paused."""

    outcomes: list[TemplateUpdateOutcome]
    paused_runs: list[uuid.UUID]


async def apply_template_updates(
    session: AsyncSession, hooks: Sequence[TemplateWebhook]
) -> TemplateUpdatesApplied:
    """Apply template webhooks in the caller's transaction (ApplyStatus's: they commit with
    the batch or not at all, and a replayed batch changes nothing twice). A template that
    becomes PAUSED, DISABLED or REJECTED pauses every active run using it; each change is
    audited as ``template.webhook`` (no actor: Meta)."""
    outcomes: list[TemplateUpdateOutcome] = []
    paused: list[uuid.UUID] = []
    for hook in hooks:
        templates = await templates_for_webhook(
            session, hook.waba_id, hook.meta_template_id, hook.name, hook.language
        )
        if not templates:
            outcomes.append(TemplateUpdateOutcome.UNMATCHED)
            continue
        outcome = TemplateUpdateOutcome.UNCHANGED
        for template in templates:
            applied, runs = await _apply_hook(session, template, hook)
            paused += runs
            if (
                applied is TemplateUpdateOutcome.STALE
                and outcome is TemplateUpdateOutcome.UNCHANGED
            ) or applied is TemplateUpdateOutcome.APPLIED:
                outcome = applied
        outcomes.append(outcome)
    return TemplateUpdatesApplied(outcomes, paused)


async def _apply_hook(
    session: AsyncSession, template: Template, hook: TemplateWebhook
) -> tuple[TemplateUpdateOutcome, list[uuid.UUID]]:
    last = (template.webhook_times or {}).get(hook.field.value)
    if last is not None and hook.at < last:
        return TemplateUpdateOutcome.STALE, []
    template.webhook_times = {**(template.webhook_times or {}), hook.field.value: hook.at}
    effect = template_effect(_stored(template), template.name, template.language, hook)
    changed = {k: v for k, v in effect.values.items() if getattr(template, k) != v}
    runs: list[uuid.UUID] = []
    if effect.pause_reason is not None:
        in_use = await active_runs_by_template(session, [template.id])
        runs = await pause_runs(session, in_use.get(template.id, []), effect.pause_reason)
    if not changed and not runs:
        return TemplateUpdateOutcome.UNCHANGED, []
    details: dict[str, Any] = {
        "field": hook.field.value,
        "changes": {k: {"from": getattr(template, k), "to": v} for k, v in changed.items()},
        "paused_runs": [str(r) for r in runs],
    }
    for name, value in changed.items():
        setattr(template, name, value)
    template.updated_at = datetime.now(UTC)
    record_audit(
        session,
        workspace_id=template.workspace_id,
        actor_id=None,
        action="template.webhook",
        subject_type="template",
        subject_id=template.id,
        details=details,
    )
    for run_id in runs:
        log.info("run paused: %s", effect.pause_reason, extra={"run_id": run_id})
    return TemplateUpdateOutcome.APPLIED, runs
