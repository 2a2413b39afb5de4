"""ApplyStatus on real Postgres: ranks, timestamps, duplicates, orphans, callback data, opt-outs."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import ApplyOutcome, SenderProvider
from dispatch_service.domain.lifecycle import ProviderError, ProviderStatus, StatusUpdate
from dispatch_service.domain.messaging_limit import LimitAnnouncement
from dispatch_service.domain.pricing import Pricing
from dispatch_service.domain.stop_keywords import InboundText, PreferenceUpdate
from dispatch_service.persistence.status import (
    WAMID_LOCK_CLASS,
    apply_orphaned_statuses,
    wamid_lock_key,
)
from dispatch_service.use_cases.apply_status import ApplyStatusCommand, apply_status
from tests.status_support import SENDER, SeededRun, seed_run, seed_workspace

T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
A = ApplyOutcome


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def update(
    wamid: str | None,
    status: str,
    seconds: int,
    *,
    errors: tuple[ProviderError, ...] = (),
    callback: str = "",
    sender: str = SENDER,
    recipient: str = "15550100000",
) -> StatusUpdate:
    return StatusUpdate(
        provider_message_id=wamid or "",
        report=ProviderStatus(status, at(seconds), errors),
        phone_number_id=sender,
        recipient_id=recipient,
        callback_data=callback,
    )


async def apply(
    sessions: async_sessionmaker[AsyncSession], *updates: StatusUpdate, **kwargs: Any
) -> list[ApplyOutcome]:
    result = await apply_status(ApplyStatusCommand(statuses=updates, **kwargs), sessions)
    return result.outcomes


def message(database_url: str, message_id: uuid.UUID) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        cursor = conn.execute(
            "SELECT state, sent_at, delivered_at, read_at, failed_at, error_code, error_title,"
            " error_details, rejection_reason, provider_message_id, wa_id"
            " FROM invite_message WHERE id = %s",
            [message_id],
        )
        names = [c.name for c in cursor.description or ()]
        row = cursor.fetchone()
        assert row is not None
        return dict(zip(names, row, strict=True))


def events(database_url: str, wamid: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, outcome FROM status_event WHERE provider_message_id = %s", [wamid]
        ).fetchall()
    return dict(rows)


def rows(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, list(params)).fetchall()


@pytest.fixture
def run(database_url: str) -> SeededRun:
    return seed_run(database_url, 4)


async def test_higher_ranks_advance_and_lower_ones_only_fill_timestamps(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    wamid, mid = run.wamids[0], run.message_ids[0]
    assert await apply(sessions, update(wamid, "read", 30)) == [A.APPLIED]
    assert await apply(sessions, update(wamid, "delivered", 10), update(wamid, "sent", 5)) == [
        A.STALE,
        A.STALE,
    ]
    row = message(database_url, mid)
    assert row["state"] == "read"
    # The provider's sent time replaces the dispatcher's accept time (2030-01-01 in the seed);
    # delivered is the real delivered time, not the read time it was first inferred from.
    assert (row["sent_at"], row["delivered_at"], row["read_at"]) == (at(5), at(10), at(30))
    assert events(database_url, wamid or "") == {
        "read": "applied",
        "delivered": "stale",
        "sent": "stale",
    }


async def test_a_batch_of_metas_and_twilios_statuses_applies_each_as_its_providers(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    # One call may carry both (the ingestor forwards receipts of both endpoints together): each
    # status is its provider's event and matches only its provider's message.
    sid, unknown = "SM" + "1" * 32, "SM" + "2" * 32
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invite_message SET provider = 'twilio', provider_message_id = %s WHERE id = %s",
            [sid, run.message_ids[1]],
        )
    twilio = SenderProvider.TWILIO
    outcomes = await apply(
        sessions,
        update(run.wamids[0], "delivered", 1),
        replace(update(sid, "read", 2), provider=twilio),
        replace(update(unknown, "delivered", 3), provider=twilio),
        update(sid, "delivered", 4),  # Meta's, naming a Twilio SID: no message of Meta's has it
        update(run.wamids[2], "read", 5),
    )
    assert outcomes == [A.APPLIED, A.APPLIED, A.ORPHANED, A.ORPHANED, A.APPLIED]
    states = [message(database_url, m)["state"] for m in run.message_ids[:3]]
    assert states == ["delivered", "read", "read"]
    recorded = rows(database_url, "SELECT provider, provider_message_id, status FROM status_event")
    assert sorted(recorded) == sorted(
        [
            ("meta", run.wamids[0], "delivered"),
            ("twilio", sid, "read"),
            ("twilio", unknown, "delivered"),
            ("meta", sid, "delivered"),
            ("meta", run.wamids[2], "read"),
        ]
    )
    # The Meta status naming the SID stays an orphan of no message, in this batch and the next.
    meta_on_sid = (
        "SELECT outcome, message_id FROM status_event"
        " WHERE provider = 'meta' AND provider_message_id = %s"
    )
    assert rows(database_url, meta_on_sid, sid) == [("orphaned", None)]
    assert await apply(sessions, replace(update(sid, "failed", 6), provider=twilio)) == [
        A.AFTER_TERMINAL
    ]
    assert rows(database_url, meta_on_sid, sid) == [("orphaned", None)]
    assert message(database_url, run.message_ids[1])["state"] == "read"


async def test_a_status_of_one_provider_never_moves_the_other_providers_message(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    # Held or fresh, in one batch or across two: a Meta `failed` naming a Twilio message's SID
    # (or carrying its id as callback data) is Meta's orphan; it neither fails the message nor
    # overtakes the Twilio status that came first.
    sid = "SM" + "3" * 32
    mid = run.message_ids[1]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invite_message SET provider = 'twilio', provider_message_id = %s WHERE id = %s",
            [sid, mid],
        )
    twilio = SenderProvider.TWILIO
    meta_failed = update(sid, "failed", 4, callback=str(mid))
    outcomes = await apply(sessions, replace(update(sid, "read", 2), provider=twilio), meta_failed)
    assert outcomes == [A.APPLIED, A.ORPHANED]
    assert await apply(sessions, replace(update(sid, "delivered", 1), provider=twilio)) == [A.STALE]
    assert message(database_url, mid)["state"] == "read"
    recorded = rows(database_url, "SELECT provider, status, outcome, message_id FROM status_event")
    assert sorted(recorded) == [
        ("meta", "failed", "orphaned", None),
        ("twilio", "delivered", "stale", mid),
        ("twilio", "read", "applied", mid),
    ]


async def test_a_mixed_batch_takes_its_message_locks_before_any_wamid_lock(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    # The dispatcher's write locks its batch's messages (any provider's, in id order), then
    # the wamids it stores. A batch of Meta's and Twilio's statuses does the same: while the
    # "dispatcher" below holds the Twilio message, the batch waits for it holding no wamid's
    # lock, so the dispatcher can take the lock of the wamid the batch's Meta status names.
    # (Meta's part first locking that wamid, then waiting for the Twilio message, was a
    # deadlock: Postgres broke it after a second by failing one of the two.)
    sid, unknown = "SM" + "4" * 32, "wamid.NOT-YET-STORED"
    twilio_message = run.message_ids[1]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE invite_message SET provider = 'twilio', provider_message_id = %s WHERE id = %s",
            [sid, twilio_message],
        )
    retries = REGISTRY.get_sample_value("invites_apply_status_retries_total") or 0.0
    async with await psycopg.AsyncConnection.connect(database_url) as dispatcher:
        await dispatcher.execute(
            "SELECT id FROM invite_message WHERE id = %s FOR UPDATE", [twilio_message]
        )
        batch = asyncio.create_task(
            apply(
                sessions,
                update(unknown, "delivered", 1),
                replace(update(sid, "read", 2), provider=SenderProvider.TWILIO),
            )
        )
        await asyncio.sleep(0.3)  # the batch waits for the Twilio message
        assert not batch.done()
        await dispatcher.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [WAMID_LOCK_CLASS, wamid_lock_key(unknown)]
        )
        await dispatcher.commit()
    assert await batch == [A.ORPHANED, A.APPLIED]
    assert message(database_url, twilio_message)["state"] == "read"
    # Applied at its first attempt: no deadlock was broken by failing it and running it again.
    assert (REGISTRY.get_sample_value("invites_apply_status_retries_total") or 0.0) == retries


async def test_read_without_delivered_fills_delivered_at(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    await apply(sessions, update(run.wamids[0], "sent", 1), update(run.wamids[0], "read", 9))
    row = message(database_url, run.message_ids[0])
    assert (row["state"], row["delivered_at"], row["read_at"]) == ("read", at(9), at(9))


async def test_the_same_status_twice_is_a_duplicate_and_never_a_second_transition(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    wamid = run.wamids[0]
    outcomes = await apply(sessions, update(wamid, "delivered", 3), update(wamid, "delivered", 4))
    assert outcomes == [A.APPLIED, A.DUPLICATE]
    assert await apply(sessions, update(wamid, "delivered", 5)) == [A.DUPLICATE]
    assert message(database_url, run.message_ids[0])["delivered_at"] == at(3)
    count = rows(
        database_url, "SELECT count(*) FROM status_event WHERE provider_message_id = %s", wamid
    )
    assert count == [(1,)]


async def test_failed_copies_the_error_and_is_terminal(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    wamid = run.wamids[0]
    error = ProviderError(131026, "Message undeliverable", "Message Undeliverable.")
    outcomes = await apply(
        sessions,
        update(wamid, "delivered", 2),
        update(wamid, "failed", 3, errors=(error,)),
        update(wamid, "read", 4),
    )
    assert outcomes == [A.APPLIED, A.APPLIED, A.AFTER_TERMINAL]
    row = message(database_url, run.message_ids[0])
    assert row["state"] == "failed"
    assert (row["error_code"], row["error_title"], row["error_details"]) == (
        131026,
        "Message undeliverable",
        "Message Undeliverable.",
    )
    assert (row["rejection_reason"], row["failed_at"], row["read_at"]) == (
        "provider_rejected",
        at(3),
        None,
    )
    # sent after failed: the message was sent, so its time is kept; the state stays failed.
    assert await apply(sessions, update(wamid, "sent", 1)) == [A.AFTER_TERMINAL]
    assert message(database_url, run.message_ids[0])["sent_at"] == at(1)


async def test_failed_after_read_is_recorded_not_applied(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    wamid = run.wamids[1]
    outcomes = await apply(
        sessions,
        update(wamid, "read", 2),
        update(wamid, "failed", 3, errors=(ProviderError(131000, "x"),)),
    )
    assert outcomes == [A.APPLIED, A.AFTER_TERMINAL]
    row = message(database_url, run.message_ids[1])
    assert (row["state"], row["failed_at"], row["error_code"]) == ("read", None, None)
    assert events(database_url, wamid or "")["failed"] == "after_terminal"


async def test_unknown_statuses_are_recorded_and_ignored(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    outcomes = await apply(
        sessions, update(run.wamids[0], "played", 2), update("wamid.nobody", "deleted", 2)
    )
    assert outcomes == [A.UNKNOWN_STATUS, A.UNKNOWN_STATUS]
    assert message(database_url, run.message_ids[0])["state"] == "sent"
    assert events(database_url, run.wamids[0] or "") == {"played": "unknown_status"}


async def store_id_and_hook(
    sessions: async_sessionmaker[AsyncSession], message_id: uuid.UUID, wamid: str
) -> int:
    """What the dispatcher does once the send call returns: store the id, then the hook (in
    one transaction); how many orphans the hook applied."""
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "UPDATE invite_message SET provider_message_id = :wamid, state = 'sent'"
                " WHERE id = :id AND state = 'sending'"
            ),
            {"id": message_id, "wamid": wamid},
        )
        return await apply_orphaned_statuses(session, [message_id])


async def test_orphans_are_applied_once_the_provider_id_is_stored(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    pending = seed_run(database_url, 1, state="sending", with_wamids=False)
    mid = pending.message_ids[0]
    outcomes = await apply(
        sessions, update("wamid.early", "delivered", 7), update("wamid.early", "sent", 5)
    )
    assert outcomes == [A.ORPHANED, A.ORPHANED]
    assert message(database_url, mid)["state"] == "sending"
    assert await store_id_and_hook(sessions, mid, "wamid.early") == 2
    row = message(database_url, mid)
    assert (row["state"], row["sent_at"], row["delivered_at"]) == ("delivered", at(5), at(7))
    assert events(database_url, "wamid.early") == {"delivered": "applied", "sent": "stale"}
    resolved = rows(
        database_url,
        "SELECT count(*) FROM status_event WHERE message_id = %s AND resolved_at IS NOT NULL",
        mid,
    )
    assert resolved == [(2,)]


async def test_a_later_status_absorbs_orphans_the_hook_missed(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    pending = seed_run(database_url, 1, state="sending", with_wamids=False)
    mid = pending.message_ids[0]
    assert await apply(sessions, update("wamid.late", "delivered", 7)) == [A.ORPHANED]
    with psycopg.connect(database_url, autocommit=True) as conn:  # no hook call at all
        conn.execute(
            "UPDATE invite_message SET provider_message_id = 'wamid.late', state = 'sent'"
            " WHERE id = %s",
            [mid],
        )
    assert await apply(sessions, update("wamid.late", "read", 9)) == [A.APPLIED]
    row = message(database_url, mid)
    assert (row["state"], row["delivered_at"], row["read_at"]) == ("read", at(7), at(9))
    assert events(database_url, "wamid.late") == {"delivered": "applied", "read": "applied"}


def costed(database_url: str, message_id: uuid.UUID) -> tuple[Any, ...]:
    found = rows(
        database_url,
        "SELECT pricing_billable, pricing_category, pricing_model, pricing_type"
        " FROM invite_message WHERE id = %s",
        message_id,
    )
    return found[0]


MARKETING = Pricing(billable=True, category="marketing", model="PMP", type="regular")
FREE = Pricing(billable=False, category="service", model="PMP", type="free_customer_service")


async def test_an_orphans_pricing_is_recorded_when_the_dispatcher_stores_the_provider_id(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """Meta's `sent` and `delivered` (both priced) came before the send call's answer was
    stored: the message is costed all the same, with the earlier one's block (the batch stores
    `delivered` first, sorted by status)."""
    pending = seed_run(database_url, 1, state="sending", with_wamids=False)
    mid = pending.message_ids[0]
    early = [
        replace(update("wamid.priced", "sent", 5), pricing=MARKETING),
        replace(update("wamid.priced", "delivered", 7), pricing=FREE),
    ]
    assert await apply(sessions, *early) == [A.ORPHANED, A.ORPHANED]
    assert costed(database_url, mid) == (None, None, None, None)
    assert await store_id_and_hook(sessions, mid, "wamid.priced") == 2
    assert costed(database_url, mid) == (True, "marketing", "PMP", "regular")
    # Kept on the orphans only: an applied status's pricing is on its message already.
    assert rows(database_url, "SELECT count(*) FROM status_event WHERE pricing IS NOT NULL") == [
        (2,)
    ]


async def test_an_orphan_replayed_by_a_later_batch_is_costed_before_that_batchs_statuses(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """The first reported block is the one a message keeps: the orphan's, reported before the
    status that finds it, even when both carry pricing."""
    pending = seed_run(database_url, 1, state="sending", with_wamids=False)
    mid = pending.message_ids[0]
    early = replace(update("wamid.replayed", "sent", 5), pricing=MARKETING)
    assert await apply(sessions, early) == [A.ORPHANED]
    with psycopg.connect(database_url, autocommit=True) as conn:  # no hook call at all
        conn.execute(
            "UPDATE invite_message SET provider_message_id = 'wamid.replayed', state = 'sent'"
            " WHERE id = %s",
            [mid],
        )
    later = replace(update("wamid.replayed", "delivered", 7), pricing=FREE)
    assert await apply(sessions, later) == [A.APPLIED]
    assert costed(database_url, mid) == (True, "marketing", "PMP", "regular")
    # `sent` is stale here (the message was marked sent when its id was stored), its pricing not.
    assert events(database_url, "wamid.replayed") == {"sent": "stale", "delivered": "applied"}


async def test_callback_data_resolves_an_ambiguous_sending_message(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    pending = seed_run(database_url, 2, state="sending", with_wamids=False)
    first, second = pending.message_ids
    outcomes = await apply(
        sessions,
        update("wamid.cb1", "sent", 3, callback=str(first), recipient="15550100000"),
        update("wamid.cb2", "failed", 4, callback=str(second), errors=(ProviderError(131026),)),
    )
    assert outcomes == [A.APPLIED, A.APPLIED]
    row = message(database_url, first)
    assert (row["state"], row["provider_message_id"], row["wa_id"], row["sent_at"]) == (
        "sent",
        "wamid.cb1",
        "15550100000",
        at(3),
    )
    assert message(database_url, second)["state"] == "failed"
    # Later statuses find it by its provider id now.
    assert await apply(sessions, update("wamid.cb1", "delivered", 5)) == [A.APPLIED]


async def test_callback_data_or_ids_from_another_sender_never_apply(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    pending = seed_run(database_url, 1, state="sending", with_wamids=False)
    outcomes = await apply(
        sessions,
        update("wamid.x", "delivered", 3, callback=str(pending.message_ids[0]), sender="999"),
        update(run.wamids[0], "read", 3, sender="999"),
        update("wamid.y", "read", 3, callback="not-a-uuid"),
        update("wamid.z", "read", 3, callback=str(uuid.uuid4())),
    )
    assert outcomes == [A.ORPHANED] * 4
    assert message(database_url, pending.message_ids[0])["state"] == "sending"
    assert message(database_url, run.message_ids[0])["state"] == "sent"


async def test_a_callback_for_a_message_with_another_provider_id_does_not_match(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    outcomes = await apply(
        sessions, update("wamid.other", "read", 3, callback=str(run.message_ids[0]))
    )
    assert outcomes == [A.ORPHANED]
    assert message(database_url, run.message_ids[0])["provider_message_id"] == run.wamids[0]


def dnm_rows(database_url: str) -> list[tuple[Any, ...]]:
    return rows(
        database_url,
        "SELECT workspace_id, phone_e164, source FROM do_not_message_entry ORDER BY 1, 2",
    )


async def test_opt_out_signals_add_do_not_message_in_every_workspace_of_the_sender(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        sibling = seed_workspace(conn)  # a second workspace sending from the same number
        seed_workspace(conn, sender="other-sender")
    stop = PreferenceUpdate(SENDER, "15550109991", "marketing_messages", "stop", at(1))
    resume = PreferenceUpdate(SENDER, "15550109992", "marketing_messages", "resume", at(1))
    texts = [
        InboundText(SENDER, "15550109993", "  Stop! ", at(1)),
        InboundText(SENDER, "15550109994", "please stop sending me these", at(1)),
        InboundText(SENDER, "15550109995", "Arrêt", at(1)),
    ]
    opted_out = update(
        run.wamids[0],
        "failed",
        2,
        errors=(ProviderError(131050, "stopped"),),
        recipient="15550100000",
    )
    result = await apply_status(
        ApplyStatusCommand(statuses=[opted_out], preferences=[stop, resume], inbound_texts=texts),
        sessions,
    )
    expected = {
        ("+15550100000", "provider_error_131050"),
        ("+15550109991", "user_preferences_stop"),
        ("+15550109993", "inbound_stop_keyword"),
        ("+15550109995", "inbound_stop_keyword"),
    }
    assert result.do_not_message_added == 2 * len(expected)
    added = dnm_rows(database_url)
    assert {(w, p, s) for w, p, s in added} == {
        (w, p, s) for w in (run.workspace_id, sibling) for p, s in expected
    }
    audits = rows(
        database_url,
        "SELECT count(*), count(actor_id) FROM audit_entry WHERE action = 'dnm.add'",
    )
    assert audits == [(8, 0)]
    # The same signals again add nothing (idempotent), and write no audit entry.
    again = await apply_status(
        ApplyStatusCommand(preferences=[stop], inbound_texts=texts), sessions
    )
    assert again.do_not_message_added == 0
    assert len(dnm_rows(database_url)) == 8


async def test_run_counters_follow_the_transitions(
    sessions: async_sessionmaker[AsyncSession], database_url: str, run: SeededRun
) -> None:
    await apply(
        sessions,
        update(run.wamids[0], "delivered", 1),
        update(run.wamids[1], "read", 1),
        update(run.wamids[2], "failed", 1, errors=(ProviderError(131026),)),
    )
    counts = rows(
        database_url,
        "SELECT state, sum(count)::int FROM invite_run_count WHERE run_id = %s"
        " GROUP BY state HAVING sum(count) <> 0 ORDER BY state",
        run.run_id,
    )
    assert counts == [("delivered", 1), ("failed", 1), ("read", 1), ("sent", 1)]


async def test_an_older_messaging_limit_announcement_never_replaces_a_newer_one(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        workspace = seed_workspace(conn)
        conn.execute("UPDATE workspace SET waba_id = '777' WHERE id = %s", [workspace])
    newer = LimitAnnouncement("777", 10_000, at(60), "phone_number_quality_update")
    older = LimitAnnouncement("777", 2_000, at(0), "business_capability_update")
    unlimited = LimitAnnouncement("777", None, at(120), "business_capability_update")
    await apply_status(ApplyStatusCommand(limit_updates=[newer]), sessions)
    await apply_status(ApplyStatusCommand(limit_updates=[older]), sessions)  # late: ignored
    limit = "SELECT messaging_limit, messaging_limit_source FROM workspace WHERE id = %s"
    assert rows(database_url, limit, workspace) == [(10_000, "provider")]
    await apply_status(ApplyStatusCommand(limit_updates=[unlimited]), sessions)
    assert rows(database_url, limit, workspace) == [(None, "provider")]
    other = LimitAnnouncement("888", 250, at(180))  # another account's: not this workspace
    await apply_status(ApplyStatusCommand(limit_updates=[other]), sessions)
    assert rows(database_url, limit, workspace) == [(None, "provider")]
