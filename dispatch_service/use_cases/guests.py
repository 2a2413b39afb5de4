"""Guest imports (a streamed CSV, or explicit contact/manual rows) and guest listings.

An import is one transaction: the import run, every person, household, membership, tag and
import row commit together, or nothing does (a file rejected as a whole leaves no trace). Rows
are read, planned and written in batches, so a 100,000-row file is never held in memory.
The same idempotency key again returns the first run and changes nothing.
See dispatch_service/domain/guests.py for the row rules and docs/guests.md for the format.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.models import ImportRun
from common.vocabulary import ImportRowOutcome, ImportSource
from dispatch_service.domain.actors import WRITERS, Actor
from dispatch_service.domain.guests import (
    MAX_FIELD_CHARS,
    TAG_SEPARATOR,
    BatchPlan,
    CsvGuestReader,
    GuestInput,
    ImportPlanner,
    PreparedRow,
    prepare_rows,
)
from dispatch_service.domain.paging import (
    NOT_OUR_TOKEN,
    encode_page_token,
    page_request,
    single_key,
)
from dispatch_service.domain.phones import normalise_phones
from dispatch_service.errors import FieldViolation, InvalidArgument
from dispatch_service.persistence.audit_log import record_audit
from dispatch_service.persistence.guests import (
    check_guest_keys,
    create_import_run,
    defer_guest_keys,
    find_import_run,
    finish_import_run,
    get_import_run,
    list_guest_units,
    list_import_rows,
    load_batch_state,
    lock_workspace_imports,
    without_jit,
    write_guests,
    write_import_rows,
)
from dispatch_service.persistence.guests import (
    list_import_runs as list_import_runs_query,
)
from dispatch_service.persistence.workspaces import get_workspace
from dispatch_service.read_models import GuestUnitView, ImportRowView
from dispatch_service.use_cases import phone_worker
from dispatch_service.use_cases.acting import READERS, acting

BATCH_ROWS = 4000
SLICE_BYTES = 8192
SLICE_ROWS = 500
"""Reading and preparing rows runs on the event loop while the batch before is written, and
hands the loop back after each slice of the file (SLICE_BYTES) or of a batch (SLICE_ROWS), a
millisecond or so of work: the writer's next statement then starts as soon as Postgres answered
the last, instead of after a whole chunk's parsing or a whole batch's preparation."""
MAX_KEY = 200
MAX_UPSERT_ROWS = 10_000
T = TypeVar("T")
ROW_SOURCES = frozenset({ImportSource.CONTACTS, ImportSource.MANUAL})


@dataclass(frozen=True)
class ImportRequest:
    """What an import is: its idempotency key, source and a file name for display."""

    idempotency_key: str
    source: ImportSource
    file_name: str = ""


@dataclass(frozen=True)
class ImportResult:
    """The import run, and whether this call performed it (False: the key was used before)."""

    run: ImportRun
    created: bool


def csv_import_request(
    idempotency_key: str, source: ImportSource | None, file_name: str
) -> ImportRequest:
    """Validate an ImportGuests header (an unset source means CSV)."""
    violations = _key_violations(idempotency_key, "header.idempotency_key")
    if source not in (None, ImportSource.CSV):
        violations.append(
            FieldViolation("header.source", "ImportGuests takes CSV; send rows with UpsertGuests")
        )
    if len(file_name) > MAX_FIELD_CHARS:
        violations.append(FieldViolation("header.file_name", "is too long"))
    if violations:
        raise InvalidArgument(*violations)
    return ImportRequest(idempotency_key, ImportSource.CSV, file_name)


def rows_import_request(
    idempotency_key: str, source: ImportSource | None, rows: Sequence[GuestInput]
) -> ImportRequest:
    """Validate an UpsertGuests request (source CONTACTS or MANUAL)."""
    violations = _key_violations(idempotency_key, "idempotency_key")
    if source not in ROW_SOURCES:
        violations.append(FieldViolation("source", "must be CONTACTS or MANUAL"))
    if not rows or len(rows) > MAX_UPSERT_ROWS:
        violations.append(FieldViolation("rows", f"must hold 1 to {MAX_UPSERT_ROWS} rows"))
    for index, row in enumerate(rows):
        texts = (row.household, row.name, row.phone, row.side, row.language, *row.tags)
        if any(len(t) > MAX_FIELD_CHARS or "\x00" in t for t in texts):
            violations.append(
                FieldViolation(
                    f"rows[{index}]", f"fields must be text under {MAX_FIELD_CHARS} chars"
                )
            )
    if violations or source is None:
        raise InvalidArgument(*violations)
    return ImportRequest(idempotency_key, source)


def _key_violations(key: str, field: str) -> list[FieldViolation]:
    if not key.strip():
        return [FieldViolation(field, "is required (importing again under it changes nothing)")]
    if len(key) > MAX_KEY:
        return [FieldViolation(field, f"must be at most {MAX_KEY} characters")]
    return []


def guest_row(
    row_number: int,
    *,
    household: str,
    name: str,
    phone: str,
    tags: Sequence[str],
    side: str,
    is_contact: bool,
    language: str = "",
) -> GuestInput:
    """A guest input from an explicit row (UpsertGuests), with its raw form for the import row."""
    raw = {
        "household": household,
        "name": name,
        "phone": phone,
        "tags": TAG_SEPARATOR.join(tags),
        "side": side,
        "is_contact": "yes" if is_contact else "",
        "language": language,
    }
    return GuestInput(
        row_number, name, phone, household, tuple(tags), side, is_contact, raw, language=language
    )


async def csv_batches(
    chunks: AsyncIterable[bytes], max_bytes: int, batch_rows: int | None = None
) -> AsyncIterator[list[GuestInput]]:
    """Batches of rows read incrementally from CSV chunks, refusing files over `max_bytes`."""
    batch_rows = batch_rows or BATCH_ROWS
    reader = CsvGuestReader()
    pending: list[GuestInput] = []
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > max_bytes:
            raise InvalidArgument(
                FieldViolation(
                    "chunk", f"the file is larger than the import limit of {max_bytes} bytes"
                )
            )
        for start in range(0, len(chunk), SLICE_BYTES):
            pending += reader.feed(chunk[start : start + SLICE_BYTES])
            await asyncio.sleep(0)  # a slice at a time: see SLICE_ROWS
        while len(pending) >= batch_rows:
            yield pending[:batch_rows]
            pending = pending[batch_rows:]
    pending += reader.finish()
    for start in range(0, len(pending), batch_rows):
        yield pending[start : start + batch_rows]


async def _row_batches(rows: Sequence[GuestInput]) -> AsyncIterator[list[GuestInput]]:
    size = BATCH_ROWS
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])


class RowPreparer:
    """Normalises batches of rows. Phone normalisation (libphonenumber, the import's main CPU
    cost) moves to one worker process beside the planning and writing here, instead of taking
    turns with them, once the import shows it is large: its first full batch starts the worker,
    and batches are prepared here until the worker has started (spawning it and importing
    libphonenumber there takes a few tenths of a second; waiting for it cost more than doing
    the work here meanwhile). Only the phones go to the worker and only (status, E.164) pairs
    come back: pickling whole rows both ways cost this process more than the parsing it saved.
    The worker is spawned (no fork of a process running gRPC threads) and lives only as long as
    the import; if it cannot start, every batch is prepared here.
    """

    def __init__(self, default_region: str, worker_from_rows: int) -> None:
        self.default_region = default_region
        self.worker_from_rows = worker_from_rows
        self.batches_in_worker = 0
        self._executor: ProcessPoolExecutor | None = None
        self._started: asyncio.Future[list[tuple[str, str | None]]] | None = None

    async def prepare(self, batch: list[GuestInput]) -> list[PreparedRow]:
        """The batch's rows, prepared."""
        loop = asyncio.get_running_loop()
        if self._executor is None and len(batch) >= self.worker_from_rows:
            self._executor = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=phone_worker.start
            )
            # An empty call: done once the worker has started and imported the parser.
            self._started = loop.run_in_executor(
                self._executor, normalise_phones, [], self.default_region
            )
        phones = None
        if _succeeded(self._started):
            phones = await loop.run_in_executor(
                self._executor, normalise_phones, [row.phone for row in batch], self.default_region
            )
            self.batches_in_worker += 1
        prepared: list[PreparedRow] = []
        for start in range(0, len(batch), SLICE_ROWS):
            end = start + SLICE_ROWS
            prepared += prepare_rows(
                batch[start:end], self.default_region, phones[start:end] if phones else None
            )
            await asyncio.sleep(0)  # a slice at a time: see SLICE_ROWS
        return prepared

    def close(self) -> None:
        """Stop the worker, if one was started."""
        _succeeded(self._started)  # its error, if any, is retrieved: no "never retrieved" noise
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _succeeded(future: asyncio.Future[Any] | None) -> bool:
    """Whether `future` has ended with a result."""
    if future is None or not future.done() or future.cancelled():
        return False
    return future.exception() is None


