"""The change stream: every message and run state change, in commit order, resumable by cursor.

A WatchChanges client is cut off in the middle of a run (dispatcher sending with retries and
failures, an ingestor applying provider statuses at the same time) and resumes from its last
cursor: it must have seen every change the database recorded, and each message's changes as an
unbroken chain of its state machine. The sequencer's commit-order rule is shown directly with
two open transactions.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from grpc import aio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.engine import make_engine, make_sessions
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from dispatch_service.domain.lifecycle import ProviderStatus, StatusUpdate
from dispatch_service.persistence import changes as change_log
from dispatch_service.use_cases.apply_status import ApplyStatusCommand, apply_status
from tests.integration.conftest import ApiClient, code_of
from tests.integration.dispatch_support import (
    FakeMeta,
    World,
    accept,
    graph_error,
    running,
    seed_world,
    wait_for,
)
from tests.integration.factories import DEFAULT_SENDER
from tests.integration.test_runs_api import precheck, start
from tests.status_support import seed_run

PHONES = [f"+1415555{n:04d}" for n in range(40)]
MESSAGE_STATES = {int(v): k for k, v in types.MessageState.items()}


def script(body: dict[str, Any], before: int) -> httpx.Response:
    """Every 5th recipient needs a retry; every 7th is refused for good."""
    n = int(body["to"][-4:])
    if n % 7 == 3:
        return graph_error(131026, title="Message undeliverable")
    if n % 5 == 0 and before == 0:
        return graph_error(131000)
    return accept(body, before)


async def ingest_statuses(
    sessions: async_sessionmaker[AsyncSession], database_url: str, stop: asyncio.Event
) -> None:
    """An ingestor: delivered (then read for half) for every message that has a provider id."""
    done: set[str] = set()
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    while not stop.is_set():
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT provider_message_id, phone_e164 FROM invite_message"
                " WHERE provider_message_id IS NOT NULL"
            ).fetchall()
        for wamid, phone in rows:
            if wamid in done:
                continue
            done.add(wamid)
            statuses = [StatusUpdate(wamid, ProviderStatus("delivered", t0), DEFAULT_SENDER)]
            if int(phone[-1]) % 2 == 0:
                at = t0 + timedelta(seconds=5)
                statuses.append(StatusUpdate(wamid, ProviderStatus("read", at), DEFAULT_SENDER))
            await apply_status(ApplyStatusCommand(statuses=statuses), sessions)
        await asyncio.sleep(0.02)


async def read_some(call: Any, count: int | None, quiet: float) -> list[pb.Change]:
    """Up to `count` changes from a WatchChanges call (all until `quiet` seconds pass with
    nothing new when count is None)."""
    seen: list[pb.Change] = []
    while count is None or len(seen) < count:
        try:
            reply = await asyncio.wait_for(call.read(), quiet)
        except TimeoutError:
            break
        assert reply is not grpc.aio.EOF  # type: ignore[attr-defined]
        seen.append(reply.change)
    return seen


def database_changes(database_url: str, workspace_id: uuid.UUID) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT seq, message_id, from_state, to_state FROM change_log"
            " WHERE workspace_id = %s ORDER BY seq",
            [workspace_id],
        ).fetchall()


def state_name(value: int) -> str | None:
    return MESSAGE_STATES[value].removeprefix("MESSAGE_STATE_").lower() if value else None


async def test_watch_resumed_from_its_cursor_sees_every_change_in_order(
    database_url: str, grpc_api: ApiClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, [*PHONES, None])
    md = grpc_api.md(str(world.viewer))
    first = grpc_api.dispatch.WatchChanges(pb.WatchChangesRequest(), metadata=md)
    run = await start(grpc_api, world, await precheck(grpc_api, world))
    stop = asyncio.Event()
    ingestor = asyncio.create_task(ingest_statuses(sessions, database_url, stop))
    fake = FakeMeta(script=script, latency=0.01)
    async with running(sessions, fake):
        before = await read_some(first, 25, quiet=10)
        first.cancel()  # the client goes away in the middle of the run
        assert len(before) == 25
        await asyncio.sleep(0.3)
        resumed = grpc_api.dispatch.WatchChanges(
            pb.WatchChangesRequest(after_cursor=before[-1].cursor), metadata=md
        )

        async def finished() -> bool:
            status = await grpc_api.dispatch.GetRunStatus(
                pb.GetRunStatusRequest(run_id=run.run_id), metadata=md
            )
            return status.status.run.state == types.RUN_STATE_COMPLETED

        await wait_for(finished, timeout=30, what="the run to complete")
    await asyncio.sleep(0.3)
    stop.set()
    await ingestor
    after = await read_some(resumed, None, quiet=1.5)
    resumed.cancel()

    seen = before + after
    cursors = [int(c.cursor) for c in seen]
    assert cursors == sorted(cursors)
    assert len(set(cursors)) == len(cursors)
    await change_log.sequence_pending(sessions())
    stored = database_changes(database_url, world.workspace_id)
    assert [(int(c.cursor), c.message_id or None) for c in seen] == [
        (seq, str(mid) if mid else None) for seq, mid, _, _ in stored
    ]
    chains: dict[str, list[tuple[str | None, str | None]]] = defaultdict(list)
    for c in seen:
        if c.kind == pb.CHANGE_KIND_MESSAGE:
            chains[c.message_id].append((state_name(c.message_from), state_name(c.message_to)))
    with psycopg.connect(database_url) as conn:
        now: dict[str, str] = dict(
            conn.execute(
                "SELECT id::text, state FROM invite_message WHERE run_id = %s", [run.run_id]
            ).fetchall()
        )
    assert set(chains) == set(now)
    for message_id, chain in chains.items():
        assert chain[0][0] is None, chain  # created first
        for (_, to), (frm, _) in itertools.pairwise(chain):
            assert frm == to, chain  # each change starts where the previous one ended
        assert chain[-1][1] == now[message_id]
    moves = {move for chain in chains.values() for move in chain}
    assert {("sending", "queued"), ("sent", "delivered"), ("sending", "failed")} <= moves
    run_changes = [(c.run_from, c.run_to) for c in seen if c.kind == pb.CHANGE_KIND_RUN]
    assert run_changes[0] == (types.RUN_STATE_UNSPECIFIED, types.RUN_STATE_QUEUED)
    assert run_changes[-1][1] == types.RUN_STATE_COMPLETED


async def test_numbers_follow_commit_order_not_insert_order(
    database_url: str, grpc_api: ApiClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES[:2])
    md = grpc_api.md(str(world.viewer))
    run = await start(grpc_api, world, await precheck(grpc_api, world))
    listed = await grpc_api.dispatch.ListChanges(pb.ListChangesRequest(), metadata=md)
    assert len(listed.changes) == 3  # the run and its two messages, created
    cursor = listed.next_cursor
    with psycopg.connect(database_url) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM invite_message WHERE run_id = %s ORDER BY position", [run.run_id]
            )
        ]

    slow = psycopg.connect(database_url)  # changes first, commits last
    fast = psycopg.connect(database_url)
    try:
        # (different moves: the test databases' transition audit would serialise equal ones)
        update = "UPDATE invite_message SET state = %s WHERE id = %s"
        slow.execute(update, ["sending", ids[0]])
        fast.execute(update, ["cancelled", ids[1]])
        fast.commit()
        page = await grpc_api.dispatch.ListChanges(
            pb.ListChangesRequest(after_cursor=cursor), metadata=md
        )
        # The slow transaction's change has the lower id but is not committed: it is not
        # numbered yet, and the committed one is numbered right after the cursor.
        assert [c.message_id for c in page.changes] == [str(ids[1])]
        assert int(page.changes[0].cursor) == int(cursor) + 1
        slow.commit()
    finally:
        slow.close()
        fast.close()
    page = await grpc_api.dispatch.ListChanges(
        pb.ListChangesRequest(after_cursor=page.next_cursor), metadata=md
    )
    assert [c.message_id for c in page.changes] == [str(ids[0])]
    assert int(page.changes[0].cursor) == int(cursor) + 2


async def test_filters_paging_and_bad_or_expired_cursors(
    database_url: str, grpc_api: ApiClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world: World = seed_world(database_url, PHONES[:6])
    other = seed_world(database_url, PHONES[:2])
    md = grpc_api.md(str(world.viewer))
    run = await start(grpc_api, world, await precheck(grpc_api, world))
    await start(grpc_api, other, await precheck(grpc_api, other))
    await grpc_api.dispatch.CancelRun(
        pb.CancelRunRequest(run_id=run.run_id), metadata=grpc_api.md(str(world.parent_admin))
    )

    seen: list[pb.Change] = []
    cursor = ""
    for _ in range(10):
        page = await grpc_api.dispatch.ListChanges(
            pb.ListChangesRequest(after_cursor=cursor, page_size=4), metadata=md
        )
        seen += page.changes
        if not page.changes:
            break
        cursor = page.next_cursor
    # Only this workspace: 6 created + 6 cancelled messages, the run created and cancelled.
    assert len(seen) == 14
    assert all(c.run_id == run.run_id for c in seen)
    runs_only = await grpc_api.dispatch.ListChanges(
        pb.ListChangesRequest(kinds=[pb.CHANGE_KIND_RUN]), metadata=md
    )
    assert [(c.run_from, c.run_to) for c in runs_only.changes] == [
        (types.RUN_STATE_UNSPECIFIED, types.RUN_STATE_QUEUED),
        (types.RUN_STATE_QUEUED, types.RUN_STATE_CANCELLED),
    ]
    # The filtered page ends at the log's head: continuing after it skips what was filtered.
    assert int(runs_only.next_cursor) >= int(seen[-1].cursor)

    for request, expected in (
        (pb.ListChangesRequest(after_cursor="abc"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.ListChangesRequest(run_id=str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND),
        (pb.ListChangesRequest(page_size=100_000), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(aio.AioRpcError) as caught:
            await grpc_api.dispatch.ListChanges(request, metadata=md)
        assert code_of(caught.value) == expected

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE change_log SET changed_at = now() - interval '30 days'")
    async with sessions() as session:
        assert await change_log.prune(session, retention_seconds=3600) > 0
    with pytest.raises(aio.AioRpcError) as caught:
        await grpc_api.dispatch.ListChanges(pb.ListChangesRequest(after_cursor="1"), metadata=md)
    assert code_of(caught.value) == grpc.StatusCode.FAILED_PRECONDITION


PENDING_ROWS = 3000


def add_pending(conn: psycopg.Connection[Any], count: int) -> None:
    """Add `count` changes that are not numbered yet (committed with the caller's transaction)."""
    conn.execute(
        "INSERT INTO change_log (workspace_id, kind, run_id, event_id, to_state)"
        " SELECT gen_random_uuid(), 'message', gen_random_uuid(), gen_random_uuid(),"
        " 'queued' FROM generate_series(1, %s)",
        [count],
    )


async def test_numbering_is_planned_for_the_log_it_finds_not_the_empty_one_it_started_on(
    database_url: str,
) -> None:
    """psycopg prepares a statement at its fifth run, and Postgres may then keep one generic plan
    for it. The sequencer starts on an empty log: a plan kept from then re-ran the pending rows'
    sort once per row of the table (18 s and more for one round after a 100,000-message run in
    bench/dispatch.py; here 4.8 s for 3,000 rows, 0.03 s planned for the table as it is). Every
    round must be planned for the table as it is."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE change_log")  # Postgres now knows the log as empty
    engine = make_engine(database_url, pool_size=1, max_overflow=0)  # one connection throughout
    sessions = make_sessions(engine)
    try:
        # psycopg prepares at the 5th run; Postgres plans the first 5 runs of a prepared
        # statement for their parameters, then may keep a generic plan.
        for _ in range(12):
            assert await change_log.sequence_pending(sessions()) == 0
        with psycopg.connect(database_url) as conn:
            add_pending(conn, PENDING_ROWS)
        assert await change_log.sequence_pending(sessions()) == PENDING_ROWS
        async with sessions() as session:
            plans = (
                await session.execute(
                    text(
                        "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                        " WHERE statement LIKE '%WITH pending AS%'"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    # Prepared after a few rounds (so it is the setting, not chance, that plans it each time),
    # and never run from a generic plan since.
    assert plans.generic_plans == 0
    assert plans.custom_plans >= 6
    with psycopg.connect(database_url) as conn:
        numbered = conn.execute("SELECT seq FROM change_log ORDER BY id").fetchall()
    assert [seq for (seq,) in numbered] == list(range(1, PENDING_ROWS + 1))


def _buffers(conn: psycopg.Connection[Any], statement: str) -> int:
    """Shared buffers a statement touched (it runs, in a transaction the caller rolls back)."""
    row = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}").fetchone()
    assert row is not None
    top = row[0][0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


async def test_the_head_is_one_row_whatever_the_statistics_say(database_url: str) -> None:
    """Analysed while its rows were not numbered yet (a seed, a burst between two rounds),
    Postgres answered max(seq) by reading every numbered row: each sequencer round and each
    reader's head grew with the log until the next analyse (5.3 ms of a 12.7 ms round at 20,000
    numbered rows), and numbering 10 rows joined them to the whole log by hashing. The head is
    one row now, and every pending row is looked up by key."""
    numbered_rows = 20_000
    with psycopg.connect(database_url, autocommit=True) as conn:
        add_pending(conn, numbered_rows)
        conn.execute("ANALYZE change_log")  # Postgres now knows no row as numbered
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        assert await change_log.sequence_pending(make_sessions(engine)()) == numbered_rows
        assert await change_log.sequence_pending(make_sessions(engine)()) == 0
    finally:
        await engine.dispose()
    with psycopg.connect(database_url) as conn:
        add_pending(conn, 10)
        conn.execute(str(change_log.PLANNING))
        head = _buffers(conn, str(change_log.HEAD))
        round_ = _buffers(conn, str(change_log.SEQUENCE).replace(":limit", "50000"))
        numbers = conn.execute(
            "SELECT min(seq), max(seq) FROM change_log WHERE seq > %s", [numbered_rows]
        ).fetchone()
        top = conn.execute(str(change_log.HEAD)).fetchone()
        conn.rollback()
    assert numbers == (numbered_rows + 1, numbered_rows + 10)  # dense, after the head
    assert top == (numbered_rows + 10,)
    # max(seq) read every numbered row (365 pages here), and a hash join the whole log (594
    # pages): a round of 10 rows takes about 185 pages, most for the pending index's entries of
    # rows numbered since the last vacuum.
    assert head <= 2
    assert round_ < 400


@pytest.mark.parametrize("statement", ["DELETE FROM change_log_head", "TRUNCATE change_log_head"])
async def test_the_head_row_cannot_be_removed_and_numbering_goes_on(
    database_url: str, statement: str
) -> None:
    """Without the head row every number a round gave was NULL and the round reported none:
    numbering stopped with no error (migration 0026)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RestrictViolation, match="keeps its one row"):
            conn.execute(statement)
        add_pending(conn, 3)
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        assert await change_log.sequence_pending(make_sessions(engine)()) == 3
    finally:
        await engine.dispose()


