"""Events and audiences through the real AdminService."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from common.generated.invites.v1 import admin_pb2 as pb
from tests.integration.admin_support import (
    VIEWER,
    audit_actions,
    field_violations,
    import_csv,
    new_member,
    new_workspace,
    rows,
    rpc_error,
    scalar,
)
from tests.integration.conftest import ApiClient

GUESTS = """household,name,phone,tags,side
Adams,Ann,+12025550101,family,bride
Baker,Bo,+12025550102,friends,groom
Carter,Cy,+12025550103,family;friends,groom
Dunn,Di,+12025550104,,
"""


def ts(year: int, month: int, day: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(year, month, day, 18, tzinfo=UTC))
    return stamp


async def _event(api: ApiClient, actor: str, name: str = "Wedding", day: int = 1) -> pb.Event:
    reply = await api.admin.CreateEvent(
        pb.CreateEventRequest(name=name, starts_at=ts(2031, 6, day), location="Town Hall"),
        metadata=api.md(actor),
    )
    return reply.event


async def _households(api: ApiClient, actor: str) -> dict[str, str]:
    await import_csv(api, actor, GUESTS)
    reply = await api.admin.ListGuestUnits(pb.ListGuestUnitsRequest(), metadata=api.md(actor))
    return {u.name: u.guest_unit_id for u in reply.guest_units}


async def test_events_are_created_updated_and_listed_soonest_first(grpc_api: ApiClient) -> None:
    created = await new_workspace(grpc_api)
    admin, workspace_id = created.admin.member_id, created.workspace.workspace_id
    later = await _event(grpc_api, admin, "Party", day=20)
    sooner = await _event(grpc_api, admin, "Ceremony", day=10)
    assert later.starts_at == ts(2031, 6, 20)
    updated = await grpc_api.admin.UpdateEvent(
        pb.UpdateEventRequest(event=pb.Event(event_id=later.event_id, location="Garden")),
        metadata=grpc_api.md(admin),
    )
    assert (updated.event.name, updated.event.location) == ("Party", "Garden")  # name kept
    assert updated.event.starts_at == ts(2031, 6, 20)
    moved = await grpc_api.admin.UpdateEvent(
        pb.UpdateEventRequest(event=pb.Event(event_id=later.event_id, starts_at=ts(2031, 6, 5))),
        metadata=grpc_api.md(admin),
    )
    assert moved.event.location == "Garden"
    listed = await grpc_api.admin.ListEvents(pb.ListEventsRequest(), metadata=grpc_api.md(admin))
    assert [e.event_id for e in listed.events] == [later.event_id, sooner.event_id]
    assert await audit_actions(grpc_api.sessions, workspace_id) == [
        "workspace.create",
        "event.create",
        "event.create",
        "event.update",
        "event.update",
    ]
    details = await scalar(
        grpc_api.sessions,
        "SELECT details FROM audit_entry WHERE action = 'event.update' ORDER BY id LIMIT 1",
    )
    assert details == {"location": {"from": "Town Hall", "to": "Garden"}}


async def test_event_requests_are_validated(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    error = await rpc_error(
        grpc_api.admin.CreateEvent(pb.CreateEventRequest(name=" "), metadata=grpc_api.md(admin)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert {v.split(":")[0] for v in field_violations(error)} == {"name", "starts_at"}
    await rpc_error(
        grpc_api.admin.UpdateEvent(
            pb.UpdateEventRequest(event=pb.Event(event_id="x")), metadata=grpc_api.md(admin)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM event") == 0


async def test_unknown_and_foreign_events_are_not_found(grpc_api: ApiClient) -> None:
    mine = (await new_workspace(grpc_api)).admin.member_id
    theirs = (await new_workspace(grpc_api, name="Other")).admin.member_id
    foreign = await _event(grpc_api, theirs)
    for event_id in (foreign.event_id, str(uuid.uuid4())):
        await rpc_error(
            grpc_api.admin.UpdateEvent(
                pb.UpdateEventRequest(event=pb.Event(event_id=event_id, name="Mine now")),
                metadata=grpc_api.md(mine),
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        await rpc_error(
            grpc_api.admin.GetEventAudience(
                pb.GetEventAudienceRequest(event_id=event_id), metadata=grpc_api.md(mine)
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        await rpc_error(
            grpc_api.admin.SetEventAudience(
                pb.SetEventAudienceRequest(
                    event_id=event_id, audience=pb.Audience(mode=pb.AUDIENCE_MODE_ALL)
                ),
                metadata=grpc_api.md(mine),
            ),
            grpc.StatusCode.NOT_FOUND,
        )
    listed = await grpc_api.admin.ListEvents(pb.ListEventsRequest(), metadata=grpc_api.md(mine))
    assert list(listed.events) == []
    assert await scalar(grpc_api.sessions, "SELECT name FROM event") == "Wedding"


async def test_viewers_read_but_never_write_events(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    viewer = await new_member(grpc_api, admin, VIEWER)
    event = await _event(grpc_api, admin)
    await rpc_error(
        grpc_api.admin.CreateEvent(
            pb.CreateEventRequest(name="X", starts_at=ts(2031, 1, 1)), metadata=grpc_api.md(viewer)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await rpc_error(
        grpc_api.admin.SetEventAudience(
            pb.SetEventAudienceRequest(
                event_id=event.event_id, audience=pb.Audience(mode=pb.AUDIENCE_MODE_ALL)
            ),
            metadata=grpc_api.md(viewer),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    listed = await grpc_api.admin.ListEvents(pb.ListEventsRequest(), metadata=grpc_api.md(viewer))
    assert len(listed.events) == 1


async def test_audiences_by_mode_with_overrides(grpc_api: ApiClient) -> None:
    created = await new_workspace(grpc_api)
    admin = created.admin.member_id
    units = await _households(grpc_api, admin)
    event = await _event(grpc_api, admin)

    async def set_audience(audience: pb.Audience) -> pb.SetEventAudienceResponse:
        reply: pb.SetEventAudienceResponse = await grpc_api.admin.SetEventAudience(
            pb.SetEventAudienceRequest(event_id=event.event_id, audience=audience),
            metadata=grpc_api.md(admin),
        )
        return reply

    assert (
        await set_audience(pb.Audience(mode=pb.AUDIENCE_MODE_ALL))
    ).resolved_guest_unit_count == 4
    tags = await set_audience(pb.Audience(mode=pb.AUDIENCE_MODE_TAGS, tags=["Family "]))
    assert (list(tags.audience.tags), tags.resolved_guest_unit_count) == (["family"], 2)
    sides = await set_audience(
        pb.Audience(
            mode=pb.AUDIENCE_MODE_SIDES,
            sides=["groom"],
            include_guest_unit_ids=[units["Dunn"]],
            exclude_guest_unit_ids=[units["Carter"]],
        )
    )
    assert sides.resolved_guest_unit_count == 2  # Baker, plus Dunn; Carter excluded
    explicit = await set_audience(
        pb.Audience(
            mode=pb.AUDIENCE_MODE_EXPLICIT,
            guest_unit_ids=[units["Adams"], units["Baker"]],
            include_guest_unit_ids=[units["Baker"]],
            exclude_guest_unit_ids=[units["Baker"]],  # exclusion wins
        )
    )
    assert explicit.resolved_guest_unit_count == 1
    got = await grpc_api.admin.GetEventAudience(
        pb.GetEventAudienceRequest(event_id=event.event_id), metadata=grpc_api.md(admin)
    )
    assert got.audience == explicit.audience
    assert got.resolved_guest_unit_count == 1
    assert (await audit_actions(grpc_api.sessions, created.workspace.workspace_id)).count(
        "audience.set"
    ) == 4
    stored = await rows(grpc_api.sessions, "SELECT kind FROM event_audience_override ORDER BY kind")
    assert [r.kind for r in stored] == ["exclude", "include", "member", "member"]


async def test_an_event_without_audience_reads_as_unset(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    event = await _event(grpc_api, admin)
    got = await grpc_api.admin.GetEventAudience(
        pb.GetEventAudienceRequest(event_id=event.event_id), metadata=grpc_api.md(admin)
    )
    assert (got.audience.mode, got.resolved_guest_unit_count) == (pb.AUDIENCE_MODE_UNSPECIFIED, 0)


async def test_bad_audiences_name_their_fields_and_change_nothing(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    theirs = (await new_workspace(grpc_api, name="Other")).admin.member_id
    foreign = (await _households(grpc_api, theirs))["Adams"]
    mine = (await _households(grpc_api, admin))["Adams"]
    event = await _event(grpc_api, admin)
    await grpc_api.admin.SetEventAudience(
        pb.SetEventAudienceRequest(
            event_id=event.event_id, audience=pb.Audience(mode=pb.AUDIENCE_MODE_ALL)
        ),
        metadata=grpc_api.md(admin),
    )
    cases = [
        (pb.Audience(), {"audience.mode: is required"}),
        (
            pb.Audience(mode=pb.AUDIENCE_MODE_TAGS, sides=["bride"]),
            {
                "audience.tags: mode tags needs at least one tag",
                "audience.sides: only for mode sides",
            },
        ),
        (
            pb.Audience(mode=pb.AUDIENCE_MODE_EXPLICIT, guest_unit_ids=["nope"]),
            {"audience.guest_unit_ids[0]: is not a valid id"},
        ),
        (
            pb.Audience(
                mode=pb.AUDIENCE_MODE_EXPLICIT,
                guest_unit_ids=[mine],
                exclude_guest_unit_ids=[mine, foreign],
            ),
            {f"audience.exclude_guest_unit_ids[1]: no household {foreign} in this workspace"},
        ),
        (
            pb.Audience(mode=99),  # type: ignore[arg-type]
            {"audience.mode: unknown value 99"},
        ),
    ]
    for audience, expected in cases:
        error = await rpc_error(
            grpc_api.admin.SetEventAudience(
                pb.SetEventAudienceRequest(event_id=event.event_id, audience=audience),
                metadata=grpc_api.md(admin),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert set(field_violations(error)) == expected
    assert await scalar(grpc_api.sessions, "SELECT mode FROM event_audience") == "all"
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM event_audience_override") == 0
