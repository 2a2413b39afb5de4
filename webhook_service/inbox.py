"""The durable inbox: webhook receipts in Postgres (SQLAlchemy Core on the ingestor's engine).

A receipt is stored before Meta gets its 200, with the body exactly as received. An identical
redelivery has the same SHA-256 and is the same receipt (INSERT … ON CONFLICT DO NOTHING).
A receipt stays ``pending`` until ApplyStatus succeeded for its readable updates, then it is
``applied`` (flagged ``unreadable_items`` when some items could not be read, ``ignored`` when it
carried nothing for us, with ``notes`` saying which items and why); or it is ``flagged`` when
it can never be applied (not JSON, unknown shape, unknown sender).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from base64 import b64encode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.db.engine import autocommit_connection, driver_autocommit
from common.outages import OutageLog

log = logging.getLogger(__name__)

KEPT_HEADERS = (
    "content-type",
    "content-length",
    "user-agent",
    "x-hub-signature-256",
    "x-twilio-signature",
    "x-forwarded-for",
    "x-request-id",
)
"""Request headers stored with a receipt (the signature is kept: it is what proves the body)."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A stored receipt as the forwarder needs it."""

    id: uuid.UUID
    body: bytes
    received_at: datetime
    provider: str = "meta"
    """meta (a Graph JSON body) or twilio (webhook_service.twilio.receipt_body)."""


INSERT_RECEIPTS = """
    INSERT INTO webhook_receipt (body, body_sha256, headers, signature_verdict, state, provider)
    SELECT decode(v.body, 'base64'), decode(v.sha256, 'hex'), CAST(v.headers AS jsonb), 'valid',
           'pending', v.provider
    FROM json_to_recordset(CAST(%(rows)s AS json))
         AS v(body text, sha256 text, headers json, provider text)
    ON CONFLICT (body_sha256) DO NOTHING
    RETURNING id, body_sha256, received_at
"""
"""A batch of bodies travels as one JSON text (bodies in base64, hashes in hex): Postgres reads
it in C, where psycopg would adapt four Python lists element by element. In the driver's
parameter style: it runs on the pooled connection's own psycopg connection."""
CLAIM_PENDING = text("""
    SELECT id, body, received_at, provider FROM webhook_receipt
    WHERE state = 'pending' AND received_at < now() - make_interval(secs => :min_age)
    ORDER BY attempts, received_at
    LIMIT :limit
    FOR NO KEY UPDATE SKIP LOCKED
""")
SENDER_BINDINGS = text("""
    SELECT sender_phone_number_id AS phone_number_id, count(*) AS workspaces,
           min(id::text) AS some_workspace
    FROM workspace WHERE sender_phone_number_id = ANY(CAST(:ids AS text[]))
    GROUP BY sender_phone_number_id
""")
PENDING_STATS = text("""
    SELECT count(*) AS pending, EXTRACT(EPOCH FROM now() - min(received_at)) AS oldest
    FROM webhook_receipt WHERE state = 'pending'
""")


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers worth keeping with a receipt, as text JSON and jsonb can hold: aiohttp keeps
    bytes that are not UTF-8 as lone surrogates and jsonb refuses NUL, and a header nobody
    signed must never make a verified body unstorable."""
    return {name: _storable(headers[name]) for name in KEPT_HEADERS if name in headers}


def _storable(value: str) -> str:
    if value.isascii() and "\x00" not in value:
        return value
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


@dataclass
class _Waiting:
    body: bytes
    sha256: bytes
    headers: dict[str, str]
    provider: str
    done: asyncio.Future[Receipt | None]


class ReceiptWriter:
    """Stores verified bodies with group commit: whatever POSTs are waiting when the writer is
    free go into one multi-row INSERT … ON CONFLICT DO NOTHING and one commit, and each POST is
    answered only once its row is committed. Under load this is far fewer statements and
    commits than POSTs (and one pooled connection instead of one per concurrent POST); when
    idle a POST waits for nothing but its own INSERT.
    """

    FLUSHES_IN_FLIGHT = 2
    LINGER_SECONDS = 0.002
    """While a flush is out, how long the next one waits for neighbours to join it."""
    LINGER_BELOW = 16
    """The next flush lingers only while fewer bodies than this are waiting."""
    MAX_HELD_BYTES = 64 * 1024 * 1024
    """Bodies waiting to be stored or being stored, in bytes, past which a POST is refused at
    once (its sender redelivers it): while Postgres hangs, memory stays bounded however many
    POSTs and redeliveries arrive."""

    def __init__(self, engine: AsyncEngine, max_batch: int = 500) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._held_bytes = 0
        """The bodies of `_waiting` and of the flushes in flight."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = OutageLog(log, "storing webhook bodies")

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="receipt-writer")

    async def stop(self) -> None:
        """Stop the writer; POSTs still waiting fail (their senders retry)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for item in self._waiting:
            if not item.done.done():
                item.done.set_exception(ConnectionError("the receipt writer stopped"))
        self._waiting = []

    async def store(
        self, body: bytes, sha256: bytes, headers: Mapping[str, str], provider: str = "meta"
    ) -> Receipt | None:
        """Store a verified body once committed; None when the same body is already stored.
        Raises ConnectionError at once when MAX_HELD_BYTES of bodies are already held."""
        if self._held_bytes + len(body) > self.MAX_HELD_BYTES:
            raise ConnectionError("too many bodies waiting to be stored")
        done: asyncio.Future[Receipt | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(body, sha256, kept_headers(headers), provider, done))
        self._held_bytes += len(body)
        self._wake.set()
        return await done

    async def _run(self) -> None:
        # Two flushes may overlap: POSTs arriving during one commit go out with the next
        # instead of waiting for it, which halves the wait at the tail.
        slots = asyncio.Semaphore(self.FLUSHES_IN_FLIGHT)
        flushes: set[asyncio.Task[None]] = set()

        def finished(flush: asyncio.Task[None]) -> None:
            flushes.discard(flush)
            slots.release()

        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if flushes and len(self._waiting) < self.LINGER_BELOW:
                    # Under load (a flush is already out): let neighbours join this one for a
                    # moment. A statement costs ~120 µs of CPU whatever its size, so flushes of
                    # two or three bodies each were most of the writer's work at 3,000 POSTs/s.
                    # Idle, a POST is written at once.
                    await asyncio.sleep(self.LINGER_SECONDS)
                while self._waiting:
                    await slots.acquire()
                    batch = self._waiting[: self._max_batch]
                    self._waiting = self._waiting[self._max_batch :]
                    flush = asyncio.create_task(self._flush(batch))
                    flushes.add(flush)
                    flush.add_done_callback(finished)
        finally:
            for flush in list(flushes):
                flush.cancel()

    async def _flush(self, batch: list[_Waiting]) -> None:
        try:
            await self._insert(batch)
        except asyncio.CancelledError:
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(ConnectionError("the receipt writer stopped"))
            raise
        finally:
            self._held_bytes -= sum(len(item.body) for item in batch)

    async def _insert(self, batch: list[_Waiting]) -> None:
        try:
            # One INSERT is one transaction of its own: in autocommit it commits before the
            # server says it is ready again, which psycopg waits for before returning the rows,
            # so a POST is still answered only once its row is committed, without a BEGIN and a
            # COMMIT round trip around every flush (flushes are small at 3,000 POSTs/s).
            async with driver_autocommit(self._engine) as conn:
                cursor = await conn.execute(INSERT_RECEIPTS, {"rows": _rows(batch)})
                stored = {bytes(sha256): (id_, at) for id_, sha256, at in await cursor.fetchall()}
        except Exception as error:  # every waiting POST answers 503 and Meta retries
            self._failures.failed(error)
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(error)
            return
        self._failures.succeeded()
        for item in batch:
            row = stored.pop(item.sha256, None)  # a second identical body in the batch: None
            if not item.done.done():
                receipt = (
                    Receipt(row[0], item.body, row[1], item.provider) if row is not None else None
                )
                item.done.set_result(receipt)


def _rows(batch: Sequence[_Waiting]) -> str:
    """INSERT_RECEIPTS's rows parameter."""
    return orjson.dumps(
        [
            {
                "body": b64encode(item.body).decode(),
                "sha256": item.sha256.hex(),
                "headers": item.headers,
                "provider": item.provider,
            }
            for item in batch
        ]
    ).decode()


