"""The message and run state machines (domain/transitions.py), walked as tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from common.vocabulary import DnmSource, MessageState, RejectionReason, RunState
from dispatch_service.domain.do_not_message import SCOPE_OF, DnmScope
from dispatch_service.domain.transitions import (
    FINAL_MESSAGE_STATES,
    FINAL_RUN_STATES,
    INITIAL_MESSAGE_STATES,
    INITIAL_RUN_STATES,
    MESSAGE_TRANSITIONS,
    PROVIDER_STATUS_EVENTS,
    RANK,
    RUN_TRANSITIONS,
    MessageEvent,
    RunEvent,
    Transition,
    message_step,
)

ROOT = Path(__file__).resolve().parents[2]


def reachable(initial: Iterable[Any], table: Mapping[Any, Transition[Any]]) -> set[Any]:
    seen, frontier = set(initial), list(initial)
    while frontier:
        state = frontier.pop()
        for transition in table.values():
            if transition.allows(state) and transition.target not in seen:
                seen.add(transition.target)
                frontier.append(transition.target)
    return seen


def test_every_message_state_is_reachable_from_creation() -> None:
    assert reachable(INITIAL_MESSAGE_STATES, MESSAGE_TRANSITIONS) == set(MessageState)


def test_every_run_state_is_reachable_from_creation() -> None:
    assert reachable(INITIAL_RUN_STATES, RUN_TRANSITIONS) == set(RunState)


def test_no_transition_leaves_a_final_message_state() -> None:
    for event, transition in MESSAGE_TRANSITIONS.items():
        assert not transition.sources & FINAL_MESSAGE_STATES, event


def test_only_a_provider_deferral_reopens_a_finished_run() -> None:
    leaving = {e: t for e, t in RUN_TRANSITIONS.items() if t.sources & FINAL_RUN_STATES}
    assert set(leaving) == {RunEvent.REOPENED}
    assert leaving[RunEvent.REOPENED].sources == {RunState.COMPLETED}  # never a cancelled run


def test_a_provider_deferral_takes_back_only_what_was_not_delivered() -> None:
    deferred = MESSAGE_TRANSITIONS[MessageEvent.PROVIDER_DEFERRED]
    assert deferred.target is MessageState.QUEUED
    assert not deferred.sources & {MessageState.DELIVERED, MessageState.READ}


def test_every_live_message_state_can_still_end() -> None:
    live = set(MessageState) - FINAL_MESSAGE_STATES
    for state in live:
        assert reachable({state}, MESSAGE_TRANSITIONS) & FINAL_MESSAGE_STATES, state


@pytest.mark.parametrize("reported", [MessageState.SENT, MessageState.DELIVERED, MessageState.READ])
def test_provider_statuses_advance_only_to_a_higher_rank(reported: MessageState) -> None:
    event = PROVIDER_STATUS_EVENTS[reported]
    for state in MessageState:
        target = message_step(state, event)
        if state in RANK and RANK[state] < RANK[reported]:
            assert target is reported, state
        else:
            assert target is None, state


def test_failed_follows_every_live_state_but_read() -> None:
    event = PROVIDER_STATUS_EVENTS[MessageState.FAILED]
    allowed = {s for s in MessageState if message_step(s, event) is MessageState.FAILED}
    assert allowed == {
        MessageState.QUEUED,
        MessageState.SENDING,
        MessageState.SENT,
        MessageState.DELIVERED,
    }


def test_read_is_reachable_from_wherever_delivered_is() -> None:
    """Read implies delivered: a read status may arrive with no delivered before it."""
    read = MESSAGE_TRANSITIONS[MessageEvent.PROVIDER_READ].sources
    delivered = MESSAGE_TRANSITIONS[MessageEvent.PROVIDER_DELIVERED].sources
    assert delivered | {MessageState.DELIVERED} <= read


def test_blocking_and_failing_transitions_record_a_reason_and_no_other_does() -> None:
    for event, transition in MESSAGE_TRANSITIONS.items():
        ends_badly = transition.target in (MessageState.BLOCKED, MessageState.FAILED)
        assert (transition.reason is not None) == ends_badly, event
    assert MESSAGE_TRANSITIONS[MessageEvent.OUTCOME_WINDOW_ELAPSED].reason is (
        RejectionReason.OUTCOME_UNKNOWN
    )


def test_the_do_not_message_scope_rule_covers_every_source() -> None:
    assert set(SCOPE_OF) == set(DnmSource)
    assert SCOPE_OF[DnmSource.OPERATOR] is DnmScope.WORKSPACE
    assert {SCOPE_OF[s] for s in DnmSource if s is not DnmSource.OPERATOR} == {
        DnmScope.SENDER_NUMBER
    }


def _sources() -> list[Path]:
    folders = ("common", "dispatch_service", "webhook_service", "cli", "sandbox")
    return [
        p for folder in folders for p in (ROOT / folder).rglob("*.py") if "generated" not in p.parts
    ]


def test_only_the_message_transitions_module_updates_messages() -> None:
    writers = {
        p.relative_to(ROOT).as_posix()
        for p in _sources()
        if "UPDATE invite_message" in p.read_text(encoding="utf-8")
    }
    assert writers == {"dispatch_service/persistence/message_transitions.py"}


def test_only_the_run_transitions_module_changes_a_run_state() -> None:
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for chunk in text.split("UPDATE invite_send_run")[1:]:
            statement = chunk.split(";")[0].split('"""')[0][:400]
            if "SET state" in statement or "state =" in statement.split("WHERE")[0]:
                assert path.name == "run_transitions.py", path
