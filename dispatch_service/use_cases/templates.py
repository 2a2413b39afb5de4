"""Message templates: register (name + language unique per workspace), change status, list."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.models import Template
from common.vocabulary import TemplateCategory, TemplateStatus
from dispatch_service.domain.actors import WRITERS
from dispatch_service.domain.template_variables import SOURCES_BY_NAME
from dispatch_service.errors import AlreadyExists, FieldViolation, InvalidArgument
from dispatch_service.persistence.audit_log import record_audit
from dispatch_service.persistence.templates import (
    get_template_for_update,
    insert_template,
    list_templates,
)
from dispatch_service.use_cases.acting import READERS, acting

# Meta's rules: template names are lowercase letters, digits and underscores (at most 512);
# languages are codes like "en", "en_US", "pt_BR", "zh_HK".
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9]{2,4})?$")
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
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
