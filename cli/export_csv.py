"""`invites messages RUN --csv`: a run's recipients as spreadsheet-clean CSV.

RFC 4180: a header row, comma separators, CRLF line ends, fields quoted when they hold a comma,
quote or line break (quotes doubled). Times are ISO 8601 UTC. Free-text cells that a spreadsheet
would read as a formula (starting with =, +, - or @) get a leading apostrophe; phones keep their
`+` (they are E.164, never formulas, but some spreadsheets show them as numbers: import the
column as text).
"""

from __future__ import annotations

import csv
import time
from collections.abc import AsyncIterator
from typing import TextIO

from google.protobuf.timestamp_pb2 import Timestamp

from cli.output import enum_name
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2

HEADER = (
    "message_id",
    "position",
    "guest_unit_id",
    "person_id",
    "phone_e164",
    "outcome",
    "reason",
    "error_code",
    "error_title",
    "do_not_message_reason",
    "language",
    "pricing_category",
    "billable",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
)


STATES = {v: enum_name(types_pb2.MessageState, v) for v in types_pb2.MessageState.values()}
REASONS = {v: enum_name(types_pb2.RejectionReason, v) for v in types_pb2.RejectionReason.values()}
REASONS[types_pb2.REJECTION_REASON_UNSPECIFIED] = ""


def _time(value: Timestamp) -> str:
    """ISO 8601 UTC to the second (what spreadsheets parse), or empty when unset."""
    if not value.seconds:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value.seconds))


def _text(value: str) -> str:
    """A free-text cell, defused when a spreadsheet would evaluate it."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def row(message: pb.ExportedMessage) -> list[str]:
    """One CSV row."""
    return [
        message.message_id,
        str(message.position),
        message.guest_unit_id,
        message.person_id,
        message.phone_e164,
        STATES[message.state],
        REASONS[message.reason],
        str(message.error_code) if message.error_code else "",
        _text(message.error_title),
        _text(message.do_not_message_reason),
        message.language,
        message.pricing_category,
        "true" if message.billable else "false",
        _time(message.sent_at),
        _time(message.delivered_at),
        _time(message.read_at),
        _time(message.failed_at),
    ]


async def write_csv(batches: AsyncIterator[pb.ExportRunMessagesResponse], out: TextIO) -> int:
    """Write the header and every exported message; how many rows."""
    writer = csv.writer(out, dialect="excel", lineterminator="\r\n")
    writer.writerow(HEADER)
    count = 0
    async for batch in batches:
        writer.writerows(row(m) for m in batch.messages)
        count += len(batch.messages)
    return count
