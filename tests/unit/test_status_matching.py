"""Matching provider statuses to messages and replaying them (domain/status_matching.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from common.vocabulary import ApplyOutcome, MessageState, SenderProvider
from dispatch_service.domain.lifecycle import Lifecycle, ProviderStatus, StatusUpdate
from dispatch_service.domain.status_matching import (
    HeldStatus,
    MatchedMessage,
    StatusBatch,
    in_report_order,
    match_held,
    replay_held,
)

SENDER = "100000000000001"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def message(wamid: str | None = None, state: MessageState = MessageState.SENDING) -> MatchedMessage:
    life = Lifecycle(state=state)
    return MatchedMessage(uuid.uuid4(), SENDER, "+14155550101", wamid, None, life, life)


def update(wamid: str, status: str, *, callback: str = "", sender: str = SENDER, at: int = 0):
    return StatusUpdate(
        wamid, ProviderStatus(status, T0 + timedelta(seconds=at)), sender, "14155550101", callback
    )


def batch_for(updates: list[StatusUpdate], *messages: MatchedMessage) -> StatusBatch:
    batch = StatusBatch(updates)
    batch.messages = {m.id: m for m in messages}
    batch.match({m.provider_message_id: m for m in messages if m.provider_message_id})
    return batch


def test_a_status_matches_its_message_by_provider_id() -> None:
    known = message("wamid.A")
    batch = batch_for([update("wamid.A", "delivered")], known)
    assert batch.target == {0: known}
    assert batch.replay(skip=set()) == {0: ApplyOutcome.APPLIED}
    assert known.after.state is MessageState.DELIVERED


def test_callback_data_gives_a_message_its_first_provider_id_and_wa_id() -> None:
    fresh = message(None)
    batch = batch_for([update("wamid.B", "sent", callback=str(fresh.id))], fresh)
    assert batch.target == {0: fresh}
    assert (fresh.provider_message_id, fresh.wa_id) == ("wamid.B", "14155550101")
    assert fresh.changed


def test_a_status_for_another_sender_number_never_matches() -> None:
    fresh = message(None)
    batch = batch_for([update("wamid.C", "sent", callback=str(fresh.id), sender="999")], fresh)
    assert batch.target == {}
    assert batch.unmatched_wamids() == ["wamid.C"]
    assert batch.replay(skip=set()) == {0: ApplyOutcome.ORPHANED}


def test_a_status_of_another_provider_never_matches_held_or_fresh() -> None:
    twilio = message("SM" + "1" * 32)
    twilio.provider = SenderProvider.TWILIO
    by_sid = update("SM" + "1" * 32, "failed")  # Meta's, by provider id
    by_callback = update("wamid.Z", "failed", callback=str(twilio.id))
    batch = batch_for([by_sid, by_callback], twilio)
    assert batch.target == {}
    held = [
        HeldStatus(1, twilio.provider_message_id or "", SENDER, "", "", ProviderStatus("read", T0))
    ]
    match_held(held, {twilio.id: twilio})
    assert held[0].message_id is None
    held[0].provider = SenderProvider.TWILIO
    match_held(held, {twilio.id: twilio})
    assert held[0].message_id == twilio.id


def test_the_second_copy_of_a_status_in_a_batch_is_not_replayed() -> None:
    known = message("wamid.D")
    batch = batch_for([update("wamid.D", "read"), update("wamid.D", "read", at=5)], known)
    assert batch.unique_indexes() == [0]
    assert batch.replay(skip=set()) == {0: ApplyOutcome.APPLIED}


def test_untracked_statuses_are_never_held_as_orphans() -> None:
    batch = batch_for([update("wamid.E", "played"), update("wamid.F", "delivered")])
    assert batch.unmatched_wamids() == ["wamid.F"]
    assert batch.replay(skip=set()) == {
        0: ApplyOutcome.UNKNOWN_STATUS,
        1: ApplyOutcome.ORPHANED,
    }


def test_held_statuses_are_matched_by_callback_and_replayed_in_arrival_order() -> None:
    fresh = message(None)
    held = [
        HeldStatus(1, "wamid.G", SENDER, str(fresh.id), "", ProviderStatus("read", T0)),
        HeldStatus(2, "wamid.G", SENDER, "", "", ProviderStatus("delivered", T0)),
    ]
    messages = {fresh.id: fresh}
    match_held(held, messages)
    replay_held(held, messages)
    assert [h.message_id for h in held] == [fresh.id, fresh.id]
    assert [h.outcome for h in held] == [ApplyOutcome.APPLIED, ApplyOutcome.STALE]
    assert fresh.after.state is MessageState.READ


def test_reset_forgets_a_replay() -> None:
    known = message("wamid.H")
    batch = batch_for([update("wamid.H", "failed")], known)
    batch.replay(skip=set())
    batch.reset()
    assert known.after == known.before
    assert batch.replay(skip={0}) == {}


def test_held_statuses_are_reported_in_provider_time_then_lifecycle_then_arrival() -> None:
    """Whose pricing block a message keeps: Meta's timestamps are whole seconds, so a `sent`
    and a `delivered` often share one, and a batch stores `delivered` before `sent`."""

    def held(event_id: int, status: str, seconds: int) -> HeldStatus:
        report = ProviderStatus(status, T0 + timedelta(seconds=seconds))
        return HeldStatus(event_id, "wamid.R", SENDER, "", "", report)

    statuses = [
        held(1, "read", 1),
        held(2, "delivered", 0),
        held(3, "deleted", 0),
        held(4, "sent", 0),
        held(5, "failed", 0),
        held(6, "sent", 0),
        held(7, "sent", -1),
    ]
    assert [o.id for o in in_report_order(statuses)] == [7, 4, 6, 2, 5, 3, 1]
