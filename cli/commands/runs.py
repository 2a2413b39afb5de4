"""Send-run commands: precheck, recipients, send, watch, status, messages, cancel, resume, resend,
event.

Every read command takes `--json` for scripts (JSON lines). `watch` and `send --watch` exit 4
when the run ended with failures, or when it is paused (after printing why and what to do).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.prompt import Confirm
from rich.table import Table

from cli.client import Client, add_connection_arguments
from cli.exit_codes import EXIT_OK, EXIT_RUN_FAILURES, EXIT_USAGE
from cli.export_csv import write_csv
from cli.output import enum_name, make_console, print_json, print_json_items, timestamp
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2

console = make_console()
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
    precheck.add_argument(
        "--fallback-language",
        default="",
        metavar="LANG",
        help="for guests whose language no approved translation fits: this translation "
        "(default: the template's own), or 'none' to block them",
    )
    precheck.add_argument("--json", action="store_true", help="print JSON")

    recipients = command(
        "recipients", "every recipient of a precheck (all pages), in audience order", run_recipients
    )
    recipients.add_argument("precheck_id")
    which = recipients.add_mutually_exclusive_group()
    which.add_argument("--eligible", action="store_true", help="only the eligible ones")
    which.add_argument("--blocked", action="store_true", help="only the blocked ones")
    recipients.add_argument("--json", action="store_true", help="print JSON lines, one each")

    send = command("send", "precheck, confirm, then start a send run", run_send)
    send.add_argument("event_id")
    send.add_argument("template_id")
    send.add_argument("--resend", action="append", default=[], metavar="PHONE")
    send.add_argument(
        "--fallback-language",
        default="",
        metavar="LANG",
        help="for guests whose language no approved translation fits: this translation "
        "(default: the template's own), or 'none' to block them",
    )
    send.add_argument(
        "--idempotency-key",
        default="",
        help="default: derived from the precheck, so a retried send is the same run",
    )
    send.add_argument(
        "--at",
        type=when,
        metavar="WHEN",
        help="schedule the run: an ISO 8601 instant with its offset, or +30s, +10m, +2h, +1d",
    )
    send.add_argument(
        "--deadline",
        type=when,
        metavar="WHEN",
        help="messages still unsent then fail as expired (same forms as --at)",
    )
    send.add_argument(
        "--window",
        default="",
        metavar="HH:MM-HH:MM",
        help="quiet hours for this run in each guest's local time (default: the workspace's)",
    )
    media = send.add_mutually_exclusive_group()
    for kind in ("image", "video", "document"):
        media.add_argument(
            f"--header-{kind}",
            metavar="URL_OR_MEDIA_ID",
            help=f"the {kind} of a template with a {kind.upper()} header (https URL or media id)",
        )
    send.add_argument("--header-filename", default="", help="a document header's shown name")
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
    messages.add_argument("--json", action="store_true", help="print JSON lines, one per message")
    messages.add_argument(
        "--csv",
        action="store_true",
        help="write every recipient (outcome, times, reasons, pricing) as CSV to stdout",
    )

    cancel = command("cancel", "cancel a run: nothing more is sent", run_cancel)
    cancel.add_argument("run_id")
    cancel.add_argument("--json", action="store_true", help="print JSON")

    resume = command("resume", "resume a paused run", run_resume)
    resume.add_argument("run_id")
    resume.add_argument("--json", action="store_true", help="print JSON")

    resend = command(
        "resend",
        "send again to an earlier run's recipients it failed for (a new run, fresh precheck)",
        run_resend,
    )
    resend.add_argument("run_id")
    resend.add_argument(
        "--failed",
        action="store_true",
        help="every recipient it failed for but outcome unknown (= --transient plus every code)",
    )
    resend.add_argument(
        "--transient", action="store_true", help="retries exhausted, or expired at the deadline"
    )
    resend.add_argument(
        "--code",
        action="append",
        type=int,
        default=[],
        metavar="CODE",
        help="failed with this provider error code (repeatable)",
    )
    resend.add_argument(
        "--unknown",
        action="store_true",
        help="outcome unknown (the provider may have sent it: a duplicate is possible)",
    )
    resend.add_argument(
        "--not-read-after",
        type=float,
        default=0.0,
        metavar="HOURS",
        help="sent or delivered but not read this many hours after it was sent",
    )
    resend.add_argument("--idempotency-key", default="", help="default: derived from the run")
    resend.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    resend.add_argument("--json", action="store_true", help="print JSON")

    limits = command(
        "limits",
        "show or set the workspace's messaging limit and quiet hours",
        run_limits,
    )
    limits.add_argument(
        "--messaging-limit",
        default="",
        metavar="TIER",
        help="Meta's portfolio tier: 250, 2000, 10000, 100000 or unlimited (parent_admin)",
    )
    limits.add_argument(
        "--window",
        default="",
        metavar="HH:MM-HH:MM",
        help="quiet hours in each guest's local time, or none (parent_admin)",
    )
    limits.add_argument("--json", action="store_true", help="print JSON")

    event = command(
        "invitations", "an event's runs and each recipient's latest invitation", run_event
    )
    event.add_argument("event_id")
    event.add_argument("--limit", type=int, default=50, help="at most this many recipients")
    event.add_argument("--json", action="store_true", help="print JSON")


_RELATIVE = re.compile(r"^\+(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def when(value: str, now: datetime | None = None) -> datetime:
    """`+10m`-style offsets from now, or an ISO 8601 instant with its UTC offset."""
    match = _RELATIVE.match(value.strip())
    if match:
        amount, unit = int(match.group(1)), _UNITS[match.group(2)]
        return (now or datetime.now(UTC)) + timedelta(**{unit: amount})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither +N[s|m|h|d] nor an ISO 8601 instant"
        ) from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} needs a UTC offset, e.g. 2026-12-24T18:00Z")
    return parsed


def _stamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


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
        fallback_language=args.fallback_language,
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
    if len(reply.recipients_by_language) > 1:
        languages = ", ".join(f"{c.language} {c.count}" for c in reply.recipients_by_language)
        console.print(f"  languages: {languages}")
    if reply.messaging_limit:
        line = f"  messaging limit {reply.messaging_limit}/24 h: {reply.sendable_now} can go now"
        if reply.HasField("limit_frees_at"):
            line += f", the rest as the window frees from {timestamp(reply.limit_frees_at)}"
        console.print(line)
    if reply.HasField("template"):
        template = reply.template
        console.print(
            f"  template {template.name} ({template.language}): "
            f"{enum_name(types_pb2.TemplateStatus, template.status)}, "
            f"{enum_name(types_pb2.TemplateCategory, template.category)}"
            + (f", quality {template.quality}" if template.quality else "")
            + f", {template.source}"
        )
        for note in template.notes:
            console.print(f"    [yellow]note:[/] {note}")
    if reply.currency:
        console.print(
            f"  estimated cost if all are billed: {reply.estimated_cost} {reply.currency}"
        )
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
    if reply.total_count > len(reply.recipients):
        console.print(f"every recipient: invites recipients {reply.precheck_id}")


async def run_precheck(client: Client, args: argparse.Namespace) -> int:
    """`invites precheck EVENT TEMPLATE`."""
    reply = await _precheck(client, args)
    if args.json:
        print_json(reply)
    else:
        show_precheck(reply)
    return EXIT_OK


async def run_recipients(client: Client, args: argparse.Namespace) -> int:
    """`invites recipients PRECHECK`: every page of ListPrecheckRecipients."""
    request = pb.ListPrecheckRecipientsRequest(precheck_id=args.precheck_id, page_size=1000)
    if args.eligible or args.blocked:
        request.eligible = bool(args.eligible)
    table = Table("household contact", "phone", "outcome", title="recipients")
    while True:
        reply = await client.call(client.dispatch.ListPrecheckRecipients, request)
        if args.json:
            print_json_items(reply.recipients)
        for recipient in [] if args.json else reply.recipients:
            outcome = (
                "eligible"
                if recipient.eligible
                else enum_name(types_pb2.RejectionReason, recipient.reason)
            )
            table.add_row(recipient.display_name or "-", recipient.phone_e164 or "-", outcome)
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    if not args.json:
        console.print(table)
    return EXIT_OK


def header_media(args: argparse.Namespace) -> pb.HeaderMedia | None:
    """StartRun's header media from --header-image/--header-video/--header-document."""
    for kind in ("image", "video", "document"):
        value = getattr(args, f"header_{kind}", None)
        if value:
            by_id = value.isdigit()
            return pb.HeaderMedia(
                type=kind,
                link="" if by_id else value,
                media_id=value if by_id else "",
                filename=args.header_filename,
            )
    return None


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
        pb.StartRunRequest(
            precheck_id=precheck.precheck_id,
            idempotency_key=key,
            send_at=_stamp(args.at),
            deadline=_stamp(args.deadline),
            send_window=args.window,
            header_media=header_media(args),
        ),
    )
    if args.json:
        print_json(reply)
    else:
        verb = "started" if reply.created else "already started (same idempotency key)"
        if reply.run.state == types_pb2.RUN_STATE_SCHEDULED:
            verb = f"scheduled for {timestamp(reply.run.send_at)}"
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
    if status.run.HasField("send_at"):
        table.add_row("send at", timestamp(status.run.send_at))
    if status.run.HasField("deadline"):
        table.add_row("deadline", timestamp(status.run.deadline))
    if status.run.parent_run_id:
        table.add_row("resends run", status.run.parent_run_id)
    if status.run.send_window:
        table.add_row("send window", status.run.send_window)
    for held in status.held:
        due = timestamp(held.first_due_at)
        if held.last_due_at != held.first_due_at:
            due += f" .. {timestamp(held.last_due_at)}"
        table.add_row(f"  waiting: {held.reason}", f"{held.count} (due {due})")
    if status.run.provider_outage_reason:
        probe = status.run.next_probe_at.ToDatetime().strftime("%H:%M:%S UTC")
        table.add_row("provider outage", f"{status.run.provider_outage_reason}; next probe {probe}")
    return table