async def claim_pending(
    conn: AsyncConnection, *, limit: int, min_age_seconds: float
) -> list[Receipt]:
    """Lock up to `limit` pending receipts older than `min_age_seconds`, skipping ones another
    ingestor holds; the locks last until `conn`'s transaction ends.

    NO KEY UPDATE, not UPDATE: the weakest lock that keeps other writers off the receipts (their
    key never changes)."""
    rows = await conn.execute(CLAIM_PENDING, {"limit": limit, "min_age": min_age_seconds})
    return [Receipt(row.id, bytes(row.body), row.received_at, row.provider) for row in rows]


async def sender_bindings(
    conn: AsyncConnection, phone_number_ids: Sequence[str]
) -> dict[str, uuid.UUID | None]:
    """Known sender phone number ids -> their workspace when exactly one uses it, else None."""
    if not phone_number_ids:
        return {}
    rows = await conn.execute(SENDER_BINDINGS, {"ids": list(phone_number_ids)})
    return {
        row.phone_number_id: uuid.UUID(row.some_workspace) if row.workspaces == 1 else None
        for row in rows
    }


async def pending_stats(engine: AsyncEngine) -> tuple[int, float]:
    """How many receipts are pending and the oldest one's age in seconds."""
    async with autocommit_connection(engine) as conn:
        row = (await conn.execute(PENDING_STATS)).one()
    return int(row.pending), float(row.oldest or 0.0)
