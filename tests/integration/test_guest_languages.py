"""Each guest's language: a household's preferred language picks the template translation it is
sent in (domain/languages.py), PrecheckSend counts recipients per translation, and a precheck
without a fallback blocks those no approved translation fits."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import RejectionReason
from dispatch_service.errors import InvalidArgument
from dispatch_service.use_cases.precheck import PrecheckResult, precheck_command, precheck_send
from dispatch_service.use_cases.runs import start_run, start_run_command
from tests.integration.dispatch_support import (
    FakeMeta,
    World,
    precheck_and_start,
    running,
    seed_world,
    wait_for,
)
from tests.integration.factories import Seeder

SPANISH_MEXICO, FRENCH, NONE, PORTUGUESE = (f"+1415555{n:04d}" for n in range(4))


def _languages_world(database_url: str) -> World:
    """Four households preferring es_MX, fr, nothing and pt; the template approved in en_US
    and es, pending in fr."""
    world = seed_world(database_url, [SPANISH_MEXICO, FRENCH, NONE, PORTUGUESE])
    with Seeder(database_url) as seed:
        seed.template(world.workspace_id, language="es")
        seed.template(world.workspace_id, language="fr", status="PENDING")
        for phone, language in (
            (SPANISH_MEXICO, "es_MX"),
            (FRENCH, "fr"),
            (PORTUGUESE, "pt"),
        ):
            seed.conn.execute(
                "UPDATE guest_unit SET preferred_language = %s WHERE contact_person_id ="
                " (SELECT id FROM person WHERE phone_e164 = %s AND workspace_id = %s)",
                (language, phone, world.workspace_id),
            )
    return world


async def test_each_guest_gets_the_translation_that_fits_and_the_rest_the_runs(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = _languages_world(database_url)
    started = await precheck_and_start(sessions, world)
    fake = FakeMeta()
    async with running(sessions, fake):
        await wait_for(lambda: len(fake.sends) == 4, what="four sends")
    sent_in = {"+" + body["to"]: body["template"]["language"]["code"] for _, body in fake.sends}
    assert sent_in == {
        SPANISH_MEXICO: "es",  # its base language, approved
        FRENCH: "en_US",  # fr is only pending: the run's language
        NONE: "en_US",
        PORTUGUESE: "en_US",
    }
    with Seeder(database_url) as seed:
        stored = {
            phone: (language, variables[1])
            for phone, language, variables in seed.rows(
                "SELECT phone_e164, language, variables FROM invite_message WHERE run_id = %s",
                started.run.id,
            )
        }
    # the event's date in each message's language (the event starts 2030-06-01 17:30 UTC)
    assert stored[SPANISH_MEXICO] == ("es", "sáb 1 jun 2030, 17:30")
    assert stored[FRENCH] == ("en_US", "Sat 1 Jun 2030, 17:30")


async def test_the_precheck_counts_recipients_per_translation_and_blocks_without_fallback(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = _languages_world(database_url)

    async def precheck(fallback: str) -> PrecheckResult:
        command = precheck_command(
            world.admin, str(world.event_id), str(world.template_id), 0, [], fallback
        )
        return await precheck_send(sessions, command, ttl_seconds=600)

    default = await precheck(fallback="")
    assert default.by_language == {"en_US": 3, "es": 1}
    spanish = await precheck(fallback="es")
    assert spanish.by_language == {"en_US": 1, "es": 3}  # no preference: the run's

    strict = await precheck(fallback="none")
    assert strict.by_language == {"en_US": 1, "es": 1}
    assert strict.blocked_by_reason == {
        RejectionReason.NO_APPROVED_TRANSLATION: 2  # fr (pending) and pt
    }
    run = await start_run(
        sessions,
        start_run_command(world.parent_admin, str(strict.precheck_id), "strict"),
    )
    fake = FakeMeta()
    async with running(sessions, fake):
        await wait_for(lambda: len(fake.sends) == 2, what="two sends")
    assert sorted("+" + body["to"] for _, body in fake.sends) == sorted([SPANISH_MEXICO, NONE])
    with Seeder(database_url) as seed:
        blocked = seed.rows(
            "SELECT phone_e164 FROM invite_message WHERE run_id = %s AND state = 'blocked'"
            " AND rejection_reason = 'no_approved_translation' ORDER BY phone_e164",
            run.run.id,
        )
    assert blocked == [(p,) for p in sorted([FRENCH, PORTUGUESE])]

    with pytest.raises(InvalidArgument, match="fallback_language"):
        await precheck(fallback="fr")  # not approved
