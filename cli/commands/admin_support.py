"""What the admin command modules share: registering a command with connection flags, running its
handler with one client, parsing times, and printing proto messages as tables or JSON."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table

from cli.client import Client, add_connection_arguments
from cli.output import make_console, print_json

console = make_console()
errors = make_console(stderr=True)

AdminHandler = Callable[[Client, argparse.Namespace], Awaitable[int]]
PAGE_SIZE = 1000


class Page(Protocol):
    """A reply of a paged list call."""

    @property
    def next_page_token(self) -> str:
        """Empty on the last page."""
        ...


PageT = TypeVar("PageT", bound=Page)
ItemT = TypeVar("ItemT", bound=Message)


def add_command(commands: Any, name: str, help_text: str, handler: AdminHandler) -> Any:
    """A subcommand with the connection flags whose handler gets one open client."""
    parser = commands.add_parser(name, help=help_text, description=help_text)
    add_connection_arguments(parser)
    parser.set_defaults(handler=lambda args: asyncio.run(with_client(handler, args)))
    return parser


def add_group(commands: Any, name: str, help_text: str) -> Any:
    """A command with subcommands of its own (`invites members add ...`)."""
    parser = commands.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="SUBCOMMAND")


async def with_client(handler: AdminHandler, args: argparse.Namespace) -> int:
    """Run `handler` with a client built from the flags, closing it afterwards."""
    client = Client.from_args(args)
    try:
        return await handler(client, args)
    finally:
        await client.close()


async def every_page(
    fetch: Callable[[str], Awaitable[PageT]],
    items: Callable[[PageT], Iterable[ItemT]],
    as_json: bool,
) -> tuple[list[ItemT], PageT]:
    """Call `fetch(page_token)` until the last page; return the items and the last page.

    With `as_json` each item is printed as a JSON line as its page arrives (scripts can stream
    a long list) and none is kept."""
    token = ""
    kept: list[ItemT] = []
    while True:
        page = await fetch(token)
        if as_json:
            for item in items(page):
                print_json(item)
        else:
            kept += items(page)
        token = page.next_page_token
        if not token:
            return kept, page


def parse_time(value: str) -> Timestamp:
    """An ISO-8601 time ("2031-06-01T18:00:00+02:00", "2031-06-01 18:00"; UTC without offset)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a table (values as text; empty values as '-')."""
    out = Table(*columns, title=title, title_justify="left")
    for row in rows:
        out.add_row(*(str(v) if v not in ("", None) else "-" for v in row))
    console.print(out)


def fields(title: str, pairs: Sequence[tuple[str, Any]]) -> None:
    """Print `name: value` lines under a bold title."""
    console.print(f"[bold]{title}[/]")
    for name, value in pairs:
        console.print(f"  {name}: {value if value not in ('', None) else '-'}")
