"""`invites events ...` and `invites audience ...`.

invites events create "Sam & Alex's wedding" --starts-at 2031-06-01T15:00:00Z --location "Hall"
invites events list
invites audience set <event id> --mode tags --tag family --exclude <guest unit id>
invites audience get <event id>
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.client import Client
from cli.commands.admin_support import (
    add_command,
    add_group,
    console,
    errors,
    fields,
    parse_time,
    table,
)
from cli.exit_codes import EXIT_USAGE
from cli.output import enum_name, print_json, print_json_items, timestamp
from common.generated.invites.v1 import admin_pb2 as pb

MODES = {
    name.removeprefix("AUDIENCE_MODE_").lower(): number
    for name, number in pb.AudienceMode.items()
    if number
}


def register(commands: Any) -> None:
    """Add `events create|update|list` and `audience set|get`."""
    events = add_group(commands, "events", "create, update and list events")
    create = add_command(events, "create", "create an event", run_create)
    create.add_argument("name")
    create.add_argument(
        "--starts-at", type=parse_time, required=True, help="ISO-8601; UTC unless an offset"
    )
    create.add_argument("--location", default="")
    create.add_argument("--time-zone", default="", help="IANA time zone, e.g. Europe/Lisbon")
    create.add_argument("--address", default="", help="the venue's street address")
    create.add_argument("--latitude", type=float, default=None)
    create.add_argument("--longitude", type=float, default=None)
    create.add_argument("--json", action="store_true", help="print JSON")
    update = add_command(events, "update", "change an event (omitted fields are kept)", run_update)
    update.add_argument("event_id")
    update.add_argument("--name", default="")
    update.add_argument("--starts-at", type=parse_time, default=None)
    update.add_argument("--location", default="")
    update.add_argument("--time-zone", default="", help="IANA time zone, e.g. Europe/Lisbon")
    update.add_argument("--address", default="", help="the venue's street address")
    update.add_argument("--latitude", type=float, default=None)
    update.add_argument("--longitude", type=float, default=None)
    update.add_argument("--json", action="store_true", help="print JSON")
    listing = add_command(events, "list", "the workspace's events, soonest first", run_list)
    listing.add_argument("--json", action="store_true", help="print JSON lines, one per event")

    audience = add_group(commands, "audience", "set or show which households an event invites")
    set_ = add_command(audience, "set", "replace an event's audience", run_set)
    set_.add_argument("event_id")
    set_.add_argument("--mode", choices=sorted(MODES), required=True)
    set_.add_argument("--tag", action="append", default=[], help="for --mode tags (repeatable)")
    set_.add_argument("--side", action="append", default=[], help="for --mode sides (repeatable)")
    set_.add_argument(
        "--household",
        action="append",
        default=[],
        metavar="GUEST_UNIT_ID",
        help="for --mode explicit (repeatable)",
    )
    set_.add_argument("--include", action="append", default=[], metavar="GUEST_UNIT_ID")
    set_.add_argument(
        "--exclude", action="append", default=[], metavar="GUEST_UNIT_ID", help="wins over include"
    )
    set_.add_argument("--json", action="store_true", help="print JSON")
    get = add_command(audience, "get", "show an event's audience", run_get)
    get.add_argument("event_id")
    get.add_argument("--json", action="store_true", help="print JSON")


def show_event(title: str, event: pb.Event) -> None:
    """One event's fields."""
    fields(
        title,
        [
            ("event_id", event.event_id),
            ("name", event.name),
            ("starts_at", timestamp(event.starts_at)),
            ("location", event.location),
            ("time_zone", event.time_zone),
            ("address", event.address or "-"),
            (
                "coordinates",
                f"{event.latitude}, {event.longitude}" if event.HasField("latitude") else "-",
            ),
        ],
    )


async def run_create(client: Client, args: argparse.Namespace) -> int:
    """CreateEvent."""
    reply = await client.call(
        client.admin.CreateEvent,
        pb.CreateEventRequest(
            name=args.name,
            starts_at=args.starts_at,
            location=args.location,
            time_zone=args.time_zone,
            address=args.address,
            latitude=args.latitude,
            longitude=args.longitude,
        ),
    )
    if args.json:
        print_json(reply)
    else:
        show_event("event created", reply.event)
    return 0


async def run_update(client: Client, args: argparse.Namespace) -> int:
    """UpdateEvent (at least one field to change, else a usage error)."""
    changes = (args.name, args.location, args.time_zone, args.address)
    coordinates = (args.latitude, args.longitude)
    if not any(changes) and args.starts_at is None and coordinates == (None, None):
        errors.print(
            "usage error: give at least one of --name, --starts-at, --location, --time-zone,"
            " --address, --latitude/--longitude"
        )
        return EXIT_USAGE
    event = pb.Event(
        event_id=args.event_id,
        name=args.name,
        location=args.location,
        time_zone=args.time_zone,
        address=args.address,
        latitude=args.latitude,
        longitude=args.longitude,
    )
    if args.starts_at is not None:
        event.starts_at.CopyFrom(args.starts_at)
    reply = await client.call(client.admin.UpdateEvent, pb.UpdateEventRequest(event=event))
    if args.json:
        print_json(reply)
    else:
        show_event("event updated", reply.event)
    return 0


async def run_list(client: Client, args: argparse.Namespace) -> int:
    """ListEvents."""
    reply = await client.call(client.admin.ListEvents, pb.ListEventsRequest())
    if args.json:
        print_json_items(reply.events)
        return 0
    table(
        "events",
        ("event_id", "name", "starts_at", "location"),
        [(e.event_id, e.name, timestamp(e.starts_at), e.location) for e in reply.events],
    )
    return 0


def show_audience(audience: pb.Audience, count: int) -> None:
    """An audience definition and how many households it resolves to."""
    fields(
        "audience",
        [
            ("mode", enum_name(pb.AudienceMode, audience.mode)),
            ("tags", ", ".join(audience.tags)),
            ("sides", ", ".join(audience.sides)),
            ("households", ", ".join(audience.guest_unit_ids)),
            ("include", ", ".join(audience.include_guest_unit_ids)),
            ("exclude", ", ".join(audience.exclude_guest_unit_ids)),
            ("resolves to", f"{count} households"),
        ],
    )


async def run_set(client: Client, args: argparse.Namespace) -> int:
    """SetEventAudience."""
    audience = pb.Audience(
        mode=MODES[args.mode],
        tags=args.tag,
        sides=args.side,
        guest_unit_ids=args.household,
        include_guest_unit_ids=args.include,
        exclude_guest_unit_ids=args.exclude,
    )
    reply = await client.call(
        client.admin.SetEventAudience,
        pb.SetEventAudienceRequest(event_id=args.event_id, audience=audience),
    )
    if args.json:
        print_json(reply)
    else:
        show_audience(reply.audience, reply.resolved_guest_unit_count)
    return 0


async def run_get(client: Client, args: argparse.Namespace) -> int:
    """GetEventAudience."""
    reply = await client.call(
        client.admin.GetEventAudience, pb.GetEventAudienceRequest(event_id=args.event_id)
    )
    if args.json:
        print_json(reply)
    elif not reply.audience.mode:
        console.print("this event has no audience yet: invites audience set <event id> --mode all")
    else:
        show_audience(reply.audience, reply.resolved_guest_unit_count)
    return 0
