"""The ledger: every send the sandbox accepted, and the figures tests and benchmarks read from it.

Accepted means Meta would have sent the message: it includes ambiguous replies (dropped
connection, late reply) and sends that later fail asynchronously. Rejected sends are only
counted, by error code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class LedgerEntry:
    """One accepted send."""

    seq: int
    wamid: str
    phone_number_id: str
    to: str
    wa_id: str
    template: str
    language: str
    category: str
    parameters: tuple[str, ...]
    header_parameters: tuple[str, ...]
    callback_data: str | None
    accepted_at: float
    """Wall-clock time (Unix seconds)."""
    monotonic: float
    """Monotonic time, the clock the throughput cap uses."""
    reply: str
    """How the send was answered: ``ok``, ``drop``, ``delay`` or ``server_error``."""
    async_error_code: int | None

    def to_json(self) -> dict[str, Any]:
        """The entry as ``GET /_sandbox/ledger`` shows it."""
        return {
            "seq": self.seq,
            "wamid": self.wamid,
            "phone_number_id": self.phone_number_id,
            "to": self.to,
            "wa_id": self.wa_id,
            "template": self.template,
            "language": self.language,
            "parameters": list(self.parameters),
            "header_parameters": list(self.header_parameters),
            "biz_opaque_callback_data": self.callback_data,
            "accepted_at": self.accepted_at,
            "reply": self.reply,
            "async_error_code": self.async_error_code,
        }


class Ledger:
    """Accepted sends in acceptance order, indexed by wamid and counted per recipient."""

    def __init__(self) -> None:
        self.entries: list[LedgerEntry] = []
        self.by_wamid: dict[str, LedgerEntry] = {}
        self.per_recipient: Counter[str] = Counter()
        self.rejected: Counter[int] = Counter()

    def record(self, entry: LedgerEntry) -> None:
        """Add an accepted send."""
        self.entries.append(entry)
        self.by_wamid[entry.wamid] = entry
        self.per_recipient[entry.wa_id] += 1

    def next_seq(self) -> int:
        """The sequence number the next entry gets (1-based)."""
        return len(self.entries) + 1

    def page(
        self, *, after: int = 0, limit: int = 1000, wa_id: str | None = None
    ) -> list[LedgerEntry]:
        """Entries with ``seq > after``, optionally for one recipient, at most ``limit``."""
        candidates = self.entries[after:]
        if wa_id is not None:
            candidates = [entry for entry in candidates if entry.wa_id == wa_id]
        return candidates[:limit]

    def stats(self) -> dict[str, Any]:
        """Totals, a per-second series, and the most sends seen in any one-second window."""
        per_second = Counter(int(entry.accepted_at) for entry in self.entries)
        by_phone: dict[str, list[float]] = {}
        for entry in self.entries:
            by_phone.setdefault(entry.phone_number_id, []).append(entry.monotonic)
        return {
            "accepted": len(self.entries),
            "rejected_by_code": {str(code): n for code, n in sorted(self.rejected.items())},
            "replies": dict(Counter(entry.reply for entry in self.entries)),
            "async_failures": sum(1 for entry in self.entries if entry.async_error_code),
            "sends_per_second": [[second, n] for second, n in sorted(per_second.items())],
            "max_sends_in_any_second": max_in_any_second(
                [entry.monotonic for entry in self.entries]
            ),
            "max_sends_in_any_second_by_phone_number_id": {
                phone: max_in_any_second(times) for phone, times in by_phone.items()
            },
            "recipients": len(self.per_recipient),
            "recipients_sent_more_than_once": {
                wa_id: n for wa_id, n in self.per_recipient.items() if n > 1
            },
        }


def max_in_any_second(times: list[float]) -> int:
    """Most values in any window (t - 1 s, t] over ascending ``times``, as the cap counts them."""
    best = 0
    left = 0
    for right, now in enumerate(times):
        while times[left] <= now - 1.0:
            left += 1
        best = max(best, right - left + 1)
    return best


def read_all(get: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Every entry through the control API's pages: `get("ledger?after=…")` answers one."""
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        page = get(f"ledger?after={after}&limit=5000")
        entries += page["entries"]
        if page["next_after"] is None:
            return entries
        after = page["next_after"]
