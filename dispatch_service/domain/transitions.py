"""The message and run state machines, as data (pure: no I/O, no framework imports).

Every statement that changes ``invite_message.state`` or ``invite_send_run.state`` names one or
more transitions of these tables: its ``WHERE state IN (...)`` and its target state are read from
here (``persistence/message_transitions.py`` and ``persistence/run_transitions.py``), never typed
again. A message's life at a glance::

    event                    from                               to
    -----------------------  ---------------------------------  ----------
    created                  (StartRun, eligible)               queued
    created_blocked          (StartRun, not eligible)           blocked
    blocked_already_invited  queued                             blocked     already_invited
    blocked_at_send          queued                             blocked     do_not_message (claim)
    claimed                  queued                             queued      leased to a replica
    attempted                queued                             sending     the at-most-once point,
                                                                            just before the request
    held                     queued                             queued      quiet hours: due later
    accepted                 sending                            sent
    transient_error          sending                            queued      retried after back-off
    deferred                 sending                            queued      131049: after >= 24 h
    halted                   sending                            queued      the run pauses
    released                 queued, sending                    queued      claimed, never sent
    stopped_by_cancel        sending                            cancelled   its run was cancelled
    retries_exhausted        sending                            failed      retries_exhausted
    terminal_error           sending                            failed      provider_rejected
    ambiguous                sending                            sending     never re-sent
    outcome_window_elapsed   sending                            failed      outcome_unknown
    cancelled                queued                             cancelled
    expired                  queued                             failed      expired (deadline)
    provider_sent            queued, sending                    sent
    provider_delivered       queued, sending, sent              delivered
    provider_read            queued, sending, sent, delivered   read
    provider_failed          queued, sending, sent, delivered   failed      provider_rejected
    provider_deferred        queued, sending, sent              queued      a `failed` status with
                                                                            131049: after >= 24 h
    provider_deferral_       queued, sending, sent              failed      retries_exhausted: the
      exhausted                                                             same, after the last
                                                                            attempt allowed

The provider rows are not typed by hand: they follow from the rank rule (``RANK``): a provider
status advances a message from every live state of lower rank, ``failed`` from every live state
but ``read`` (final success). ``provider_deferred`` is the one provider row typed by hand: Meta
reports its per-user marketing cap (131049, Twilio 63049) mostly as a `failed` status after it
accepted the send; the message was not delivered and goes back to the queue, held for the
marketing limit, like the ``deferred`` send result. ``read``, ``failed``, ``blocked`` and
``cancelled`` are final: no transition leaves them.

A run's life::

    created  (StartRun) -> queued;  queued -> completed when nobody is eligible
    created  (StartRun with send_at) -> scheduled
    due                      scheduled                -> queued       (send_at reached)
    started                  queued                   -> dispatching  (first claim)
    paused                   queued, dispatching      -> paused       (halt error)
    resumed                  paused                   -> dispatching  (ResumeRun)
    cancelled                scheduled, queued, dispatching, paused -> cancelled (CancelRun)
    completed                queued, dispatching      -> completed    (nothing pending)
    reopened                 completed                -> dispatching  (a provider deferred one
                                                                        of its messages)

``completed`` and ``cancelled`` end a run; ``reopened`` is the one way back: a run completes as
soon as nothing is queued or sending, and Meta's 131049 for its last messages may come later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from common.vocabulary import MessageState, RejectionReason, RunState

S = TypeVar("S", MessageState, RunState)
E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True)
class Transition(Generic[S]):
    """One row of a state machine: from any of `sources` to `target` (recording `reason`)."""

    sources: frozenset[S]
    target: S
    reason: RejectionReason | None = None
    """The rejection reason a message records when it takes this transition."""

    def allows(self, state: S) -> bool:
        """Whether this transition may leave `state`."""
        return state in self.sources


class MessageEvent(StrEnum):
    """What happens to a message (see the table in the module docstring)."""

    BLOCKED_ALREADY_INVITED = "blocked_already_invited"
    BLOCKED_AT_SEND = "blocked_at_send"
    CLAIMED = "claimed"
    ATTEMPTED = "attempted"
    HELD = "held"
    ACCEPTED = "accepted"
    TRANSIENT_ERROR = "transient_error"
    DEFERRED = "deferred"
    HALTED = "halted"
    RELEASED = "released"
    STOPPED_BY_CANCEL = "stopped_by_cancel"
    RETRIES_EXHAUSTED = "retries_exhausted"
    TERMINAL_ERROR = "terminal_error"
    AMBIGUOUS = "ambiguous"
    OUTCOME_WINDOW_ELAPSED = "outcome_window_elapsed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    PROVIDER_SENT = "provider_sent"
    PROVIDER_DELIVERED = "provider_delivered"
    PROVIDER_READ = "provider_read"
    PROVIDER_FAILED = "provider_failed"
    PROVIDER_DEFERRED = "provider_deferred"
    PROVIDER_DEFERRAL_EXHAUSTED = "provider_deferral_exhausted"


class RunEvent(StrEnum):
    """What happens to a run (see the module docstring)."""

    DUE = "due"
    STARTED = "started"
    PAUSED = "paused"
    RESUMED = "resumed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    REOPENED = "reopened"


Q, SENDING, SENT, DELIVERED, READ, FAILED, BLOCKED, CANCELLED = (
    MessageState.QUEUED,
    MessageState.SENDING,
    MessageState.SENT,
    MessageState.DELIVERED,
    MessageState.READ,
    MessageState.FAILED,
    MessageState.BLOCKED,
    MessageState.CANCELLED,
)

INITIAL_MESSAGE_STATES = frozenset({Q, BLOCKED})
"""States a message is created in (StartRun: eligible ones queued, the others blocked)."""

FINAL_MESSAGE_STATES = frozenset({READ, FAILED, BLOCKED, CANCELLED})
"""States no transition leaves."""

RANK: Mapping[MessageState, int] = {Q: 0, SENDING: 0, SENT: 1, DELIVERED: 2, READ: 3}
"""Progress ranks of the live states; a provider status advances only to a higher rank."""

PROVIDER_STATUS_EVENTS: Mapping[MessageState, MessageEvent] = {
    SENT: MessageEvent.PROVIDER_SENT,
    DELIVERED: MessageEvent.PROVIDER_DELIVERED,
    READ: MessageEvent.PROVIDER_READ,
    FAILED: MessageEvent.PROVIDER_FAILED,
}
"""The event a provider status is, by the state it reports."""


def _advanced_by(target: MessageState) -> frozenset[MessageState]:
    """The rank rule: the live states a provider status of `target` advances from."""
    if target is FAILED:
        return frozenset(s for s in RANK if s is not READ)
    return frozenset(s for s, rank in RANK.items() if rank < RANK[target])


def _t(sources: Iterable[S], target: S, reason: RejectionReason | None = None) -> Transition[S]:
    return Transition(frozenset(sources), target, reason)


_REASON = RejectionReason


MESSAGE_TRANSITIONS: Mapping[MessageEvent, Transition[MessageState]] = {
    MessageEvent.BLOCKED_ALREADY_INVITED: _t({Q}, BLOCKED, _REASON.ALREADY_INVITED),
    MessageEvent.BLOCKED_AT_SEND: _t({Q}, BLOCKED, _REASON.DO_NOT_MESSAGE),
    MessageEvent.CLAIMED: _t({Q}, Q),
    MessageEvent.ATTEMPTED: _t({Q}, SENDING),
    MessageEvent.HELD: _t({Q}, Q),
    MessageEvent.ACCEPTED: _t({SENDING}, SENT),
    MessageEvent.TRANSIENT_ERROR: _t({SENDING}, Q),
    MessageEvent.DEFERRED: _t({SENDING}, Q),
    MessageEvent.HALTED: _t({SENDING}, Q),
    MessageEvent.RELEASED: _t({Q, SENDING}, Q),
    MessageEvent.STOPPED_BY_CANCEL: _t({SENDING}, CANCELLED),
    MessageEvent.RETRIES_EXHAUSTED: _t({SENDING}, FAILED, _REASON.RETRIES_EXHAUSTED),
    MessageEvent.TERMINAL_ERROR: _t({SENDING}, FAILED, _REASON.PROVIDER_REJECTED),
    MessageEvent.AMBIGUOUS: _t({SENDING}, SENDING),
    MessageEvent.OUTCOME_WINDOW_ELAPSED: _t({SENDING}, FAILED, _REASON.OUTCOME_UNKNOWN),
    MessageEvent.CANCELLED: _t({Q}, CANCELLED),
    MessageEvent.EXPIRED: _t({Q}, FAILED, _REASON.EXPIRED),
    **{
        event: _t(
            _advanced_by(state),
            state,
            _REASON.PROVIDER_REJECTED if state is FAILED else None,
        )
        for state, event in PROVIDER_STATUS_EVENTS.items()
    },
    MessageEvent.PROVIDER_DEFERRED: _t({Q, SENDING, SENT}, Q),
    MessageEvent.PROVIDER_DEFERRAL_EXHAUSTED: _t(
        {Q, SENDING, SENT}, FAILED, _REASON.RETRIES_EXHAUSTED
    ),
}
"""Every message transition (the table of the module docstring)."""

R_SCHEDULED, R_QUEUED, R_DISPATCHING, R_PAUSED, R_COMPLETED, R_CANCELLED = (
    RunState.SCHEDULED,
    RunState.QUEUED,
    RunState.DISPATCHING,
    RunState.PAUSED,
    RunState.COMPLETED,
    RunState.CANCELLED,
)

INITIAL_RUN_STATES = frozenset({R_SCHEDULED, R_QUEUED})
FINAL_RUN_STATES = frozenset({R_COMPLETED, R_CANCELLED})
"""States that end a run (only ``reopened`` leaves one: see the module docstring)."""

RUN_TRANSITIONS: Mapping[RunEvent, Transition[RunState]] = {
    RunEvent.DUE: _t({R_SCHEDULED}, R_QUEUED),
    RunEvent.STARTED: _t({R_QUEUED}, R_DISPATCHING),
    RunEvent.PAUSED: _t({R_QUEUED, R_DISPATCHING}, R_PAUSED),
    RunEvent.RESUMED: _t({R_PAUSED}, R_DISPATCHING),
    RunEvent.CANCELLED: _t({R_SCHEDULED, R_QUEUED, R_DISPATCHING, R_PAUSED}, R_CANCELLED),
    RunEvent.COMPLETED: _t({R_QUEUED, R_DISPATCHING}, R_COMPLETED),
    RunEvent.REOPENED: _t({R_COMPLETED}, R_DISPATCHING),
}
"""Every run transition."""


def allowed_moves(table: Mapping[E, Transition[S]]) -> frozenset[tuple[S, S]]:
    """Every (from, to) pair a table allows, self-loops included."""
    return frozenset((source, t.target) for t in table.values() for source in t.sources)


MESSAGE_MOVES = allowed_moves(MESSAGE_TRANSITIONS)
"""Every (from, to) pair of message states some transition allows."""
RUN_MOVES = allowed_moves(RUN_TRANSITIONS)
"""Every (from, to) pair of run states some transition allows."""


def message_step(state: MessageState, event: MessageEvent) -> MessageState | None:
    """The state `event` moves a message in `state` to, or None when the table forbids it."""
    transition = MESSAGE_TRANSITIONS[event]
    return transition.target if transition.allows(state) else None


def run_step(state: RunState, event: RunEvent) -> RunState | None:
    """The state `event` moves a run in `state` to, or None when the table forbids it."""
    transition = RUN_TRANSITIONS[event]
    return transition.target if transition.allows(state) else None
