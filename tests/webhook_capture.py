"""Every webhook body an in-process sandbox builds during the test session, with its shape.

``tests/conftest.py`` wraps :func:`sandbox.webhooks.build_payload` for the whole session, so the
pywa contract test (``tests/e2e/test_pywa_contract.py``) can check every body the sandbox emitted
in the tests that ran before it, beside the ones it makes itself. Bounded: identical bodies are
kept once, and at most :data:`LIMIT` are kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from sandbox.payloads import encode

LIMIT = 5_000
EMITTED: dict[bytes, tuple[str, bytes]] = {}
"""sha256 of the body -> (shape, body)."""


def recording(build: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``build_payload`` that also records what it built."""

    def build_and_record(*args: Any, **kwargs: Any) -> dict[str, Any]:
        payload = build(*args, **kwargs)
        if len(EMITTED) < LIMIT:
            body = encode(payload)
            EMITTED.setdefault(hashlib.sha256(body).digest(), (str(kwargs.get("shape")), body))
        return payload

    return build_and_record
