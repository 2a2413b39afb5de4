"""`invites changes`: the workspace's message and run state changes, in commit order.

Without --follow it lists the changes kept (after --after); with --follow it prints each change
live as it commits (from now, or after --after / from the oldest kept with --from-start) until
Ctrl-C. Each line starts with the change's cursor: pass it as --after to continue there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from cli.client import Client, add_connection_arguments
from cli.exit_codes import EXIT_OK
from cli.output import enum_name, make_console, print_json, timestamp
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2

console = make_console()
KINDS = {"message": pb.CHANGE_KIND_MESSAGE, "run": pb.CHANGE_KIND_RUN}


def register(commands: Any) -> None:
    """Add `changes` to the `invites` parser."""
    parser = commands.add_parser("changes", help="list or follow message and run state changes")
    add_connection_arguments(parser)
    parser.add_argument("--run", default="", help="only this run's changes")
    parser.add_argument("--event", default="", help="only this event's changes")
    parser.add_argument("--kind", action="append", default=[], choices=sorted(KINDS))
    parser.add_argument("--after", default="", metavar="CURSOR", help="continue after a cursor")
    parser.add_argument("--follow", action="store_true", help="print changes live until Ctrl-C")
    parser.add_argument(
        "--from-start", action="store_true", help="with --follow: start from the oldest kept"
    )
    parser.add_argument("--limit", type=int, default=1000, help="without --follow: at most this")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:  # Ctrl-C ends --follow: a normal end
        return EXIT_OK


async def _main(args: argparse.Namespace) -> int:
    client = Client.from_args(args)
    try:
        if args.follow:
            with contextlib.suppress(asyncio.CancelledError):
                await follow(client, args)
            return EXIT_OK
        return await list_changes(client, args)
    finally:
        await client.close()


def describe(change: pb.Change) -> str:
    """One line for a change."""
    if change.kind == pb.CHANGE_KIND_RUN:
        before = enum_name(types_pb2.RunState, change.run_from) if change.run_from else "new"
        after = enum_name(types_pb2.RunState, change.run_to)
        what = f"run {change.run_id[:8]}"
        detail = f" ({change.pause_reason})" if change.pause_reason else ""
    else:
        before = (
            enum_name(types_pb2.MessageState, change.message_from) if change.message_from else "new"
        )
        after = enum_name(types_pb2.MessageState, change.message_to)
        what = f"run {change.run_id[:8]} message {change.message_id[:8]}"
        reason = enum_name(types_pb2.RejectionReason, change.reason) if change.reason else ""
        code = f" error {change.error_code}" if change.error_code else ""
        detail = f" ({reason}{code})" if reason or code else ""
    return (
        f"{change.cursor:>8}  {timestamp(change.changed_at)}  {what}  {before} -> {after}{detail}"
    )


def _show(change: pb.Change, as_json: bool) -> None:
    if as_json:
        print_json(change)
    else:
        console.print(describe(change))


async def follow(client: Client, args: argparse.Namespace) -> None:
    """WatchChanges until interrupted."""
    request = pb.WatchChangesRequest(
        after_cursor=args.after,
        run_id=args.run,
        event_id=args.event,
        kinds=[KINDS[k] for k in args.kind],
        from_now=not args.after and not args.from_start,
    )
    async for reply in client.stream(client.dispatch.WatchChanges, request):
        _show(reply.change, args.json)


async def list_changes(client: Client, args: argparse.Namespace) -> int:
    """ListChanges pages, up to --limit changes; the last line names the cursor to continue."""
    request = pb.ListChangesRequest(
        after_cursor=args.after,
        run_id=args.run,
        event_id=args.event,
        kinds=[KINDS[k] for k in args.kind],
        page_size=min(max(args.limit, 1), 5000),
    )
    shown = 0
    while shown < args.limit:
        reply = await client.call(client.dispatch.ListChanges, request)
        for change in reply.changes[: args.limit - shown]:
            _show(change, args.json)
            shown += 1
        request.after_cursor = reply.next_cursor
        if not reply.changes:
            break
    if not args.json:
        console.print(f"[dim]continue with --after {request.after_cursor}[/]")
    return EXIT_OK
