"""Test harness: every test that needs Postgres gets its own freshly migrated database.

TEST_DATABASE_URL (any database on the server; we create our own beside it) is used when set;
otherwise an embedded Postgres (pgserver) is started once for the session. Migrations run once
into a template database; each test clones it (CREATE DATABASE ... TEMPLATE), so tests are
isolated even when they start real service processes. The template also records every message
and run state change (tests/transition_audit.py): a test whose code moved a state outside the
domain's transition tables fails at teardown.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.db.embedded import start_embedded_postgres
from common.db.engine import make_engine, make_sessions
from common.db.migrate import upgrade
from common.db.urls import with_database
from tests import webhook_capture
from tests.transition_audit import check_transitions, install_transition_audit


def _admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(with_database(server_url, "postgres"), autocommit=True)


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """Create database `name` (optionally from a template) and return its URL."""
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with _admin(server_url) as conn:
        conn.execute(statement)
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name`, closing any connection left to it."""
    with _admin(server_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """A Postgres server URL: TEST_DATABASE_URL's server, or an embedded one for this session.

    The embedded data lives outside pytest's tmp_path tree: pytest prunes old numbered tmp
    folders when other sessions start, which would delete a running server's data. It is
    removed when the session ends.
    """
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        return configured
    data_dir = Path(tempfile.mkdtemp(prefix="invites-test-pgdata-"))
    return start_embedded_postgres(data_dir, delete_on_exit=True)


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    """A database migrated to head once per session; tests clone it."""
    name = f"invites_tmpl_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server_url, name)
    upgrade(url)
    install_transition_audit(url)
    yield name
    drop_database(pg_server_url, name)


@pytest.fixture
def database_url(pg_server_url: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for this test only (libpq URL)."""
    name = f"invites_test_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_server_url, name, template=template_database)
    yield url
    try:
        check_transitions(url)
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    name = f"invites_empty_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_server_url, name)
    yield url
    drop_database(pg_server_url, name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An async engine on this test's database."""
    engine = make_engine(database_url, pool_size=5, max_overflow=5)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A session factory on this test's database."""
    return make_sessions(engine)


@pytest.fixture(scope="session", autouse=True)
def _capture_sandbox_webhooks() -> Iterator[None]:
    """Record every webhook body in-process sandboxes build (for the pywa contract test)."""
    import sandbox.payloads
    import sandbox.webhooks

    with pytest.MonkeyPatch.context() as patch:
        build = webhook_capture.recording(sandbox.payloads.build_payload)
        patch.setattr(sandbox.webhooks, "build_payload", build)
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The pywa contract test runs last, so it sees every body the sandbox emitted before it."""
    last = [item for item in items if item.nodeid.split("::")[0].endswith("test_pywa_contract.py")]
    items[:] = [item for item in items if item not in last] + last
