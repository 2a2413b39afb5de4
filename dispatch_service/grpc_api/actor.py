"""The acting membership id from call metadata (role and workspace come from the database)."""

from __future__ import annotations

import uuid
from typing import Any

from grpc import aio

from dispatch_service.domain.ids import parse_uuid_or_none
from dispatch_service.errors import Unauthenticated

ACTOR_HEADER = "x-actor-id"


def actor_id(context: aio.ServicerContext[Any, Any]) -> uuid.UUID:
    """The `x-actor-id` membership id of this call, or Unauthenticated."""
    metadata = context.invocation_metadata() or ()
    raw = next((str(v) for k, v in metadata if k == ACTOR_HEADER), "")
    if not raw:
        raise Unauthenticated(f"missing {ACTOR_HEADER} metadata (the acting membership id)")
    parsed = parse_uuid_or_none(raw)
    if parsed is None:
        raise Unauthenticated(f"{ACTOR_HEADER} is not a membership id")
    return parsed
