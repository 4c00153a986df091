"""Stores for the metering suite: each test runs on a SQLite file and on PostgreSQL.

PostgreSQL: one scratch database per test module (random suffix, dropped after the module), its schema
wiped before each test. The PostgreSQL half is skipped, with the reason, when the server is unreachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from ferrogate.store.postgres import PostgresStore
from ferrogate.store.sql import SqlStore
from ferrogate.store.sqlite import SqliteStore
from ferrogate.store.usage import UsageRecord
from tests.integration.store.conftest import scratch_database

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    yield from scratch_database("fg_metering_test")


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
    """A migrated store on an empty database."""
    if not db_url.startswith("sqlite:"):
        await wipe(db_url)
    opened = open_url(db_url)
    try:
        assert await opened.migrate() == [1, 2, 3, 4]
        yield opened
    finally:
        await opened.close()


def usage(n: int, **fields: object) -> UsageRecord:
    """Record number ``n``: distinct, exactly summable token counts and a binary-exact cost."""
    values: dict[str, object] = {
        "request_id": f"req_{n:06d}",
        "created_at": T0 + timedelta(seconds=n),
        "model": "gpt-4o",
        "status": 200,
        "key_id": "key_a",
        "team_id": "team_a",
        "prompt_tokens": n,
        "completion_tokens": 2 * n,
        "cached_tokens": n % 3,
        "reasoning_tokens": n % 5,
        "cost_usd": n / 1024,
        "latency_ms": 12.5,
    }
    values.update(fields)
    return UsageRecord(**values)  # type: ignore[arg-type]
