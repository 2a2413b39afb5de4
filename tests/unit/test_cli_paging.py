"""`every_page`: the CLI's one loop over paged list calls."""

from __future__ import annotations

import json

import pytest

from cli.commands.admin_support import every_page
from common.generated.invites.v1 import admin_pb2 as pb

PAGES = {
    "": pb.ListDoNotMessageResponse(
        entries=[pb.DoNotMessageEntry(phone_e164="+15550100001")], next_page_token="p2"
    ),
    "p2": pb.ListDoNotMessageResponse(
        entries=[pb.DoNotMessageEntry(phone_e164="+15550100002")], next_page_token="p3"
    ),
    "p3": pb.ListDoNotMessageResponse(entries=[pb.DoNotMessageEntry(phone_e164="+15550100003")]),
}
PHONES = ["+15550100001", "+15550100002", "+15550100003"]


async def test_every_page_follows_the_tokens_and_keeps_the_items() -> None:
    asked: list[str] = []

    async def fetch(token: str) -> pb.ListDoNotMessageResponse:
        asked.append(token)
        return PAGES[token]

    entries, last = await every_page(fetch, lambda page: page.entries, as_json=False)
    assert asked == ["", "p2", "p3"]
    assert [e.phone_e164 for e in entries] == PHONES
    assert last is PAGES["p3"]


async def test_every_page_prints_json_lines_and_keeps_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def fetch(token: str) -> pb.ListDoNotMessageResponse:
        return PAGES[token]

    entries, _ = await every_page(fetch, lambda page: page.entries, as_json=True)
    assert entries == []
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["phone_e164"] for line in lines] == PHONES
