"""How the state machines' transitions are spelled in SQL (the tables live in the domain).

A transition statement never types a state: it asks these helpers for the quoted list of source
states and the quoted target of a named transition of ``domain/transitions.py``. The values are
our own enum constants, so splicing them into statement text is safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from common.db.models import PENDING_STATES
from common.vocabulary import MessageState


def quoted(states: Iterable[StrEnum]) -> str:
    """`'a', 'b'` for ``state IN (...)`` (sorted, so statement text is stable)."""
    return ", ".join(f"'{s.value}'" for s in sorted(states, key=lambda s: s.value))


def literal(state: StrEnum) -> str:
    """`'a'` for one state."""
    return f"'{state.value}'"


def pending(states: Iterable[MessageState], column: str = "dispatch_state") -> str:
    """``dispatch_state IN (...)``: how a statement that looks for messages by a pending state
    (queued, sending) spells it, so that the state's partial index answers it. Those indexes
    read ``invite_message.dispatch_state`` (migration 0025), which no predicate on ``state``
    proves; the two columns are equal for these states."""
    chosen = frozenset(states)
    if not chosen or not chosen <= frozenset(PENDING_STATES):
        raise ValueError(f"{sorted(chosen)} are not all pending states")
    return f"{column} IN ({quoted(chosen)})"
