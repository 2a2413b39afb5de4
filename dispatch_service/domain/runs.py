"""Send runs: when a run is done, the guards CancelRun and ResumeRun apply, and counts (pure).

The run state machine itself is the table in ``domain/transitions.py``::

    queued ──(first claim)──> dispatching ──(no message queued or sending)──> completed
       │                        │    ^
       │                        │    └──── ResumeRun ────┐
       │                        └── halt error ──> paused ┘
       └───────────── CancelRun (from queued, dispatching or paused) ──────> cancelled

Message states that count as *done* for a run: everything except `queued` and `sending`.
`sent` and `delivered` are settled (a message may legitimately stay there forever: read receipts
off, phone never back online), so a run completes once none of its messages is waiting for a
send or for the outcome of one; later webhooks still advance the messages and the counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from common.vocabulary import MessageState, RejectionReason, RunState
from dispatch_service.domain.transitions import (
    MESSAGE_TRANSITIONS,
    RUN_TRANSITIONS,
    MessageEvent,
    RunEvent,
    run_step,
)
from dispatch_service.errors import FailedPrecondition

ACTIVE_RUN_STATES = RUN_TRANSITIONS[RunEvent.COMPLETED].sources
"""Runs the dispatcher claims messages from (the states a run completes from)."""

PENDING_MESSAGE_STATES = (
    MESSAGE_TRANSITIONS[MessageEvent.CLAIMED].sources
    | MESSAGE_TRANSITIONS[MessageEvent.ACCEPTED].sources
)
"""Messages that keep a run from completing: waiting for a send, or for a send's outcome."""

K = TypeVar("K")


def require_cancellable(state: RunState) -> None:
    """FailedPrecondition unless a run in `state` may be cancelled."""
    if run_step(state, RunEvent.CANCELLED) is None:
        raise FailedPrecondition(f"a {state.value} run cannot be cancelled", reason="RUN_FINAL")


def require_resumable(state: RunState) -> None:
    """FailedPrecondition unless a run in `state` may be resumed (only paused runs)."""
    if run_step(state, RunEvent.RESUMED) is None:
        raise FailedPrecondition(
            f"only a paused run can be resumed; this one is {state.value}",
            reason="RUN_NOT_PAUSED",
        )


@dataclass(frozen=True)
class CountRow:
    """One row of the count projection: messages in `state` with `reason` and `error_code`."""

    state: MessageState
    reason: RejectionReason | None
    error_code: int | None
    count: int


@dataclass(frozen=True)
class RunCounts:
    """A run's messages counted every way GetRunStatus reports them."""

    total: int
    by_state: dict[MessageState, int]
    blocked_by_reason: dict[RejectionReason, int] = field(default_factory=dict)
    failed_by_error_code: dict[int, int] = field(default_factory=dict)
    failed_by_reason: dict[RejectionReason, int] = field(default_factory=dict)
    uncreated: int = 0
    """Messages StartRun has yet to create (it creates a large run's in batches after it
    answers): counted in `total` and as pending, in no state."""

    @property
    def pending(self) -> int:
        """Messages still waiting for a send or for a send's outcome, or still to be created."""
        return sum(self.by_state[s] for s in PENDING_MESSAGE_STATES) + self.uncreated

    @property
    def done(self) -> int:
        """Messages in a state that no longer needs the dispatcher (see the module docstring)."""
        return self.total - self.pending

    @property
    def progress(self) -> float:
        """done / total in 0..1 (1 for an empty run)."""
        return self.done / self.total if self.total else 1.0


def summarise_counts(rows: Iterable[CountRow], creating_total: int | None = None) -> RunCounts:
    """Fold projection rows into a run's counts (every state present, zeros included).

    `creating_total`: the run's total while its messages are still being created (None once
    they all exist); the messages not created yet count as `uncreated`, so the total and the
    progress hold still while creation goes on."""
    by_state = dict.fromkeys(MessageState, 0)
    blocked: dict[RejectionReason, int] = {}
    failed_codes: dict[int, int] = {}
    failed_reasons: dict[RejectionReason, int] = {}
    for row in rows:
        by_state[row.state] += row.count
        if row.state is MessageState.BLOCKED and row.reason is not None:
            blocked[row.reason] = blocked.get(row.reason, 0) + row.count
        if row.state is MessageState.FAILED:
            if row.error_code:
                failed_codes[row.error_code] = failed_codes.get(row.error_code, 0) + row.count
            if row.reason is not None:
                failed_reasons[row.reason] = failed_reasons.get(row.reason, 0) + row.count
    created = sum(by_state.values())
    uncreated = max(creating_total - created, 0) if creating_total is not None else 0
    return RunCounts(
        total=created + uncreated,
        by_state=by_state,
        blocked_by_reason=_nonzero(blocked),
        failed_by_error_code=_nonzero(failed_codes),
        failed_by_reason=_nonzero(failed_reasons),
        uncreated=uncreated,
    )


def _nonzero(counts: Mapping[K, int]) -> dict[K, int]:
    return {k: v for k, v in counts.items() if v}


def pause_reason(code: int | None, title: str, meaning: str) -> str:
    """The operator-facing reason a run paused: the provider's code and words, and ours."""
    prefix = f"provider error {code}" if code is not None else "provider error"
    return f"{prefix}: {title or meaning} ({meaning}); fix it, then ResumeRun or CancelRun"