async def _prepared(
    batches: AsyncIterator[list[GuestInput]], preparer: RowPreparer
) -> AsyncIterator[list[PreparedRow]]:
    async for batch in batches:
        yield await preparer.prepare(batch)


_END = object()


async def read_ahead(source: AsyncIterator[T], depth: int = 2) -> AsyncGenerator[T, None]:
    """`source`'s items, produced by a task of their own up to `depth` items ahead.

    Reading and preparing rows (CSV parsing, phone normalisation) is CPU work; writing a batch is
    waiting on Postgres. Running the first in its own task lets it use those waits, so the two
    overlap. An error in `source` is raised here, at the item where it happened.
    """
    queue: asyncio.Queue[tuple[object, BaseException | None]] = asyncio.Queue(depth)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put((item, None))
            await queue.put((_END, None))
        except Exception as error:  # handed to the consumer, which raises it
            await queue.put((_END, error))

    task = asyncio.create_task(pump())
    try:
        while True:
            item, error = await queue.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _plan_batch(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    run_id: uuid.UUID,
    planner: ImportPlanner,
    rows: list[PreparedRow],
    previous: BatchPlan | None,
) -> BatchPlan:
    """Look up what the rows mention and plan them, meanwhile checking the previous batch's keys
    and writing its import rows.

    The lookups read people and households, which the previous batch has already written; the
    checks of its keys and its import rows, which no lookup needs, go to Postgres while a thread
    plans this batch. So Postgres checks and stores while Python plans, instead of each waiting
    for the other. The planner touches only its own objects, never the session.
    """
    state = await load_batch_state(session, workspace_id, rows)
    plan = functools.partial(
        planner.plan,
        rows,
        state.persons_by_phone,
        state.units_by_name,
        state.units_by_id,
        state.unphoned_by_unit,
    )
    if previous is None:
        return plan()
    planning = asyncio.get_running_loop().run_in_executor(None, plan)
    writing = asyncio.ensure_future(_finish_batch(session, run_id, previous))
    try:
        await asyncio.wait((planning, writing))
    except BaseException:  # cancelled: the write stops before the session is rolled back
        writing.cancel()
        await asyncio.wait((writing,))
        raise
    writing.result()
    return planning.result()


