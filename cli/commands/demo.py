"""The first-run demo: a seeded workspace (`invites up` calls `seed_demo`) and `invites demo`.

Seeding goes through the public gRPC API, like any backend would, and is idempotent: the ids
are kept in `<state dir>/demo.json`, and a second `invites up` reuses them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from google.protobuf.timestamp_pb2 import Timestamp
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from cli.client import Client, ServerError
from cli.commands import runs
from cli.commands.guests import csv_import_requests
from cli.output import enum_name, make_console
from common.generated.invites.v1 import admin_pb2, dispatch_pb2, types_pb2

console = make_console()

SAMPLE_CSV = Path(__file__).resolve().parent.parent / "data" / "sample_guests.csv"
DEMO_FILE = "demo.json"
DEMO_TEMPLATE = "event_invitation"
DEMO_LANGUAGE = "en_US"
DEMO_VARIABLES = ("guest_name", "event_name")
DEMO_DNM_PHONE = "+12025550119"  # a household contact in the sample CSV
PROVIDERS = ("meta", "twilio")
# The Twilio demo workspace: a made-up account and WhatsApp sender (the sandbox accepts any).
DEMO_TWILIO_ACCOUNT_SID = "AC" + "d" * 32
DEMO_TWILIO_SENDER = "whatsapp:+15550783881"


def demo_file(provider: str) -> str:
    """demo.json for the Meta workspace, demo-twilio.json for the Twilio one."""
    return DEMO_FILE if provider == "meta" else f"demo-{provider}.json"


@dataclass
class Demo:
    """What `invites demo` needs: where to connect and the seeded ids."""

    target: str
    token: str
    actor_id: str
    workspace_id: str
    event_id: str
    template_id: str

    def save(self, state_dir: Path, provider: str = "meta") -> None:
        """Write demo.json (owner-readable only: it holds a local token)."""
        path = state_dir / demo_file(provider)
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)

    @classmethod
    def load(cls, state_dir: Path, provider: str = "meta") -> Demo | None:
        """The saved demo, if any."""
        path = state_dir / demo_file(provider)
        return cls(**json.loads(path.read_text())) if path.exists() else None


def add_state_dir_argument(parser: argparse.ArgumentParser, purpose: str) -> None:
    """--state-dir, shared by `up` (which writes there) and `demo` (which reads it)."""
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("INVITES_STATE_DIR", ".invites")),
        help=f"{purpose} (default .invites, or INVITES_STATE_DIR)",
    )


def register(commands: Any) -> None:
    """Add `invites demo`."""
    demo = commands.add_parser("demo", help="send the demo workspace's invitations and watch them")
    add_state_dir_argument(demo, "where `invites up` keeps demo.json")
    demo.add_argument(
        "--provider",
        choices=PROVIDERS,
        default="meta",
        help="send through the demo workspace of this provider (default meta; twilio: the "
        "sandbox plays Twilio's Messages API and status callbacks)",
    )
    demo.add_argument(
        "--settle",
        type=float,
        default=20.0,
        help="after the run completes, wait up to this many seconds for delivery and read "
        "receipts before the summary (default 20)",
    )
    demo.set_defaults(handler=lambda args: asyncio.run(run_demo(args)))


async def _still_valid(demo: Demo) -> bool:
    client = Client.connect(demo.target, demo.token, demo.actor_id)
    try:
        await client.call(client.admin.ListTemplates, admin_pb2.ListTemplatesRequest())
        return True
    except ServerError:
        return False
    finally:
        await client.close()


def _workspace_request(provider: str) -> admin_pb2.CreateWorkspaceRequest:
    if provider == "twilio":
        return admin_pb2.CreateWorkspaceRequest(
            name="Demo wedding (Twilio)",
            default_region="US",
            admin_display_name="Demo organiser",
            sender_provider=admin_pb2.SENDER_PROVIDER_TWILIO,
            sender_phone_number_id=DEMO_TWILIO_SENDER,
            twilio_account_sid=DEMO_TWILIO_ACCOUNT_SID,
        )
    return admin_pb2.CreateWorkspaceRequest(
        name="Demo wedding", default_region="US", admin_display_name="Demo organiser"
    )


def _content_sid(provider: str) -> str:
    if provider != "twilio":
        return ""
    from sandbox.twilio import content_sid  # the SID the sandbox gives the demo template

    return content_sid(DEMO_TEMPLATE, DEMO_LANGUAGE)


async def seed_demo(target: str, token: str, state_dir: Path, provider: str = "meta") -> Demo:
    """Create (or reuse) the demo workspace: admin, households, event, template, one DNM."""
    existing = Demo.load(state_dir, provider)
    if existing and existing.target == target and await _still_valid(existing):
        return existing
    client = Client.connect(target, token, actor="")
    try:
        created = await client.call(client.admin.CreateWorkspace, _workspace_request(provider))
        client.actor = created.admin.member_id
        await client.admin.ImportGuests(
            csv_import_requests(SAMPLE_CSV, "demo-sample-guests"),
            metadata=client.metadata(),
            timeout=60,
        )
        starts = Timestamp()
        starts.FromDatetime(datetime.now(UTC).replace(microsecond=0) + timedelta(days=60))
        event = await client.call(
            client.admin.CreateEvent,
            admin_pb2.CreateEventRequest(
                name="Sam & Alex's wedding", starts_at=starts, location="Old Town Hall"
            ),
        )
        await client.call(
            client.admin.SetEventAudience,
            admin_pb2.SetEventAudienceRequest(
                event_id=event.event.event_id,
                audience=admin_pb2.Audience(mode=admin_pb2.AUDIENCE_MODE_ALL),
            ),
        )
        template = await client.call(
            client.admin.RegisterTemplate,
            admin_pb2.RegisterTemplateRequest(
                template=admin_pb2.Template(
                    name=DEMO_TEMPLATE,
                    language=DEMO_LANGUAGE,
                    category=types_pb2.TEMPLATE_CATEGORY_MARKETING,
                    variables=list(DEMO_VARIABLES),
                    status=types_pb2.TEMPLATE_STATUS_APPROVED,
                    twilio_content_sid=_content_sid(provider),
                )
            ),
        )
        await client.call(
            client.admin.AddDoNotMessage,
            admin_pb2.AddDoNotMessageRequest(
                phone=DEMO_DNM_PHONE, reason="asked not to be messaged"
            ),
        )
    finally:
        await client.close()
    demo = Demo(
        target=target,
        token=token,
        actor_id=created.admin.member_id,
        workspace_id=created.workspace.workspace_id,
        event_id=event.event.event_id,
        template_id=template.template.template_id,
    )
    demo.save(state_dir, provider)
    return demo


def register_sandbox_template(sandbox_url: str, wait_seconds: float = 15.0) -> None:
    """Teach the sandbox the demo template (it validates sends like Meta does).

    Waits for the sandbox to answer first: it starts beside the services, not before them.
    """
    template = {
        "name": DEMO_TEMPLATE,
        "language": DEMO_LANGUAGE,
        "body_params": len(DEMO_VARIABLES),
        "category": "MARKETING",
    }
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            httpx.post(
                f"{sandbox_url}/_sandbox/templates", json=template, timeout=5
            ).raise_for_status()
            return
        except httpx.TransportError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def summary_table(status: dispatch_pb2.RunStatus) -> Table:
    """The demo's closing summary: lifecycle counts, blocked reasons, failure codes."""
    table = Table("outcome", "count", title="demo run summary")
    for item in status.by_state:
        if item.count:
            table.add_row(enum_name(types_pb2.MessageState, item.state), str(item.count))
    for reason in status.blocked_by_reason:
        table.add_row(
            f"blocked: {enum_name(types_pb2.RejectionReason, reason.reason)}", str(reason.count)
        )
    for code in status.failed_by_error_code:
        table.add_row(f"failed: error {code.error_code}", str(code.count))
    return table


