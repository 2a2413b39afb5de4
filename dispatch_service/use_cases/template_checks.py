"""PrecheckSend's template step: can a run send the chosen template as Meta holds it?

Called by use_cases/precheck in the precheck's transaction; the rules are pure in
domain/template_checks. Violations refuse the precheck (INVALID_ARGUMENT, one field violation
each) before anything is stored or sent; notes are returned for display.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_service.domain.template_checks import TemplateCheck, TemplateFacts, check_template
from dispatch_service.errors import InvalidArgument
from dispatch_service.persistence.send_plans import venue_of
from dispatch_service.persistence.templates import get_template


async def template_step(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    template_id: uuid.UUID,
    service_parameter_format: str,
    event_id: uuid.UUID,
) -> TemplateCheck:
    """The template's check; InvalidArgument listing every violation."""
    template = await get_template(session, workspace_id, template_id)
    venue = await venue_of(session, workspace_id, event_id)
    facts = TemplateFacts(
        name=template.name,
        language=template.language,
        status=template.status,
        category=template.category,
        previous_category=template.previous_category,
        pending_category=template.pending_category,
        quality=template.quality,
        source=template.source,
        parameter_format=template.parameter_format,
        components=template.components or [],
        variables=template.variables,
        deleted=template.deleted_on_meta_at is not None,
        event_has_coordinates=(
            venue is not None and venue.latitude is not None and venue.longitude is not None
        ),
    )
    check = check_template(facts, service_parameter_format)
    if check.violations:
        raise InvalidArgument(*check.violations)
    return check
