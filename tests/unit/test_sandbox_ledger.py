"""Ledger figures: the busiest second and repeated recipients."""

import pytest

from sandbox.ledger import Ledger, LedgerEntry, max_in_any_second


def entry(seq: int, wa_id: str, at: float, phone: str = "111") -> LedgerEntry:
    return LedgerEntry(
        seq=seq,
        wamid=f"wamid.{seq}",
        phone_number_id=phone,
        to=wa_id,
        wa_id=wa_id,
        template="event_invitation",
        language="en_US",
        category="marketing",
        parameters=("Jane",),
        header_parameters=(),
        callback_data=f"msg-{seq}",
        accepted_at=1_750_000_000 + at,
        monotonic=at,
        reply="ok",
        async_error_code=None,
    )


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([], 0),
        ([0.0], 1),
        # 0.0 and 1.0 are exactly one second apart, so never in the same window
        ([0.0, 0.5, 0.99, 1.0, 1.5], 3),
        ([0.0, 1.0, 2.0, 3.0], 1),
        ([0.0, 0.1, 0.2, 5.0, 5.0, 5.0, 5.0], 4),
    ],
)
def test_max_in_any_second_uses_half_open_windows(times: list[float], expected: int) -> None:
    assert max_in_any_second(times) == expected


def test_stats_report_busiest_second_per_phone_and_repeated_recipients() -> None:
    ledger = Ledger()
    for seq, (wa_id, at, phone) in enumerate(
        [("1", 0.0, "111"), ("2", 0.2, "111"), ("1", 0.4, "222"), ("3", 2.0, "111")], start=1
    ):
        ledger.record(entry(seq, wa_id, at, phone))
    ledger.rejected[130429] += 2

    stats = ledger.stats()

    assert stats["accepted"] == 4
    assert stats["max_sends_in_any_second"] == 3
    assert stats["max_sends_in_any_second_by_phone_number_id"] == {"111": 2, "222": 1}
    assert stats["recipients_sent_more_than_once"] == {"1": 2}
    assert stats["rejected_by_code"] == {"130429": 2}
    assert stats["sends_per_second"] == [[1_750_000_000, 3], [1_750_000_002, 1]]


def test_page_filters_by_recipient_and_continues_after_seq() -> None:
    ledger = Ledger()
    for seq in range(1, 6):
        ledger.record(entry(seq, "1" if seq % 2 else "2", seq / 10))

    assert [e.seq for e in ledger.page(after=1, limit=2)] == [2, 3]
    assert [e.seq for e in ledger.page(wa_id="1")] == [1, 3, 5]
    assert ledger.by_wamid["wamid.4"].wa_id == "2"
