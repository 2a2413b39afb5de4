"""Who is acting and what their role allows (pure; roles are read from the database)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from common.vocabulary import Role
from dispatch_service.errors import PermissionDenied

WRITERS = frozenset({Role.PARENT_ADMIN, Role.ADMIN})
SENDERS = frozenset({Role.PARENT_ADMIN})


@dataclass(frozen=True)
class Actor:
    """An active membership: the person acting and the workspace every call is scoped to."""

    member_id: uuid.UUID
    workspace_id: uuid.UUID
    role: Role


def require_role(actor: Actor, allowed: frozenset[Role], action: str) -> None:
    """Raise PermissionDenied unless the actor's role is one of `allowed`."""
    if actor.role not in allowed:
        raise PermissionDenied(f"role {actor.role.value} may not {action}")
