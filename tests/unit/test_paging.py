"""Keyset paging (pure): page sizes, tokens round-trip, and foreign tokens are refused."""

from __future__ import annotations

import pytest

from dispatch_service.domain.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    encode_page_token,
    page_request,
    single_key,
)
from dispatch_service.errors import InvalidArgument


def test_first_page_uses_the_default_size_and_the_first_key() -> None:
    page = page_request(0, "", key_length=1)
    assert page.size == DEFAULT_PAGE_SIZE
    assert single_key(page, int, -1) == -1


def test_a_token_round_trips_its_key() -> None:
    page = page_request(7, encode_page_token([41]), key_length=1)
    assert page.size == 7
    assert single_key(page, int, -1) == 41


@pytest.mark.parametrize(
    ("size", "token", "fields"),
    [
        (MAX_PAGE_SIZE + 1, "", ["page_size"]),
        (-1, "%%%", ["page_size", "page_token"]),
        (0, encode_page_token([1, 2]), ["page_token"]),
    ],
)
def test_bad_sizes_and_tokens_are_invalid_arguments(
    size: int, token: str, fields: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        page_request(size, token, key_length=1)
    assert [v.field for v in caught.value.violations] == fields


def test_a_key_of_another_type_is_not_our_token() -> None:
    page = page_request(0, encode_page_token(["a name"]), key_length=1)
    with pytest.raises(InvalidArgument) as caught:
        single_key(page, int, -1)
    assert [v.field for v in caught.value.violations] == ["page_token"]
