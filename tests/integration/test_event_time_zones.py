"""Events where and when: an IANA time zone, an address and coordinates, validated; a run's
event_date / event_time values are written in the event's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.generated.invites.v1 import admin_pb2 as pb
from tests.integration.admin_support import field_violations, new_workspace, rpc_error
from tests.integration.conftest import ApiClient
from tests.integration.dispatch_support import precheck_and_start, seed_world


def starts(hour: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2031, 6, 1, hour, 30, tzinfo=UTC))
    return stamp


async def test_an_event_keeps_its_time_zone_address_and_coordinates(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    created = await grpc_api.admin.CreateEvent(
        pb.CreateEventRequest(
            name="Garden party",
            starts_at=starts(17),
            location="Rose Garden",
            time_zone="Europe/Lisbon",
            address="Rua das Flores 1, Lisboa",
            latitude=38.7223,
            longitude=-9.1393,
        ),
        metadata=grpc_api.md(admin),
    )
    event = created.event
    assert (event.time_zone, event.address) == ("Europe/Lisbon", "Rua das Flores 1, Lisboa")
    assert (event.latitude, event.longitude) == (38.7223, -9.1393)

    moved = await grpc_api.admin.UpdateEvent(
        pb.UpdateEventRequest(event=pb.Event(event_id=event.event_id, time_zone="Asia/Tokyo")),
        metadata=grpc_api.md(admin),
    )
    assert moved.event.time_zone == "Asia/Tokyo"
    assert moved.event.address == "Rua das Flores 1, Lisboa"  # omitted fields are kept

    plain = await grpc_api.admin.CreateEvent(
        pb.CreateEventRequest(name="Plain", starts_at=starts(17)), metadata=grpc_api.md(admin)
    )
    assert plain.event.time_zone == "UTC"
    assert not plain.event.HasField("latitude")


async def test_bad_places_name_their_fields(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    error = await rpc_error(
        grpc_api.admin.CreateEvent(
            pb.CreateEventRequest(
                name="X",
                starts_at=starts(17),
                time_zone="Mars/Olympus_Mons",
                latitude=91.0,
                longitude=200.0,
            ),
            metadata=grpc_api.md(admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert {v.split(":")[0] for v in field_violations(error)} == {
        "time_zone",
        "latitude",
        "longitude",
    }
    half = await rpc_error(
        grpc_api.admin.CreateEvent(
            pb.CreateEventRequest(name="X", starts_at=starts(17), latitude=1.0),
            metadata=grpc_api.md(admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "go together" in (half.details() or "")


async def test_a_run_writes_dates_in_the_events_time_zone(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(
        database_url, ["+14155550101"], variables=("guest_name", "event_date", "event_time")
    )
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "UPDATE event SET starts_at = '2031-06-01T23:30:00Z', time_zone = 'Asia/Tokyo'"
                " WHERE id = :id"
            ),
            {"id": world.event_id},
        )
    started = await precheck_and_start(sessions, world)
    async with sessions() as session:
        variables = await session.scalar(
            text("SELECT variables FROM invite_message WHERE run_id = :run"),
            {"run": started.run.id},
        )
    # 23:30 UTC on Sunday 1 June is 08:30 on Monday 2 June in Tokyo.
    assert variables[1:] == ["Mon 2 Jun 2031, 08:30", "08:30"]
