"""How the state machines' transitions are spelled in SQL (the tables live in the domain).

A transition statement never types a state: it asks these helpers for the quoted list of source
states and the quoted target of a named transition of ``domain/transitions.py``. The values are
our own enum constants, so splicing them into statement text is safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


def quoted(states: Iterable[StrEnum]) -> str:
    """`'a', 'b'` for ``state IN (...)`` (sorted, so statement text is stable)."""
    return ", ".join(f"'{s.value}'" for s in sorted(states, key=lambda s: s.value))


def literal(state: StrEnum) -> str:
    """`'a'` for one state."""
    return f"'{state.value}'"
