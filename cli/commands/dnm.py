"""`invites dnm add|remove|list`: the workspace's Do-Not-Message list (every change audited).

invites dnm add "+1 202 555 0123" --reason "asked not to be messaged"
invites dnm remove "+1 202 555 0123" --reason "opted back in"
invites dnm list
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.client import Client
from cli.commands.admin_support import (
    PAGE_SIZE,
    add_command,
    add_group,
    console,
    every_page,
    table,
)
from cli.output import enum_name, print_json, timestamp
from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import types_pb2


def register(commands: Any) -> None:
    """Add `dnm add|remove|list`."""
    dnm = add_group(commands, "dnm", "the Do-Not-Message list: numbers never messaged")
    add = add_command(dnm, "add", "block a phone in every event of the workspace", run_add)
    add.add_argument("phone", help="as written; normalised with the workspace's region")
    add.add_argument("--reason", default="")
    add.add_argument("--json", action="store_true", help="print JSON")
    remove = add_command(dnm, "remove", "unblock a phone", run_remove)
    remove.add_argument("phone")
    remove.add_argument("--reason", default="")
    remove.add_argument("--json", action="store_true", help="print JSON")
    listing = add_command(dnm, "list", "the blocked phones", run_list)
    listing.add_argument("--json", action="store_true", help="print JSON lines, one per entry")
    listing.add_argument(
        "--all", action="store_true", help="also removed entries (who removed each, when, why)"
    )


async def run_add(client: Client, args: argparse.Namespace) -> int:
    """AddDoNotMessage."""
    reply = await client.call(
        client.admin.AddDoNotMessage,
        pb.AddDoNotMessageRequest(phone=args.phone, reason=args.reason),
    )
    if args.json:
        print_json(reply)
    elif reply.created:
        console.print(f"{reply.entry.phone_e164} is now on the do-not-message list")
    else:
        console.print(
            f"{reply.entry.phone_e164} was already on the list (since "
            f"{timestamp(reply.entry.created_at)}); nothing changed"
        )
    return 0


async def run_remove(client: Client, args: argparse.Namespace) -> int:
    """RemoveDoNotMessage."""
    reply = await client.call(
        client.admin.RemoveDoNotMessage,
        pb.RemoveDoNotMessageRequest(phone=args.phone, reason=args.reason),
    )
    if args.json:
        print_json(reply)
    else:
        console.print(f"{reply.entry.phone_e164} removed from the do-not-message list")
    return 0


async def run_list(client: Client, args: argparse.Namespace) -> int:
    """Every active entry, or every entry with --all (all pages)."""
    entries, _ = await every_page(
        lambda token: client.call(
            client.admin.ListDoNotMessage,
            pb.ListDoNotMessageRequest(
                page_size=PAGE_SIZE, page_token=token, include_removed=args.all
            ),
        ),
        lambda page: page.entries,
        args.json,
    )
    if not args.json:
        columns = ("phone", "reason", "source", "added", "by")
        removal = ("removed", "removed by", "why removed") if args.all else ()
        table(
            "do-not-message (active and removed)" if args.all else "do-not-message",
            (*columns, *removal),
            [
                (
                    e.phone_e164,
                    e.reason,
                    enum_name(types_pb2.DnmSource, e.source),
                    timestamp(e.created_at),
                    e.actor_id,
                    *(
                        (timestamp(e.removed_at), e.removed_by, e.removal_reason)
                        if args.all
                        else ()
                    ),
                )
                for e in entries
            ],
        )
    return 0
