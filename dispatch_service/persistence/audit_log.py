"""Audit entries for admin actions, written in the caller's transaction (so they commit with it)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from common.db.models import AuditEntry

ACTION_FORMAT = re.compile(r"^[a-z_]+\.[a-z_]+$")


def record_audit(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    actor_id: uuid.UUID | None,
    action: str,
    subject_type: str,
    subject_id: uuid.UUID | str,
    details: dict[str, Any] | None = None,
) -> None:
    """Add `action` (e.g. ``dnm.add``) on a subject to the session's transaction."""
    if not ACTION_FORMAT.match(action):
        raise ValueError(f"audit action {action!r} must look like noun.verb")
    session.add(
        AuditEntry(
            workspace_id=workspace_id,
            actor_id=actor_id,
            action=action,
            subject_type=subject_type,
            subject_id=str(subject_id),
            # Round-trip through JSON so UUIDs and datetimes are stored as plain strings.
            details=json.loads(json.dumps(details or {}, default=str)),
        )
    )
