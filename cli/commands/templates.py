"""`invites templates ...`: register message templates, change their approval status, list.

    invites templates register event_invitation --language en_US --category marketing \
        --variable guest_name --variable event_name --status approved
    invites templates status <template id> paused
    invites templates list
    invites templates sync --waba-id 102290129340398   # read every template from Meta
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.client import Client
from cli.commands.admin_support import add_command, add_group, fields, table
from cli.output import enum_name, print_json, print_json_items
from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import types_pb2


def _choices(enum: Any, prefix: str) -> dict[str, Any]:
    return {name.removeprefix(prefix).lower(): n for name, n in enum.items() if n}


CATEGORIES = _choices(types_pb2.TemplateCategory, "TEMPLATE_CATEGORY_")
STATUSES = _choices(types_pb2.TemplateStatus, "TEMPLATE_STATUS_")


def register(commands: Any) -> None:
    """Add `templates register|status|list`."""
    templates = add_group(commands, "templates", "register templates and their approval status")
    register_ = add_command(templates, "register", "register a template", run_register)
    register_.add_argument("name", help="the template name registered with Meta")
    register_.add_argument("--language", required=True, help="for example en_US")
    register_.add_argument("--category", choices=sorted(CATEGORIES), required=True)
    register_.add_argument(
        "--variable",
        action="append",
        default=[],
        help="body variable names in order ({{1}}, {{2}}, ...); repeatable",
    )
    register_.add_argument(
        "--status", choices=sorted(STATUSES), default="pending", help="default: pending"
    )
    register_.add_argument(
        "--twilio-content-sid",
        default="",
        help="the Twilio Content SID (HX...) it is sent as by a Twilio workspace",
    )
    register_.add_argument("--json", action="store_true", help="print JSON")
    status = add_command(templates, "status", "change a template's approval status", run_status)
    status.add_argument("template_id")
    status.add_argument("status", choices=sorted(STATUSES))
    status.add_argument("--json", action="store_true", help="print JSON")
    listing = add_command(templates, "list", "the workspace's templates", run_list)
    listing.add_argument("--json", action="store_true", help="print JSON lines, one per template")
    sync = add_command(
        templates, "sync", "read every template of the WhatsApp Business Account", run_sync
    )
    sync.add_argument(
        "--waba-id", default="", help="record this WABA id on the workspace first (once)"
    )
    sync.add_argument("--json", action="store_true", help="print JSON")


def components_summary(template: pb.Template) -> str:
    """The components in one line, e.g. ``HEADER:IMAGE BODY FOOTER BUTTONS:QUICK_REPLY,URL``."""
    parts = []
    for component in template.components:
        if component.type == "HEADER":
            parts.append(f"HEADER:{component.format or 'TEXT'}")
        elif component.type == "BUTTONS":
            parts.append("BUTTONS:" + ",".join(b.type for b in component.buttons))
        else:
            parts.append(component.type)
    return " ".join(parts)


def source_name(template: pb.Template) -> str:
    """meta, manual, or meta (deleted) for a template a sync no longer found."""
    name = enum_name(pb.TemplateSource, template.source)
    return f"{name} (deleted)" if template.deleted_on_meta else name


def show_template(title: str, template: pb.Template) -> None:
    """One template's fields."""
    fields(
        title,
        [
            ("template_id", template.template_id),
            ("name", template.name),
            ("language", template.language),
            ("category", enum_name(types_pb2.TemplateCategory, template.category)),
            ("variables", ", ".join(template.variables)),
            ("status", enum_name(types_pb2.TemplateStatus, template.status)),
            ("twilio_content_sid", template.twilio_content_sid or "-"),
        ],
    )


async def run_register(client: Client, args: argparse.Namespace) -> int:
    """RegisterTemplate."""
    template = pb.Template(
        name=args.name,
        language=args.language,
        category=CATEGORIES[args.category],
        variables=args.variable,
        status=STATUSES[args.status],
        twilio_content_sid=args.twilio_content_sid,
    )
    reply = await client.call(
        client.admin.RegisterTemplate, pb.RegisterTemplateRequest(template=template)
    )
    if args.json:
        print_json(reply)
    else:
        show_template("template registered", reply.template)
    return 0


async def run_status(client: Client, args: argparse.Namespace) -> int:
    """UpdateTemplateStatus."""
    reply = await client.call(
        client.admin.UpdateTemplateStatus,
        pb.UpdateTemplateStatusRequest(template_id=args.template_id, status=STATUSES[args.status]),
    )
    if args.json:
        print_json(reply)
    else:
        show_template("template updated", reply.template)
    return 0


async def run_list(client: Client, args: argparse.Namespace) -> int:
    """ListTemplates."""
    reply = await client.call(client.admin.ListTemplates, pb.ListTemplatesRequest())
    if args.json:
        print_json_items(reply.templates)
        return 0
    table(
        "templates",
        ("template_id", "name", "language", "category", "variables", "status", "source"),
        [
            (
                t.template_id,
                t.name,
                t.language,
                enum_name(types_pb2.TemplateCategory, t.category),
                ", ".join(t.variables),
                enum_name(types_pb2.TemplateStatus, t.status),
                source_name(t),
            )
            for t in reply.templates
        ],
    )
    return 0


async def run_sync(client: Client, args: argparse.Namespace) -> int:
    """SyncTemplates: one row per template, with what the sync changed."""
    reply = await client.call(
        client.admin.SyncTemplates, pb.SyncTemplatesRequest(waba_id=args.waba_id)
    )
    if args.json:
        print_json(reply)
        return 0
    table(
        f"templates of WABA {reply.waba_id} ({reply.read} read from Meta)",
        ("name", "language", "sync", "changed", "status", "quality", "category", "components"),
        [
            (
                c.template.name,
                c.template.language,
                enum_name(pb.TemplateSyncKind, c.kind),
                ", ".join(c.fields),
                enum_name(types_pb2.TemplateStatus, c.template.status),
                c.template.quality,
                enum_name(types_pb2.TemplateCategory, c.template.category),
                components_summary(c.template),
            )
            for c in reply.changes
        ],
    )
    for skipped in reply.skipped:
        print(f"skipped: {skipped}")
    if reply.messaging_limit:
        print(f"messaging limit (read from Meta): {reply.messaging_limit} per 24 h")
    for run_id in reply.paused_run_ids:
        print(f"paused run {run_id}: its template was deleted on Meta or is not approved")
    return 0
