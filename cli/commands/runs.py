"""Send-run commands: precheck, send, watch, status, messages, cancel, resume, event.

Every read command takes `--json` for scripts. `watch` and `send --watch` exit 4 when the run
ended with failures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import Message
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.prompt import Confirm
from rich.table import Table

from cli.client import Client, add_connection_arguments
from cli.main import EXIT_OK, EXIT_RUN_FAILURES, EXIT_USAGE
from cli.output import enum_name, print_json, timestamp
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2

console = Console(highlight=False, soft_wrap=True)
FINAL_RUN_STATES = (types_pb2.RUN_STATE_COMPLETED, types_pb2.RUN_STATE_CANCELLED)


def register(commands: Any) -> None:
    """Add the run commands to the `invites` parser."""

    def command(name: str, help_text: str, handler: Callable[..., Awaitable[int]]) -> Any:
        parser = commands.add_parser(name, help=help_text)
        add_connection_arguments(parser)
        parser.set_defaults(handler=lambda args: asyncio.run(_with_client(handler, args)))
        return parser

    precheck = command(
        "precheck", "resolve an event's audience and show who would be sent", run_precheck
    )
    precheck.add_argument("event_id")
    precheck.add_argument("template_id")
    precheck.add_argument(
        "--resend",
        action="append",
        default=[],
        metavar="PHONE",
        help="invite this phone again although it was invited (repeatable)",
    )
    precheck.add_argument("--json", action="store_true", help="print JSON")

    send = command("send", "precheck, confirm, then start a send run", run_send)
    send.add_argument("event_id")
    send.add_argument("template_id")
    send.add_argument("--resend", action="append", default=[], metavar="PHONE")
    send.add_argument(
        "--idempotency-key",
        default="",
        help="default: derived from the precheck, so a retried send is the same run",
    )
    send.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    send.add_argument("--watch", action="store_true", help="watch the run until it is final")
    send.add_argument("--json", action="store_true", help="print JSON")

    watch = command("watch", "show a run's live progress until it is final", run_watch)
    watch.add_argument("run_id")
    watch.add_argument("--json", action="store_true", help="print each update as a JSON line")

    status = command("status", "show a run's state and counts", run_status)
    status.add_argument("run_id")
    status.add_argument("--json", action="store_true", help="print JSON")

    messages = command("messages", "list a run's messages", run_messages)
    messages.add_argument("run_id")
    messages.add_argument(
        "--state",
        action="append",
        default=[],
        choices=_names(types_pb2.MessageState, "MESSAGE_STATE_"),
    )
    messages.add_argument(
        "--reason",
        action="append",
        default=[],
        choices=_names(types_pb2.RejectionReason, "REJECTION_REASON_"),
    )
    messages.add_argument(
        "--limit", type=int, default=50, help="at most this many rows (default 50)"
    )
    messages.add_argument("--json", action="store_true", help="print JSON")

    cancel = command("cancel", "cancel a run: nothing more is sent", run_cancel)
    cancel.add_argument("run_id")
    cancel.add_argument("--json", action="store_true", help="print JSON")

    resume = command("resume", "resume a paused run", run_resume)
    resume.add_argument("run_id")
    resume.add_argument("--json", action="store_true", help="print JSON")

    event = command(
        "invitations", "an event's runs and each recipient's latest invitation", run_event
    )
    event.add_argument("event_id")
    event.add_argument("--limit", type=int, default=50, help="at most this many recipients")
    event.add_argument("--json", action="store_true", help="print JSON")


def _names(enum: Any, prefix: str) -> list[str]:
    return [
        name.removeprefix(prefix).lower()
        for name in enum.keys()  # noqa: SIM118 - a proto enum wrapper, not a dict
        if not name.endswith("UNSPECIFIED")
    ]


async def _with_client(
    handler: Callable[[Client, argparse.Namespace], Awaitable[int]], args: argparse.Namespace
) -> int:
    client = Client.from_args(args)
    try:
        return await handler(client, args)
    finally:
        await client.close()


# --- precheck and send ----------------------------------------------------------------------------


async def _precheck(client: Client, args: argparse.Namespace) -> pb.PrecheckSendResponse:
    request = pb.PrecheckSendRequest(
        event_id=args.event_id,
        template_id=args.template_id,
        resend_phones=args.resend,
        page_size=20,
    )
    return await client.call(client.dispatch.PrecheckSend, request)


def show_precheck(reply: pb.PrecheckSendResponse) -> None:
    """Counts, blocked reasons and the first recipients of a precheck."""
    console.print(f"precheck [bold]{reply.precheck_id}[/] (expires {timestamp(reply.expires_at)})")
    console.print(
        f"  {reply.total_count} recipients: [green]{reply.eligible_count} eligible[/], "
        f"[yellow]{reply.blocked_count} blocked[/]"
    )
    for item in reply.blocked_by_reason:
        console.print(f"    {enum_name(types_pb2.RejectionReason, item.reason)}: {item.count}")
    table = Table("household contact", "phone", "outcome", title="first recipients")
    for recipient in reply.recipients:
        outcome = (
            "eligible"
            if recipient.eligible
            else enum_name(types_pb2.RejectionReason, recipient.reason)
        )
        table.add_row(recipient.display_name or "-", recipient.phone_e164 or "-", outcome)
    if reply.recipients:
        console.print(table)


async def run_precheck(client: Client, args: argparse.Namespace) -> int:
    """`invites precheck EVENT TEMPLATE`."""
    reply = await _precheck(client, args)
    if args.json:
        print_json(reply)
    else:
        show_precheck(reply)
    return EXIT_OK


async def run_send(client: Client, args: argparse.Namespace) -> int:
    """`invites send EVENT TEMPLATE`: precheck, confirm, StartRun (idempotent), optionally watch."""
    precheck = await _precheck(client, args)
    if not args.json:
        show_precheck(precheck)
    if precheck.eligible_count == 0:
        console.print("nothing to send: no eligible recipient")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            console.print("refusing to send without confirmation: pass --yes in scripts")
            return EXIT_USAGE
        if not Confirm.ask(f"send {precheck.eligible_count} invitations?", console=console):
            console.print("not sent")
            return EXIT_OK
    key = args.idempotency_key or f"cli-{precheck.precheck_id}"
    reply = await client.call(
        client.dispatch.StartRun,
        pb.StartRunRequest(precheck_id=precheck.precheck_id, idempotency_key=key),
    )
    if args.json:
        print_json(reply)
    else:
        verb = "started" if reply.created else "already started (same idempotency key)"
        console.print(f"run [bold]{reply.run.run_id}[/] {verb}")
        console.print(f"  watch it: invites watch {reply.run.run_id}")
    if args.watch:
        return await watch_run(client, reply.run.run_id, as_json=args.json)
    return EXIT_OK


# --- watch and status -----------------------------------------------------------------------------


def _count(status: pb.RunStatus, state: int) -> int:
    return next((c.count for c in status.by_state if c.state == state), 0)


def ended_with_failures(status: pb.RunStatus) -> bool:
    """A final run in which some message failed."""
    return (
        status.run.state in FINAL_RUN_STATES and _count(status, types_pb2.MESSAGE_STATE_FAILED) > 0
    )


def counts_table(status: pb.RunStatus) -> Table:
    """Counts per state, blocked per reason and failed per code, as one table."""
    table = Table(
        "",
        "count",
        title=f"run {status.run.run_id}: {enum_name(types_pb2.RunState, status.run.state)}",
    )
    for item in status.by_state:
        if item.count:
            table.add_row(enum_name(types_pb2.MessageState, item.state), str(item.count))
    for kind, reasons in (
        ("blocked", status.blocked_by_reason),
        ("failed", status.failed_by_reason),
    ):
        for reason in reasons:
            name = enum_name(types_pb2.RejectionReason, reason.reason)
            table.add_row(f"  {kind}: {name}", str(reason.count))
    for code in status.failed_by_error_code:
        table.add_row(f"  failed: error {code.error_code}", str(code.count))
    if status.run.pause_reason:
        table.add_row("pause reason", status.run.pause_reason)
    if status.run.provider_outage_reason:
        probe = status.run.next_probe_at.ToDatetime().strftime("%H:%M:%S UTC")
        table.add_row("provider outage", f"{status.run.provider_outage_reason}; next probe {probe}")
    return table


async def watch_run(client: Client, run_id: str, as_json: bool = False) -> int:
    """Follow WatchRun until the run is final; exit 4 when it ended with failures."""
    last: pb.RunStatus | None = None
    stream = client.stream(client.dispatch.WatchRun, pb.WatchRunRequest(run_id=run_id))
    if as_json:
        async for update in stream:
            last = update.status
            print_json(update, compact=True)
    else:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(f"run {run_id[:8]}", total=None, summary="")
            async for update in stream:
                last = update.status
                summary = " ".join(
                    f"{enum_name(types_pb2.MessageState, c.state)}={c.count}"
                    for c in last.by_state
                    if c.count
                )
                progress.update(
                    task,
                    total=last.total_count or None,
                    completed=last.final_count,
                    summary=summary,
                )
        if last is not None:
            console.print(counts_table(last))
    if last is None:
        return EXIT_OK
    return EXIT_RUN_FAILURES if ended_with_failures(last) else EXIT_OK


async def run_watch(client: Client, args: argparse.Namespace) -> int:
    """`invites watch RUN`."""
    return await watch_run(client, args.run_id, as_json=args.json)


async def run_status(client: Client, args: argparse.Namespace) -> int:
    """`invites status RUN`."""
    reply = await client.call(
        client.dispatch.GetRunStatus, pb.GetRunStatusRequest(run_id=args.run_id)
    )
    if args.json:
        print_json(reply)
    else:
        console.print(counts_table(reply.status))
        console.print(
            f"progress {reply.status.progress:.0%} "
            f"({reply.status.final_count}/{reply.status.total_count})"
        )
    return EXIT_OK


async def run_messages(client: Client, args: argparse.Namespace) -> int:
    """`invites messages RUN`: a table (or JSON) of messages, following pages up to --limit."""
    request = pb.ListRunMessagesRequest(
        run_id=args.run_id,
        states=[types_pb2.MessageState.Value(f"MESSAGE_STATE_{s.upper()}") for s in args.state],
        reasons=[
            types_pb2.RejectionReason.Value(f"REJECTION_REASON_{r.upper()}") for r in args.reason
        ],
        page_size=min(args.limit, 1000),
    )
    rows: list[pb.RunMessage] = []
    while len(rows) < args.limit:
        reply = await client.call(client.dispatch.ListRunMessages, request)
        rows += list(reply.messages)
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    rows = rows[: args.limit]
    if args.json:
        print_json(pb.ListRunMessagesResponse(messages=rows))
        return EXIT_OK
    table = Table("message", "phone", "state", "reason", "error", "attempts", "last update")
    for row in rows:
        when = (
            row.read_at
            if row.HasField("read_at")
            else row.delivered_at
            if row.HasField("delivered_at")
            else row.sent_at
        )
        table.add_row(
            row.message_id[:8],
            row.phone_e164 or "-",
            enum_name(types_pb2.MessageState, row.state),
            enum_name(types_pb2.RejectionReason, row.reason) if row.reason else "",
            f"{row.error_code} {row.error_title}".strip() if row.error_code else "",
            str(row.attempt_count),
            timestamp(when) if when.seconds else "",
        )
    console.print(table)
    return EXIT_OK


async def _run_action(
    client: Client, args: argparse.Namespace, method: Any, request: Message, verb: str
) -> int:
    reply = await client.call(method, request)
    if args.json:
        print_json(reply)
    else:
        console.print(
            f"run {reply.run.run_id} {verb}: {enum_name(types_pb2.RunState, reply.run.state)}"
        )
    return EXIT_OK


async def run_cancel(client: Client, args: argparse.Namespace) -> int:
    """`invites cancel RUN`."""
    return await _run_action(
        client,
        args,
        client.dispatch.CancelRun,
        pb.CancelRunRequest(run_id=args.run_id),
        "cancelled",
    )


async def run_resume(client: Client, args: argparse.Namespace) -> int:
    """`invites resume RUN`."""
    return await _run_action(
        client, args, client.dispatch.ResumeRun, pb.ResumeRunRequest(run_id=args.run_id), "resumed"
    )


async def run_event(client: Client, args: argparse.Namespace) -> int:
    """`invites invitations EVENT`: the event's runs and each recipient's latest invitation."""
    request = pb.GetEventInvitationsRequest(event_id=args.event_id, page_size=min(args.limit, 1000))
    reply = await client.call(client.dispatch.GetEventInvitations, request)
    if args.json:
        print_json(reply)
        return EXIT_OK
    runs = Table("run", "state", "created", title="runs")
    for run in reply.runs:
        runs.add_row(
            run.run_id, enum_name(types_pb2.RunState, run.state), timestamp(run.created_at)
        )
    console.print(runs)
    recipients = Table("phone", "latest state", "reason", "run", title="recipients")
    for item in reply.recipients[: args.limit]:
        recipients.add_row(
            item.phone_e164 or "-",
            enum_name(types_pb2.MessageState, item.latest.state),
            enum_name(types_pb2.RejectionReason, item.latest.reason) if item.latest.reason else "",
            item.run_id[:8],
        )
    console.print(recipients)
    return EXIT_OK