def show_cost(status: pb.RunStatus) -> None:
    """Billable messages per pricing category and the estimate, when any were reported."""
    for item in status.billable_by_category:
        cost = f" ~ {item.estimated_cost} {status.currency}" if status.currency else ""
        console.print(f"billable {item.category}: {item.billable_count}{cost}")
    if status.currency:
        console.print(f"estimated cost: {status.estimated_cost} {status.currency}")


def is_paused(status: pb.RunStatus) -> bool:
    """The run waits for a person (a resume or a cancel); watching it longer shows nothing new."""
    return status.run.state == types_pb2.RUN_STATE_PAUSED


async def watch_run(
    client: Client, run_id: str, as_json: bool = False, show_table: bool = True
) -> int:
    """Follow WatchRun until the run is final or paused.

    Exit 4 when it ended with failures, or when it is paused (the reason is printed with what
    to do next): a paused run would otherwise be watched forever. `show_table=False` leaves
    the closing table to the caller (the demo prints one summary, after the receipts).
    """
    last: pb.RunStatus | None = None
    stream = client.stream(client.dispatch.WatchRun, pb.WatchRunRequest(run_id=run_id))
    if as_json:
        async for update in stream:
            last = update.status
            print_json(update)
            if is_paused(last):
                break
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
                ) + (f" uncreated={last.uncreated_count}" if last.uncreated_count else "")
                progress.update(
                    task,
                    total=last.total_count or None,
                    completed=last.final_count,
                    summary=summary,
                )
                if is_paused(last):
                    break
        if last is not None:
            if show_table or is_paused(last):
                console.print(counts_table(last))
            if is_paused(last):
                console.print(
                    f"run {run_id} is [bold]paused[/]: {last.run.pause_reason or 'no reason given'}"
                )
                console.print(
                    f"  resume it: invites resume {run_id}   cancel it: invites cancel {run_id}"
                )
    if last is None:
        return EXIT_OK
    if is_paused(last):
        return EXIT_RUN_FAILURES
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
            f"({reply.status.final_count}/{reply.status.total_count})" + creating(reply.status)
        )
        show_cost(reply.status)
    return EXIT_OK


