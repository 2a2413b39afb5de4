"""Keyset paging for list RPCs (pure): page sizes and opaque page tokens.

A token is the sort key of the last item of the previous page, JSON-encoded then base64url'd, so
clients treat it as opaque and a page never shifts when rows are added before it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from dispatch_service.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
NOT_OUR_TOKEN = "is not a token this list returned"

T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    """A validated page size and the decoded sort key to continue after (None: first page)."""

    size: int
    after: list[Any] | None


def encode_page_token(key: list[Any]) -> str:
    """The opaque token for continuing after `key` (JSON-serialisable values)."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def page_request(page_size: int, page_token: str, key_length: int) -> PageRequest:
    """Validate a page size (0 means the default) and decode a token holding `key_length` values."""
    violations = []
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        violations.append(FieldViolation("page_size", f"must be between 0 and {MAX_PAGE_SIZE}"))
    after = None
    if page_token:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(page_token.encode()))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            decoded = None
        if isinstance(decoded, list) and len(decoded) == key_length:
            after = decoded
        else:
            violations.append(FieldViolation("page_token", NOT_OUR_TOKEN))
    if violations:
        raise InvalidArgument(*violations)
    return PageRequest(size=page_size or DEFAULT_PAGE_SIZE, after=after)


def single_key(page: PageRequest, kind: type[T], first: T) -> T:
    """The one sort key of a single-key list's token (`first` on the first page), or
    InvalidArgument when the token holds a value of another type."""
    if page.after is None:
        return first
    key = page.after[0]
    if not isinstance(key, kind):
        raise InvalidArgument(FieldViolation("page_token", NOT_OUR_TOKEN))
    return key
