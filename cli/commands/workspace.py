"""`invites bootstrap` (a first workspace and its parent admin) and `invites members ...`.

invites bootstrap --name "Smith wedding" --region US --admin-name "Sam"
export INVITES_ACTOR=<printed member id>
invites members add "Alex" --role admin
invites members list
invites members remove <member id>
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from cli.client import Client
from cli.commands.admin_support import add_command, add_group, console, fields, table
from cli.output import enum_name, print_json, print_json_items
from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import types_pb2

ROLES = {
    "parent_admin": types_pb2.ROLE_PARENT_ADMIN,
    "admin": types_pb2.ROLE_ADMIN,
    "viewer": types_pb2.ROLE_VIEWER,
}

PROVIDERS = {"meta": pb.SENDER_PROVIDER_META, "twilio": pb.SENDER_PROVIDER_TWILIO}


def register(commands: Any) -> None:
    """Add `bootstrap` and `members`."""
    bootstrap = add_command(
        commands,
        "bootstrap",
        "create a workspace and its first parent admin; prints the INVITES_ACTOR to export",
        run_bootstrap,
    )
    bootstrap.add_argument(
        "--name", default="My workspace", help="the workspace's name (default: My workspace)"
    )
    bootstrap.add_argument(
        "--region", required=True, help="ISO 3166 region for phones without a country code (US)"
    )
    bootstrap.add_argument(
        "--admin-name",
        default=os.environ.get("USER") or "Organiser",
        help="the first parent admin's name (default: $USER)",
    )
    bootstrap.add_argument(
        "--sender-phone-number-id",
        default="",
        help="Meta: WhatsApp phone number id to send from (default: the service's); "
        "Twilio: whatsapp:+E164 or a Messaging Service SID (MG...)",
    )
    bootstrap.add_argument(
        "--provider", choices=sorted(PROVIDERS), default="meta", help="default: meta"
    )
    bootstrap.add_argument(
        "--twilio-account-sid", default="", help="Twilio only: the account SID (AC...)"
    )
    bootstrap.add_argument(
        "--waba-id",
        default="",
        help="WhatsApp Business Account id owning its templates (default: the service's)",
    )
    bootstrap.add_argument("--json", action="store_true", help="print JSON")
    bootstrap.set_defaults(needs_actor=False)  # it creates the first member

    members = add_group(commands, "members", "list, add and remove workspace members")
    listing = add_command(members, "list", "list the workspace's members", run_list)
    listing.add_argument("--json", action="store_true", help="print JSON lines, one per member")
    add = add_command(members, "add", "add a member (parent admins only)", run_add)
    add.add_argument("display_name")
    add.add_argument("--role", choices=sorted(ROLES), required=True)
    add.add_argument("--json", action="store_true", help="print JSON")
    remove = add_command(members, "remove", "remove a member (parent admins only)", run_remove)
    remove.add_argument("member_id")


async def run_bootstrap(client: Client, args: argparse.Namespace) -> int:
    """CreateWorkspace, then show the ids and the environment line to act as the admin."""
    reply = await client.call(
        client.admin.CreateWorkspace,
        pb.CreateWorkspaceRequest(
            name=args.name,
            default_region=args.region,
            sender_phone_number_id=args.sender_phone_number_id,
            admin_display_name=args.admin_name,
            sender_provider=PROVIDERS[args.provider],
            twilio_account_sid=args.twilio_account_sid,
            waba_id=args.waba_id,
        ),
    )
    if args.json:
        print_json(reply)
        return 0
    workspace, admin = reply.workspace, reply.admin
    fields(
        "workspace created",
        [
            ("workspace_id", workspace.workspace_id),
            ("name", workspace.name),
            ("default_region", workspace.default_region),
            ("sender_phone_number_id", workspace.sender_phone_number_id),
            ("sender_provider", enum_name(pb.SenderProvider, workspace.sender_provider)),
            ("waba_id", workspace.waba_id or "-"),
            ("parent_admin", f"{admin.display_name} ({admin.member_id})"),
        ],
    )
    console.print("\nAct as this parent admin in the next commands:")
    print(f"export INVITES_ACTOR={admin.member_id}")
    return 0


async def run_list(client: Client, args: argparse.Namespace) -> int:
    """ListMembers."""
    reply = await client.call(client.admin.ListMembers, pb.ListMembersRequest())
    if args.json:
        print_json_items(reply.members)
        return 0
    table(
        "members",
        ("member_id", "name", "role"),
        [(m.member_id, m.display_name, enum_name(types_pb2.Role, m.role)) for m in reply.members],
    )
    return 0


async def run_add(client: Client, args: argparse.Namespace) -> int:
    """AddMember."""
    reply = await client.call(
        client.admin.AddMember,
        pb.AddMemberRequest(display_name=args.display_name, role=ROLES[args.role]),
    )
    if args.json:
        print_json(reply)
        return 0
    member = reply.member
    console.print(f"added {member.display_name} as {args.role}: {member.member_id}")
    return 0


async def run_remove(client: Client, args: argparse.Namespace) -> int:
    """RemoveMember."""
    await client.call(client.admin.RemoveMember, pb.RemoveMemberRequest(member_id=args.member_id))
    console.print(f"removed member {args.member_id}")
    return 0
