"""X-Hub-Signature-256 verification: HMAC-SHA256 of the raw body with the app secret(s).

The header is ``sha256=<64 hex digits>`` (upper-case hex is accepted). Several secrets may be
configured at once (rotation, or several apps subscribed to one WhatsApp Business Account): the
body is valid when it matches any of them. Every secret is compared, in constant time, whatever
the result, so timing reveals neither which secret matched nor how much of a digest did.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Sequence
from enum import StrEnum

PREFIX = "sha256="
DIGEST_HEX_LENGTH = 64
_HEX = frozenset(string.hexdigits)


class Verdict(StrEnum):
    """What the signature check concluded."""

    VALID = "valid"
    MISSING = "signature_missing"
    MALFORMED = "signature_malformed"
    MISMATCH = "signature_mismatch"


def parse_signature(header: str | None) -> bytes | Verdict:
    """The digest bytes carried by the header, or why there are none."""
    if header is None or not header.strip():
        return Verdict.MISSING
    value = header.strip()
    if not value.startswith(PREFIX):
        return Verdict.MALFORMED
    digest = value[len(PREFIX) :]
    if len(digest) != DIGEST_HEX_LENGTH or not set(digest) <= _HEX:
        return Verdict.MALFORMED
    return bytes.fromhex(digest)


def matches(body: bytes, digest: bytes, secrets: Sequence[bytes]) -> bool:
    """Whether `digest` (parsed by `parse_signature`) is HMAC-SHA256(secret, body) for a secret."""
    results = [
        hmac.compare_digest(hmac.new(secret, body, hashlib.sha256).digest(), digest)
        for secret in secrets
    ]
    return any(results)
