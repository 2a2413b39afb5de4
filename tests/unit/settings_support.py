"""The least a DispatchSettings needs (each required setting, with a test value), for unit tests
that build one."""

from __future__ import annotations

from typing import Any

DISPATCH_REQUIRED: dict[str, Any] = {
    "database_url": "postgresql://u@h/db",
    "dispatch_ingestor_token": "ingestor-token-1",
    "dispatch_backend_tokens": "backend-token-1",
    "whatsapp_access_token": "access-token-1",
    "whatsapp_phone_number_id": "1",
}
