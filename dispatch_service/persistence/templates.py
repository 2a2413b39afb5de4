"""Message templates in Postgres."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import InviteSendRun, Template, Workspace
from common.vocabulary import RunState, TemplateCategory, TemplateStatus
from dispatch_service.errors import NotFound


async def insert_template(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    name: str,
    language: str,
    category: TemplateCategory,
    variables: list[str],
    status: TemplateStatus,
    twilio_content_sid: str | None = None,
) -> Template | None:
    """The new template, or None when the workspace already has this name + language."""
    template_id = await session.scalar(
        insert(Template)
        .values(
            id=uuid.uuid4(),
            workspace_id=workspace_id,
            name=name,
            language=language,
            category=category.value,
            variables=variables,
            status=status.value,
            twilio_content_sid=twilio_content_sid,
        )
        .on_conflict_do_nothing(index_elements=["workspace_id", "name", "language"])
        .returning(Template.id)
    )
    if template_id is None:
        return None
    return await session.get(Template, template_id)


async def get_template_for_update(
    session: AsyncSession, workspace_id: uuid.UUID, template_id: uuid.UUID
) -> Template:
    """The template, locked, or NotFound (another workspace's template looks the same)."""
    template = await session.scalar(
        select(Template)
        .where(Template.id == template_id, Template.workspace_id == workspace_id)
        .with_for_update()
    )
    if template is None:
        raise NotFound("no such template in this workspace", reason="TEMPLATE_NOT_FOUND")
    return template


async def get_template(
    session: AsyncSession, workspace_id: uuid.UUID, template_id: uuid.UUID
) -> Template:
    """The template (not locked), or NotFound."""
    template = await session.scalar(
        select(Template).where(Template.id == template_id, Template.workspace_id == workspace_id)
    )
    if template is None:
        raise NotFound("no such template in this workspace", reason="TEMPLATE_NOT_FOUND")
    return template


async def list_templates(session: AsyncSession, workspace_id: uuid.UUID) -> list[Template]:
    """The workspace's templates by name, then language."""
    templates = await session.scalars(
        select(Template)
        .where(Template.workspace_id == workspace_id)
        .order_by(Template.name, Template.language)
    )
    return list(templates)


# --- templates owned by Meta ---------------------------------------------------------------------

ACTIVE_RUN_STATES = (RunState.QUEUED.value, RunState.DISPATCHING.value, RunState.PAUSED.value)
"""A run in one of these still uses its template (it may send again)."""


async def lock_templates(session: AsyncSession, workspace_id: uuid.UUID) -> list[Template]:
    """Every template of the workspace, locked for a sync, by name then language."""
    templates = await session.scalars(
        select(Template)
        .where(Template.workspace_id == workspace_id)
        .order_by(Template.name, Template.language)
        .with_for_update()
    )
    return list(templates)


async def insert_synced_template(
    session: AsyncSession, *, workspace_id: uuid.UUID, values: dict[str, Any]
) -> Template:
    """A template read from Meta, new to the registry."""
    template = Template(id=uuid.uuid4(), workspace_id=workspace_id, **values)
    session.add(template)
    await session.flush()
    return template


async def active_runs_by_template(
    session: AsyncSession, template_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The runs still using each template (queued, dispatching or paused), oldest first."""
    if not template_ids:
        return {}
    rows = await session.execute(
        select(InviteSendRun.template_id, InviteSendRun.id)
        .where(
            InviteSendRun.template_id.in_(template_ids),
            InviteSendRun.state.in_(ACTIVE_RUN_STATES),
        )
        .order_by(InviteSendRun.created_at)
    )
    runs: dict[uuid.UUID, list[uuid.UUID]] = {}
    for template_id, run_id in rows:
        runs.setdefault(template_id, []).append(run_id)
    return runs


async def templates_for_webhook(
    session: AsyncSession, waba_id: str, meta_template_id: str, name: str, language: str
) -> list[Template]:
    """The registry rows a template webhook is about, locked: in every workspace whose WABA id
    is `waba_id`, the template with Meta's id, else the one with this name and language."""
    by_name = (Template.name == name) & (Template.language == language)
    match = (
        (Template.meta_template_id == meta_template_id) | by_name if meta_template_id else by_name
    )
    templates = await session.scalars(
        select(Template)
        .join(Workspace, Workspace.id == Template.workspace_id)
        .where(Workspace.waba_id == waba_id, match)
        .order_by(Template.id)
        .with_for_update(of=Template)
    )
    return list(templates)
