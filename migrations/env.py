"""Alembic environment: the only way the schema changes. Target metadata is common.db.models."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from common.db.models import Base
from common.settings import sqlalchemy_url

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("configuration error:\n  DATABASE_URL: is required")
    return sqlalchemy_url(str(url))


def run_migrations() -> None:
    """Apply migrations over one connection (online mode only: we always have a database)."""
    engine = create_engine(_database_url(), poolclass=pool.NullPool, hide_parameters=True)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
