"""Stores for suites that run every test on a SQLite file and on PostgreSQL (metering, audit).

A suite's conftest imports these fixtures and defines ``pg_database`` (its own scratch database:
random suffix, dropped after the module; see ``tests.integration.store.conftest.scratch_database``).
Its schema is wiped before each test; the PostgreSQL half is skipped, with the reason, when the server
is unreachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from ferrogate.store.migrate import load_migrations
from ferrogate.store.postgres import PostgresStore
from ferrogate.store.sql import SqlStore
from ferrogate.store.sqlite import SqliteStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def wipe(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``sqlite:<file>`` or the module's PostgreSQL database URL."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'ferrogate.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


def open_url(url: str, **pg: int) -> SqlStore:
    if url.startswith("sqlite:"):
        return SqliteStore(url.removeprefix("sqlite:"))
    return PostgresStore(url, min_size=1, max_size=pg.get("max_size", 4))


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SqlStore]:
    """A store migrated to the packaged schema, on an empty database."""
    if not db_url.startswith("sqlite:"):
        await wipe(db_url)
    opened = open_url(db_url)
    try:
        assert await opened.migrate() == [m.version for m in load_migrations(opened.kind)]
        yield opened
    finally:
        await opened.close()
