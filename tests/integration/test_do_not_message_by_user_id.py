"""Do-Not-Message by Meta's business-scoped user id (people known by phone, user id, or both).

A user-id-only opt-out blocks the guest whose identity carries that user id; one from a user id
nobody knows yet is kept, and blocks the guest as soon as a status pairs the user id with the
guest's phone. Prechecks (and the dispatcher, which reads the same entries) check phones.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import RejectionReason
from dispatch_service.domain.identities import ProviderContact
from dispatch_service.domain.lifecycle import ProviderError, ProviderStatus, StatusUpdate
from dispatch_service.domain.stop_keywords import InboundText, PreferenceUpdate
from dispatch_service.use_cases.apply_status import ApplyStatusCommand, apply_status
from dispatch_service.use_cases.do_not_message import remove_do_not_message
from dispatch_service.use_cases.precheck import precheck_command, precheck_send
from dispatch_service.use_cases.workspaces import NewWorkspace, create_workspace
from tests.integration.dispatch_support import World, seed_world
from tests.integration.factories import DEFAULT_SENDER

T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
PHONES = ["+14155550101", "+14155550102", "+14155550103"]


async def blocked_by_dnm(sessions: async_sessionmaker[AsyncSession], world: World) -> int:
    command = precheck_command(world.admin, str(world.event_id), str(world.template_id), 0, [])
    result = await precheck_send(sessions, command, ttl_seconds=3600)
    return result.blocked_by_reason.get(RejectionReason.DO_NOT_MESSAGE, 0)


def entries(
    database_url: str, workspace_id: object = None
) -> list[tuple[str | None, str | None, str]]:
    """Active entries (phone, user id, source), of one workspace or of all."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT phone_e164, provider_user_id, source FROM do_not_message_entry"
            " WHERE removed_at IS NULL AND (%(ws)s::uuid IS NULL OR workspace_id = %(ws)s)"
            " ORDER BY 2, 1",
            {"ws": workspace_id},
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def delivered(wamid: str, phone: str, user_id: str) -> StatusUpdate:
    """A status pairing a phone with its user id (Meta's contacts block)."""
    return StatusUpdate(
        wamid,
        ProviderStatus("delivered", T0),
        DEFAULT_SENDER,
        phone.lstrip("+"),
        contacts=(ProviderContact(wa_id=phone.lstrip("+"), user_id=user_id),),
    )


async def test_a_user_id_only_stop_blocks_the_guest_once_the_user_id_is_paired_with_the_phone(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES)
    stop = InboundText(DEFAULT_SENDER, "", "STOP", T0, from_user_id="US.1001")
    added = await apply_status(ApplyStatusCommand(inbound_texts=[stop]), sessions)
    assert added.do_not_message_added == 1
    assert entries(database_url) == [(None, "US.1001", "inbound_stop_keyword")]
    assert await blocked_by_dnm(sessions, world) == 0  # nobody is known by that user id yet

    await apply_status(
        ApplyStatusCommand(statuses=[delivered("wamid.A", PHONES[0], "US.1001")]), sessions
    )
    assert entries(database_url) == [(PHONES[0], "US.1001", "inbound_stop_keyword")]
    assert await blocked_by_dnm(sessions, world) == 1


async def test_user_id_only_opt_outs_of_a_known_user_id_block_the_phone_at_once(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES)
    await apply_status(
        ApplyStatusCommand(
            statuses=[
                delivered("wamid.B", PHONES[1], "US.2002"),
                delivered("wamid.C", PHONES[2], "US.3003"),
            ]
        ),
        sessions,
    )
    preference = PreferenceUpdate(
        DEFAULT_SENDER, "", "marketing_messages", "stop", T0, user_id="US.2002"
    )
    opted_out = StatusUpdate(
        "wamid.D",
        ProviderStatus("failed", T0, (ProviderError(131050, "stopped"),)),
        DEFAULT_SENDER,
        recipient_user_id="US.3003",
    )
    result = await apply_status(
        ApplyStatusCommand(statuses=[opted_out], preferences=[preference]), sessions
    )
    assert result.do_not_message_added == 2
    assert entries(database_url) == [
        (PHONES[1], "US.2002", "user_preferences_stop"),
        (PHONES[2], "US.3003", "provider_error_131050"),
    ]
    assert await blocked_by_dnm(sessions, world) == 2
    # The same person by phone later adds nothing: they are blocked already.
    again = InboundText(DEFAULT_SENDER, PHONES[1].lstrip("+"), "stop", T0)
    assert (
        await apply_status(ApplyStatusCommand(inbound_texts=[again]), sessions)
    ).do_not_message_added == 0


