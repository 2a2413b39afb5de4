"""`invites messages RUN --csv`: RFC 4180 output a spreadsheet opens cleanly."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator

from google.protobuf.timestamp_pb2 import Timestamp

from cli.export_csv import HEADER, write_csv
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types


async def batches() -> AsyncIterator[pb.ExportRunMessagesResponse]:
    yield pb.ExportRunMessagesResponse(
        messages=[
            pb.ExportedMessage(
                message_id="m1",
                position=0,
                phone_e164="+14155550001",
                state=types.MESSAGE_STATE_FAILED,
                reason=types.REJECTION_REASON_PROVIDER_REJECTED,
                error_code=131026,
                error_title='Message "undeliverable", see details\nline two',
                language="en_US",
                sent_at=Timestamp(seconds=1_764_876_000),
                failed_at=Timestamp(seconds=1_764_876_060),
            )
        ]
    )
    yield pb.ExportRunMessagesResponse(
        messages=[
            pb.ExportedMessage(
                message_id="m2",
                position=1,
                state=types.MESSAGE_STATE_BLOCKED,
                reason=types.REJECTION_REASON_DO_NOT_MESSAGE,
                do_not_message_reason="=HYPERLINK(evil)",
                pricing_category="marketing",
                billable=True,
            )
        ]
    )


def test_header_quoting_crlf_and_formula_defusing() -> None:
    out = io.StringIO(newline="")
    assert asyncio.run(write_csv(batches(), out)) == 2
    text = out.getvalue()
    assert text.startswith(",".join(HEADER) + "\r\n")
    assert '"Message ""undeliverable"", see details\nline two"' in text  # RFC 4180 quoting
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert [len(r) for r in rows] == [len(HEADER)] * 3
    first = dict(zip(HEADER, rows[1], strict=True))
    assert first["outcome"] == "failed"
    assert first["reason"] == "provider_rejected"
    assert first["phone_e164"] == "+14155550001"  # phones keep their +
    assert first["sent_at"] == "2025-12-04T19:20:00Z"
    assert first["delivered_at"] == ""
    second = dict(zip(HEADER, rows[2], strict=True))
    assert second["do_not_message_reason"] == "'=HYPERLINK(evil)"
    assert (second["pricing_category"], second["billable"]) == ("marketing", "true")