def creating(status: pb.RunStatus) -> str:
    """What `invites status` adds while StartRun is still creating the run's messages."""
    return f", {status.uncreated_count} still being created" if status.uncreated_count else ""


async def run_messages(client: Client, args: argparse.Namespace) -> int:
    """`invites messages RUN`: a table (or JSON) of messages, following pages up to --limit;
    with --csv, every recipient of the run (ExportRunMessages) as CSV."""
    if args.csv:
        export = pb.ExportRunMessagesRequest(run_id=args.run_id)
        await write_csv(client.stream(client.dispatch.ExportRunMessages, export), sys.stdout)
        return EXIT_OK
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
        print_json_items(rows)
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


async def run_resend(client: Client, args: argparse.Namespace) -> int:
    """`invites resend RUN --failed`: preview the fresh precheck, confirm, then ResendRun."""
    selection = pb.ResendSelection(
        failed=args.failed or args.transient,
        rejected=args.failed,
        error_codes=args.code,
        outcome_unknown=args.unknown,
        not_read_after_seconds=round(args.not_read_after * 3600),
    )
    if not (args.failed or args.transient or args.code or args.unknown or args.not_read_after > 0):
        console.print(
            "choose what to resend: --failed, --transient, --code N, --unknown or"
            " --not-read-after H"
        )
        return EXIT_USAGE
    preview = await client.call(
        client.dispatch.ResendRun,
        pb.ResendRunRequest(run_id=args.run_id, selection=selection, dry_run=True),
    )
    if not args.json:
        show_precheck(preview.precheck)
    if preview.precheck.eligible_count == 0:
        console.print("nothing to resend: no eligible recipient")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            console.print("refusing to send without confirmation: pass --yes in scripts")
            return EXIT_USAGE
        if not Confirm.ask(
            f"resend {preview.precheck.eligible_count} invitations?", console=console
        ):
            console.print("not sent")
            return EXIT_OK
    key = args.idempotency_key or f"cli-resend-{preview.precheck.precheck_id}"
    reply = await client.call(
        client.dispatch.ResendRun,
        pb.ResendRunRequest(run_id=args.run_id, selection=selection, idempotency_key=key),
    )
    if args.json:
        print_json(reply)
    elif reply.HasField("run"):
        verb = "started" if reply.created else "already started (same idempotency key)"
        console.print(f"run [bold]{reply.run.run_id}[/] {verb}, resending run {args.run_id}")
        console.print(f"  watch it: invites watch {reply.run.run_id}")
    else:
        console.print("nothing to resend: no eligible recipient")
    return EXIT_OK


async def run_limits(client: Client, args: argparse.Namespace) -> int:
    """`invites limits [--messaging-limit TIER] [--window HH:MM-HH:MM|none]`."""
    reply = await client.call(
        client.dispatch.ConfigureSending,
        pb.ConfigureSendingRequest(messaging_limit=args.messaging_limit, send_window=args.window),
    )
    if args.json:
        print_json(reply)
        return EXIT_OK
    limit = str(reply.messaging_limit) if reply.messaging_limit else "unlimited"
    console.print(f"messaging limit: {limit} unique recipients per 24 h")
    if reply.messaging_limit:
        line = f"  used in the last 24 h: {reply.used_in_window}"
        if reply.HasField("frees_at"):
            line += f" (reached; frees at {timestamp(reply.frees_at)})"
        console.print(line)
    console.print(f"quiet hours: {reply.send_window or 'none (any time)'}")
    return EXIT_OK


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