async def test_a_user_id_reported_for_two_phones_is_kept_by_the_first_only(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    seed_world(database_url, PHONES)
    await apply_status(
        ApplyStatusCommand(
            statuses=[
                delivered("wamid.E", PHONES[0], "US.4004"),
                delivered("wamid.F", PHONES[1], "US.4004"),
            ]
        ),
        sessions,
    )
    with psycopg.connect(database_url) as conn:
        owners = conn.execute(
            "SELECT phone_e164 FROM guest_identity WHERE provider_user_id = 'US.4004'"
        ).fetchall()
    assert len(owners) == 1  # one user id names one WhatsApp account; nothing failed


async def test_an_opt_out_naming_a_phone_gives_it_to_the_user_ids_entry_without_one(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # A username user replies STOP (user id only, nobody knows the phone yet); later the same
    # person stops marketing messages, and Meta names phone and user id together. That second
    # opt-out was dropped (the user id had an entry) and the phone stayed inviteable.
    phone = PHONES[0]
    world = seed_world(database_url, [phone])
    stop = InboundText(DEFAULT_SENDER, "", "STOP", T0, from_user_id="US.1001")
    await apply_status(ApplyStatusCommand(inbound_texts=[stop]), sessions)
    assert entries(database_url) == [(None, "US.1001", "inbound_stop_keyword")]
    pref = PreferenceUpdate(
        DEFAULT_SENDER, phone.lstrip("+"), "marketing_messages", "stop", T0, user_id="US.1001"
    )
    await apply_status(ApplyStatusCommand(preferences=[pref]), sessions)
    assert entries(database_url) == [(phone, "US.1001", "inbound_stop_keyword")]
    assert await blocked_by_dnm(sessions, world) == 1


async def test_a_workspace_that_starts_sending_from_a_number_inherits_its_opt_outs(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Opt-outs reported to a sender number apply in every workspace sending from it; they were
    # copied to those that existed then, so a workspace created later on the same number (every
    # Meta workspace sends from the service's own number by default) invited the person.
    first = seed_world(database_url, PHONES[:1])
    stops = [
        InboundText(DEFAULT_SENDER, PHONES[0].lstrip("+"), "STOP", T0),
        InboundText(DEFAULT_SENDER, "", "STOP", T0, from_user_id="US.2002"),
    ]
    await apply_status(ApplyStatusCommand(inbound_texts=stops), sessions)
    workspace, _ = await create_workspace(
        sessions,
        NewWorkspace("Second organiser", "US", DEFAULT_SENDER, "Second admin"),
    )
    inherited = entries(database_url, workspace.id)
    with psycopg.connect(database_url) as conn:
        audited = conn.execute(
            "SELECT count(*) FROM audit_entry WHERE workspace_id = %s AND action = 'dnm.add'",
            [workspace.id],
        ).fetchone()
    assert inherited == [
        (None, "US.2002", "inbound_stop_keyword"),
        (PHONES[0], None, "inbound_stop_keyword"),
    ]
    assert audited == (2,)
    assert len(entries(database_url)) == 4  # the first workspace's two, unchanged
    assert await blocked_by_dnm(sessions, first) == 1


async def test_a_stop_from_a_mexican_whatsapp_id_blocks_the_guest_imported_with_the_new_plan(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # WhatsApp ids of Mexican mobiles keep the "1" Mexico dropped (521 + ten digits); the guest
    # is stored as E.164 without it. The entry went to a phone no guest has.
    phone = "+525512345678"
    world = seed_world(database_url, [phone])
    stop = InboundText(DEFAULT_SENDER, "5215512345678", "STOP", T0)
    await apply_status(ApplyStatusCommand(inbound_texts=[stop]), sessions)
    assert entries(database_url) == [(phone, None, "inbound_stop_keyword")]
    assert await blocked_by_dnm(sessions, world) == 1


async def test_a_new_workspace_inherits_opt_outs_without_undoing_another_workspaces_removal(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # The inheritance applies the number's opt-outs to the new workspace alone: an operator of
    # another workspace on the number who removed an entry (re-consent) keeps it removed.
    first = seed_world(database_url, PHONES[:1])
    stop = InboundText(DEFAULT_SENDER, PHONES[0].lstrip("+"), "STOP", T0)
    second, _ = await create_workspace(
        sessions, NewWorkspace("Second organiser", "US", DEFAULT_SENDER, "Second admin")
    )
    await apply_status(ApplyStatusCommand(inbound_texts=[stop]), sessions)
    await remove_do_not_message(sessions, first.parent_admin, PHONES[0], "re-consented by phone")
    third, _ = await create_workspace(
        sessions, NewWorkspace("Third organiser", "US", DEFAULT_SENDER, "Third admin")
    )
    assert active_in(database_url, first.workspace_id) == []
    assert active_in(database_url, second.id) == [(PHONES[0], None)]
    assert active_in(database_url, third.id) == [(PHONES[0], None)]


async def test_one_batch_naming_a_phone_alone_and_with_a_known_user_id_blocks_it_once(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # The completion of the user id's entry and the phone-only opt-out both claimed the phone
    # in one statement: a unique violation failed the whole ApplyStatus batch.
    world = seed_world(database_url, PHONES[:1])
    first = InboundText(DEFAULT_SENDER, "", "STOP", T0, from_user_id="US.3003")
    await apply_status(ApplyStatusCommand(inbound_texts=[first]), sessions)
    phone = PHONES[0].lstrip("+")
    both = [
        InboundText(DEFAULT_SENDER, phone, "STOP", T0),
        InboundText(DEFAULT_SENDER, phone, "STOP", T0, from_user_id="US.3003"),
    ]
    await apply_status(ApplyStatusCommand(inbound_texts=both), sessions)
    assert active_in(database_url, world.workspace_id) == [(PHONES[0], "US.3003")]


def active_in(database_url: str, workspace_id: object) -> list[tuple[str | None, str | None]]:
    return [(phone, user_id) for phone, user_id, _ in entries(database_url, workspace_id)]
