"""An embedded Postgres (the `pgserver` package) for `invites up` and the tests: no set-up."""

from __future__ import annotations

import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from common.db.urls import with_database


def start_embedded_postgres(data_dir: Path, *, delete_on_exit: bool = False) -> str:
    """Start (or reuse) a Postgres whose data lives in `data_dir`; return its server URL.

    The server stops when the last process using it exits; with `delete_on_exit` its data
    directory is removed then too.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
        warnings.simplefilter("ignore")
        import pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(  # type: ignore[attr-defined]
            str(data_dir), cleanup_mode="delete" if delete_on_exit else "stop"
        )
    return str(server.get_uri())


def ensure_database(server_url: str, name: str) -> str:
    """Create database `name` on the server if it is missing; return its URL."""
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)
