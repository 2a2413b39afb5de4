"""Message templates in Postgres."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import Template
from common.vocabulary import TemplateCategory, TemplateStatus
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


async def list_templates(session: AsyncSession, workspace_id: uuid.UUID) -> list[Template]:
    """The workspace's templates by name, then language."""
    templates = await session.scalars(
        select(Template)
        .where(Template.workspace_id == workspace_id)
        .order_by(Template.name, Template.language)
    )
    return list(templates)
