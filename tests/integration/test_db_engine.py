"""The services' engine: what every connection it opens starts with."""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import text

from common.db.engine import make_engine


async def _show(database_url: str, *names: str) -> list[str]:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            return [str((await connection.execute(text(f"SHOW {n}"))).scalar_one()) for n in names]
    finally:
        await engine.dispose()


async def test_connections_run_without_jit(database_url: str) -> None:
    # The server's default is on; a statement past jit_above_cost would be compiled.
    assert await _show(database_url, "jit") == ["off"]


async def test_options_given_in_the_url_are_kept_beside_it(database_url: str) -> None:
    separator = "&" if "?" in database_url else "?"
    url = f"{database_url}{separator}options={quote('-c statement_timeout=4321')}"
    assert await _show(url, "jit", "statement_timeout") == ["off", "4321ms"]