async def _finish_batch(session: AsyncSession, run_id: uuid.UUID, plan: BatchPlan) -> None:
    """Check the keys of a written batch and write its import rows."""
    await check_guest_keys(session)
    await write_import_rows(session, run_id, plan)


async def _import(
    session: AsyncSession,
    actor: Actor,
    request: ImportRequest,
    batches: AsyncIterator[list[GuestInput]],
) -> ImportResult:
    await lock_workspace_imports(session, actor.workspace_id)
    await without_jit(session)
    await defer_guest_keys(session)
    earlier = await find_import_run(session, actor.workspace_id, request.idempotency_key)
    if earlier is not None:
        return ImportResult(earlier, created=False)
    workspace = await get_workspace(session, actor.workspace_id)
    run = await create_import_run(
        session,
        workspace_id=actor.workspace_id,
        actor_id=actor.member_id,
        source=request.source,
        idempotency_key=request.idempotency_key,
        file_name=request.file_name,
    )
    planner, counts = ImportPlanner(), Counter[ImportRowOutcome]()
    preparer = RowPreparer(workspace.default_region, worker_from_rows=BATCH_ROWS)
    try:
        # aclosing: on an error the read-ahead task is stopped here, not when garbage collected.
        async with contextlib.aclosing(read_ahead(_prepared(batches, preparer))) as prepared:
            previous: BatchPlan | None = None
            async for rows in prepared:
                plan = await _plan_batch(
                    session, actor.workspace_id, run.id, planner, rows, previous
                )
                await write_guests(session, actor.workspace_id, plan)
                counts.update(r.outcome for r in plan.rows)
                previous = plan
            if previous is not None:
                await _finish_batch(session, run.id, previous)
    finally:
        preparer.close()
    run = await finish_import_run(session, run, counts)
    record_audit(
        session,
        workspace_id=actor.workspace_id,
        actor_id=actor.member_id,
        action="guests.import",
        subject_type="import_run",
        subject_id=run.id,
        details={
            "source": run.source,
            "file_name": run.file_name,
            "idempotency_key": run.idempotency_key,
            "total_rows": run.total_rows,
            **{o.value: counts.get(o, 0) for o in ImportRowOutcome},
        },
    )
    return ImportResult(run, created=True)


