"""PrecheckSend on real Postgres: reasons persisted in audience order, counts, roles, scoping."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import RejectionReason
from dispatch_service.errors import InvalidArgument, NotFound, PermissionDenied
from dispatch_service.use_cases.precheck import precheck_command, precheck_send
from tests.integration.dispatch_support import precheck_and_start, seed_world
from tests.integration.factories import Seeder

A, B, C, D = "+14155550100", "+14155550101", "+14155550102", "+14155550103"


async def test_every_reason_is_persisted_per_candidate_in_audience_order(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A, None, A, B])
    with Seeder(database_url) as seed:
        seed.households(world.workspace_id, ["+14155550199"], malformed=[0])
        seed.households(world.workspace_id, [C], active=False)
        seed.do_not_message(world.workspace_id, B)
    command = precheck_command(world.admin, str(world.event_id), str(world.template_id), 2, [])
    result = await precheck_send(sessions, command, ttl_seconds=600)

    assert (result.total_count, result.eligible_count, result.blocked_count) == (6, 1, 5)
    assert result.blocked_by_reason == {
        RejectionReason.DO_NOT_MESSAGE: 1,
        RejectionReason.DUPLICATE_TARGET: 1,
        RejectionReason.GUEST_INACTIVE: 1,
        RejectionReason.INVALID_PHONE: 1,
        RejectionReason.NO_PHONE: 1,
    }
    assert len(result.first_page) == 2
    with Seeder(database_url) as seed:
        stored = seed.rows(
            "SELECT position, phone_e164, eligible, rejection_reason FROM precheck_candidate"
            " WHERE precheck_id = %s ORDER BY position",
            result.precheck_id,
        )
        header = seed.rows(
            "SELECT total_count, eligible_count, blocked_count, audience_hash FROM precheck"
            " WHERE id = %s",
            result.precheck_id,
        )
    assert [(p, r) for p, _, _, r in stored] == [
        (0, None),
        (1, "no_phone"),
        (2, "duplicate_target"),
        (3, "do_not_message"),
        (4, "invalid_phone"),
        (5, "guest_inactive"),
    ]
    assert header == [(6, 1, 5, result.audience_hash)]


async def test_phones_invited_for_the_event_are_blocked_unless_resent(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A, B])
    await precheck_and_start(sessions, world)

    again = precheck_command(world.admin, str(world.event_id), str(world.template_id), 0, [])
    blocked = await precheck_send(sessions, again, ttl_seconds=600)
    assert blocked.blocked_by_reason == {RejectionReason.ALREADY_INVITED: 2}

    resend = precheck_command(world.admin, str(world.event_id), str(world.template_id), 0, [B])
    partial = await precheck_send(sessions, resend, ttl_seconds=600)
    assert partial.eligible_count == 1
    assert [c.target.phone_e164 for c in partial.first_page if c.eligible] == [B]


async def test_failed_invitations_do_not_count_as_invited(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A, B])
    await precheck_and_start(sessions, world)
    with Seeder(database_url) as seed:
        seed.conn.execute("UPDATE invite_message SET state = 'failed' WHERE phone_e164 = %s", (A,))
    command = precheck_command(world.admin, str(world.event_id), str(world.template_id), 0, [])
    result = await precheck_send(sessions, command, ttl_seconds=600)
    assert result.eligible_count == 1
    assert result.blocked_by_reason == {RejectionReason.ALREADY_INVITED: 1}


async def test_a_viewer_may_not_precheck_and_nothing_is_stored(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A])
    command = precheck_command(world.viewer, str(world.event_id), str(world.template_id), 0, [])
    with pytest.raises(PermissionDenied):
        await precheck_send(sessions, command, ttl_seconds=600)
    with Seeder(database_url) as seed:
        assert seed.scalar("SELECT count(*) FROM precheck") == 0


async def test_other_workspaces_events_and_templates_are_not_found(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [A])
    other = seed_world(database_url, [B])
    for event, template in [
        (other.event_id, world.template_id),
        (world.event_id, other.template_id),
        (uuid.uuid4(), world.template_id),
    ]:
        command = precheck_command(world.admin, str(event), str(template), 0, [])
        with pytest.raises(NotFound):
            await precheck_send(sessions, command, ttl_seconds=600)


def test_bad_input_names_every_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        precheck_command(uuid.uuid4(), "nope", "", 501, ["0044 20 7946 0958"])
    assert {v.field for v in caught.value.violations} == {
        "event_id",
        "template_id",
        "page_size",
        "resend_phones",
    }
