"""Signed callbacks (pure): the JSON a receiver gets, its signature, the retry schedule.

Each POST carries a batch of consecutive changes of one workspace, oldest first, as JSON::

    {"workspace_id": "...", "changes": [{"cursor": "41", "kind": "message", ...}, ...]}

and the header ``X-Invites-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
HMAC-SHA256(secret, ``"<t>." + body``). A receiver following the documented rule
(:func:`verify_signature`) rejects a forged body (wrong MAC) and a replay older than the window
(``t`` more than ``REPLAY_WINDOW_SECONDS`` away from its clock); within the window it drops a
batch whose cursors it already processed (delivery is at-least-once, in cursor order).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Sequence
from typing import Any

from dispatch_service.read_models import ChangeView

SIGNATURE_HEADER = "X-Invites-Signature"
REPLAY_WINDOW_SECONDS = 300


def change_json(change: ChangeView) -> dict[str, Any]:
    """One change as the callback body lists it."""
    return {
        "cursor": str(change.position),
        "kind": change.kind,
        "run_id": str(change.run_id),
        "event_id": str(change.event_id),
        "message_id": str(change.message_id) if change.message_id else None,
        "from": change.from_state,
        "to": change.to_state,
        "reason": change.reason,
        "error_code": change.error_code,
        "changed_at": change.changed_at.isoformat(),
    }


def callback_body(workspace_id: str, changes: Sequence[ChangeView]) -> bytes:
    """The POST body for a batch of changes."""
    payload = {"workspace_id": workspace_id, "changes": [change_json(c) for c in changes]}
    return json.dumps(payload, separators=(",", ":")).encode()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    now: float,
    window_seconds: float = REPLAY_WINDOW_SECONDS,
) -> bool:
    """The receiver's rule: a well-formed header, a timestamp within the window of `now`, and
    a MAC over ``"<t>." + body`` equal (in constant time) to the secret's."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > window_seconds:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def retry_delay(attempts: int, max_seconds: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` failures in a row: 1, 2, 4 ... capped, with
    up to 20% jitter so many workspaces' retries do not align."""
    base = min(max_seconds, 2.0 ** max(attempts - 1, 0))
    return base * (1 + 0.2 * (rng or random).random())