async def import_guests_csv(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    request: ImportRequest,
    chunks: AsyncIterable[bytes],
    max_bytes: int,
) -> ImportResult:
    """Import a CSV streamed as byte chunks (admin or parent_admin)."""
    async with acting(sessions, actor_id, WRITERS, "import guests") as (session, actor):
        return await _import(session, actor, request, csv_batches(chunks, max_bytes))


async def upsert_guests(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    request: ImportRequest,
    rows: Sequence[GuestInput],
) -> ImportResult:
    """Import explicit rows (contacts or manual entry) with the same rules as a CSV."""
    async with acting(sessions, actor_id, WRITERS, "import guests") as (session, actor):
        return await _import(session, actor, request, _row_batches(rows))


async def list_run_rows(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    import_run_id: uuid.UUID,
    outcomes: Sequence[ImportRowOutcome],
    page_size: int,
    page_token: str,
) -> tuple[ImportRun, list[ImportRowView], str]:
    """The run, a page of its rows in input order, and the next page's token."""
    page = page_request(page_size, page_token, key_length=1)
    after = single_key(page, int, 0)
    async with acting(sessions, actor_id, READERS, "list import rows") as (session, actor):
        run = await get_import_run(session, actor.workspace_id, import_run_id)
        rows = await list_import_rows(session, run.id, outcomes, after, page.size + 1)
    token = ""
    if len(rows) > page.size:
        rows = rows[: page.size]
        token = encode_page_token([rows[-1].row_number])
    return run, rows, token


async def list_households(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    page_size: int,
    page_token: str,
) -> tuple[list[GuestUnitView], str]:
    """A page of the workspace's households by name and the next page's token."""
    page = page_request(page_size, page_token, key_length=1)
    after = single_key(page, str, "")
    async with acting(sessions, actor_id, READERS, "list households") as (session, actor):
        units = await list_guest_units(session, actor.workspace_id, after, page.size + 1)
    token = ""
    if len(units) > page.size:
        units = units[: page.size]
        token = encode_page_token([units[-1].name])
    return units, token


async def list_import_runs(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    page_size: int,
    page_token: str,
) -> tuple[list[ImportRun], str]:
    """A page of the workspace's import runs, newest first, and the next page's token."""
    page = page_request(page_size, page_token, key_length=2)
    before = None
    if page.after is not None:
        try:
            before = (datetime.fromisoformat(page.after[0]), uuid.UUID(page.after[1]))
        except (TypeError, ValueError):
            raise InvalidArgument(FieldViolation("page_token", NOT_OUR_TOKEN)) from None
    async with acting(sessions, actor_id, READERS, "list import runs") as (session, actor):
        runs = await list_import_runs_query(session, actor.workspace_id, before, page.size + 1)
    token = ""
    if len(runs) > page.size:
        runs = runs[: page.size]
        token = encode_page_token([runs[-1].created_at.isoformat(), str(runs[-1].id)])
    return runs, token
