"""PrecheckSend's SQL eligibility equals the pure rules (domain/eligibility.py), on generated
audiences that hit every reason: shared phones, inactive households and contacts, households
without a contact, malformed and missing phones, active and removed do-not-message entries,
invitations in every state, resend lists, names that sort differently by locale, and household
languages that do and do not fit the template's approved translations (domain/languages.py)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import MessageState, RejectionReason
from dispatch_service.domain.eligibility import (
    PRECHECK_REASONS,
    PolicyInputs,
    audience_hash,
    blocked_by_reason,
    evaluate_audience,
)
from dispatch_service.domain.languages import LanguagePolicy, resolve
from dispatch_service.persistence.audience import resolve_audience
from dispatch_service.use_cases.precheck import precheck_command, precheck_send
from tests.integration.dispatch_support import World, precheck_and_start
from tests.integration.factories import Seeder

LANGUAGES = (None, "en_US", "en", "es", "es_MX", "pt", "pt_BR", "fr", "fr", "de_DE", "de_DE", "")
TRANSLATIONS = {"en_US": "APPROVED", "es": "APPROVED", "pt_BR": "APPROVED", "fr": "PENDING"}
NAMES = ("Adams", "adams", "Émile", "Zoë", "zoe", "Ørsted", "Baker", "baker", "ß", "Ab", "a b")
SEEDS = range(4)
STATES_AFTER_START = [s.value for s in MessageState if s is not MessageState.BLOCKED]


def _generated_world(database_url: str, rng: random.Random) -> tuple[World, list[str]]:
    """A workspace whose audience (all households) mixes every case; its phone pool."""
    pool = [f"+1415555{n:04d}" for n in rng.sample(range(10_000), 30)]
    with Seeder(database_url) as seed:
        ws = seed.workspace()
        world = World(
            workspace_id=ws,
            parent_admin=seed.member(ws, "parent_admin"),
            admin=seed.member(ws, "admin"),
            viewer=seed.member(ws, "viewer"),
            event_id=seed.event(ws),
            template_id=seed.template(ws),
        )
        for language, status in TRANSLATIONS.items():
            if language != "en_US":
                seed.template(ws, language=language, status=status)
        identities: set[str] = set()
        for number in range(120):
            contact = None
            if rng.random() > 0.05:
                kind = rng.choices(["valid", "malformed", "missing"], [8, 1, 1])[0]
                phone = rng.choice(pool) if kind == "valid" else None
                contact = seed.insert(
                    "person",
                    workspace_id=ws,
                    display_name=f"Guest {number}",
                    raw_phone=phone or ("12-ab" if kind == "malformed" else ""),
                    phone_status=kind,
                    phone_e164=phone,
                    active=rng.random() > 0.1,
                )
                if phone and phone not in identities:
                    identities.add(phone)
                    seed.insert(
                        "guest_identity", workspace_id=ws, phone_e164=phone, person_id=contact
                    )
            unit = seed.insert(
                "guest_unit",
                workspace_id=ws,
                name=_household_name(rng, number),
                contact_person_id=contact,
                active=rng.random() > 0.1,
                preferred_language=rng.choice(LANGUAGES),
            )
            if contact is not None:
                seed.insert(
                    "guest_unit_membership", workspace_id=ws, guest_unit_id=unit, person_id=contact
                )
        seed.audience_all(world.event_id, ws)
    return world, pool


def _household_name(rng: random.Random, number: int) -> str:
    """Unique per workspace; names that differ only by case, accents or trailing spaces, whose
    order depends on byte order (not the database locale)."""
    if rng.random() < 0.3:
        return "Same" + " " * (number % 7) + ("!" if number % 2 else "") + f"{number:03d}"
    return f"{rng.choice(NAMES)} {number}"


async def _policy_inputs(
    session: AsyncSession, world: World, resend: list[str], fallback: str | None
) -> PolicyInputs:
    """The facts the pure rules need, read independently of the production SQL."""
    dnm = await session.scalars(
        text(
            "SELECT phone_e164 FROM do_not_message_entry"
            " WHERE workspace_id = :ws AND removed_at IS NULL"
        ),
        {"ws": world.workspace_id},
    )
    invited = await session.scalars(
        text(
            "SELECT phone_e164 FROM invite_message WHERE event_id = :event"
            " AND phone_e164 IS NOT NULL"
            " AND state IN ('queued', 'sending', 'sent', 'delivered', 'read')"
        ),
        {"event": world.event_id},
    )
    approved = frozenset(lang for lang, status in TRANSLATIONS.items() if status == "APPROVED")
    languages = LanguagePolicy(approved, fallback, "en_US")
    return PolicyInputs(frozenset(dnm), frozenset(invited), frozenset(resend), languages)


@pytest.mark.parametrize("seed", SEEDS)
async def test_the_sql_precheck_equals_the_pure_rules(
    database_url: str, sessions: async_sessionmaker[AsyncSession], seed: int
) -> None:
    rng = random.Random(seed)
    world, pool = _generated_world(database_url, rng)
    # Invitations for the event: a real run, then its messages moved to random states.
    await precheck_and_start(sessions, world)
    with Seeder(database_url) as seeder:
        messages = seeder.rows(
            "SELECT id FROM invite_message WHERE event_id = %s AND state = 'queued'",
            world.event_id,
        )
        for (message_id,) in messages:
            seeder.conn.execute(
                "UPDATE invite_message SET state = %s WHERE id = %s",
                (rng.choice(STATES_AFTER_START), message_id),
            )
        blocked = rng.sample(pool, 5)
        for phone in blocked[:4]:
            seeder.do_not_message(world.workspace_id, phone)
        removed = seeder.do_not_message(world.workspace_id, blocked[4])
        seeder.conn.execute(
            "UPDATE do_not_message_entry SET removed_at = now() WHERE id = %s", (removed,)
        )
    resend = rng.sample(pool, 3)
    page_size = rng.choice([1, 7, 50, 500])
    fallback = {0: None, 1: "en_US", 2: "es", 3: None}[seed]  # None: blocked, not sent in one

    command = precheck_command(
        world.admin,
        str(world.event_id),
        str(world.template_id),
        page_size,
        resend,
        fallback or ("" if seed == 1 else "none"),
    )
    result = await precheck_send(sessions, command, ttl_seconds=600)

    async with sessions() as session:
        targets = await resolve_audience(session, world.workspace_id, world.event_id)
        inputs = await _policy_inputs(session, world, resend, fallback)
        expected = evaluate_audience(targets, inputs)
    with Seeder(database_url) as seeder:
        stored = seeder.rows(
            "SELECT position, guest_unit_id, person_id, display_name, guest_unit_name,"
            " phone_e164, eligible, rejection_reason, language FROM precheck_candidate"
            " WHERE precheck_id = %s ORDER BY position",
            result.precheck_id,
        )
        header = seeder.rows(
            "SELECT total_count, eligible_count, blocked_count, audience_hash FROM precheck"
            " WHERE id = %s",
            result.precheck_id,
        )
    assert stored == [
        (
            c.position,
            c.target.guest_unit_id,
            c.target.person_id,
            c.target.display_name,
            c.target.guest_unit_name,
            c.target.phone_e164,
            c.eligible,
            c.reason.value if c.reason else None,
            resolve(c.target.preferred_language, inputs.languages)
            if c.eligible and inputs.languages
            else None,
        )
        for c in expected
    ]
    assert result.by_language == dict(
        sorted(Counter(language for *_, language in stored if language).items())
    )
    eligible = sum(1 for c in expected if c.eligible)
    assert (result.total_count, result.eligible_count) == (len(expected), eligible)
    assert result.blocked_by_reason == blocked_by_reason(expected)
    assert result.audience_hash == audience_hash(expected)
    assert header == [(len(expected), eligible, len(expected) - eligible, result.audience_hash)]
    assert result.first_page == expected[:page_size]
    # The generated audience is worth comparing: every reason a precheck gives, and eligibles.
    # (no_approved_translation comes last, after already_invited, which most households of a
    # generated world reach first: tests/integration/test_guest_languages.py covers it.)
    given = set(result.blocked_by_reason) | {RejectionReason.NO_APPROVED_TRANSLATION}
    assert given == set(PRECHECK_REASONS)
    if fallback is not None:  # with a fallback, every language fits
        assert RejectionReason.NO_APPROVED_TRANSLATION not in result.blocked_by_reason
    assert eligible > 0


async def test_an_empty_audience_has_the_hash_of_nothing(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    with Seeder(database_url) as seed:
        ws = seed.workspace()
        admin = seed.member(ws, "admin")
        event = seed.event(ws)
        template = seed.template(ws)
        seed.audience_all(event, ws)
    command = precheck_command(admin, str(event), str(template), 0, [])
    result = await precheck_send(sessions, command, ttl_seconds=600)
    assert (result.total_count, result.eligible_count, result.first_page) == (0, 0, [])
    assert result.blocked_by_reason == {}
    assert result.audience_hash == audience_hash([])