RECEIPTS_QUIET_SECONDS = 4.0


async def settled_status(client: Client, run_id: str, settle: float) -> dispatch_pb2.RunStatus:
    """The run's status once its delivery and read receipts stopped coming.

    A completed run's messages may still be `sent`: receipts arrive later through the webhook
    path. This shows them arrive (a bar of messages delivered or read) and returns when no
    message waits in `sent`, when nothing changed for RECEIPTS_QUIET_SECONDS (some phones never
    send receipts), or after `settle` seconds.
    """
    request = dispatch_pb2.GetRunStatusRequest(run_id=run_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[summary]}"),
    )
    last_counts: dict[int, int] = {}
    changed_at = loop.time()
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("receipts", total=None, summary="")
        while True:
            status = (await client.call(client.dispatch.GetRunStatus, request)).status
            counts = {int(c.state): int(c.count) for c in status.by_state}
            if counts != last_counts:
                last_counts, changed_at = counts, loop.time()
            sent = counts.get(types_pb2.MESSAGE_STATE_SENT, 0)
            receipted = counts.get(types_pb2.MESSAGE_STATE_DELIVERED, 0) + counts.get(
                types_pb2.MESSAGE_STATE_READ, 0
            )
            progress.update(
                task,
                total=sent + receipted or None,
                completed=receipted,
                summary=f"delivered or read (read {counts.get(types_pb2.MESSAGE_STATE_READ, 0)})",
            )
            now = loop.time()
            if not sent or now >= deadline or now - changed_at >= RECEIPTS_QUIET_SECONDS:
                return status
            await asyncio.sleep(0.5)


async def run_demo(args: argparse.Namespace) -> int:
    """Precheck, send and watch the demo event; end with a summary."""
    demo = Demo.load(args.state_dir, args.provider)
    if demo is None:
        console.print(
            f"no {args.provider} demo found in {args.state_dir}: start the stack with "
            "`make up` first"
        )
        return 2
    client = Client.connect(demo.target, demo.token, demo.actor_id)
    try:
        precheck = await client.call(
            client.dispatch.PrecheckSend,
            dispatch_pb2.PrecheckSendRequest(
                event_id=demo.event_id, template_id=demo.template_id, page_size=10
            ),
        )
        runs.show_precheck(precheck)
        if precheck.eligible_count == 0:
            console.print("everyone eligible was already invited; nothing new to send")
            return 0
        started = await client.call(
            client.dispatch.StartRun,
            dispatch_pb2.StartRunRequest(
                precheck_id=precheck.precheck_id, idempotency_key=f"demo-{precheck.precheck_id}"
            ),
        )
        console.print(f"run [bold]{started.run.run_id}[/] started; watching it")
        # The demo's failures are on purpose (the sandbox scenario scripts them): exit 0 once final.
        # One summary, after the receipts settled (the watch's own table would show earlier
        # figures for the same run).
        await runs.watch_run(client, started.run.run_id, show_table=False)
        final = await settled_status(client, started.run.run_id, args.settle)
        console.print(summary_table(final))
        return 0
    finally:
        await client.close()