UPDATE_TRIGGERS = ("change_log_message_update", "change_log_run_update")


def test_the_update_triggers_never_plan_their_join_as_a_nested_loop(database_url: str) -> None:
    # CREATE OR REPLACE FUNCTION without the SET clause would silently drop the setting.
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT proname, proconfig FROM pg_proc WHERE proname = ANY(%s)",
            [list(UPDATE_TRIGGERS)],
        ).fetchall()
    assert dict(rows) == {name: ["enable_nestloop=off"] for name in UPDATE_TRIGGERS}


def test_a_large_update_after_a_one_message_update_joins_its_rows_by_hash(
    database_url: str,
) -> None:
    """PL/pgSQL keeps the plan a connection made first: before the fix, a first update of one
    message left the change-log trigger comparing every new row with every old row."""
    run = seed_run(database_url, 400)
    plans: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            conn.execute("LOAD 'auto_explain'")
        except psycopg.Error:
            pytest.skip("auto_explain is not installed with this Postgres (pgserver's build)")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_nested_statements = on",
            "client_min_messages = log",
        ):
            conn.execute(f"SET {setting}")
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        update = (
            "UPDATE invite_message SET state = 'delivered'"
            " WHERE id IN (SELECT id FROM invite_message WHERE run_id = %s AND state = 'sent'"
            " ORDER BY position LIMIT %s)"
        )
        conn.execute(update, [run.run_id, 1])
        plans.clear()
        conn.execute(update, [run.run_id, 399])
    (trigger,) = [p for p in plans if "INSERT INTO change_log" in p]
    assert "Hash Join" in trigger or "Merge Join" in trigger
    assert "Nested Loop" not in trigger
