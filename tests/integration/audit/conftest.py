"""Stores for the audit suite: each test runs on a SQLite file and on PostgreSQL (as the metering suite does).

PostgreSQL: one scratch database per test module (random suffix, dropped after the module), its schema
wiped before each test. The PostgreSQL half is skipped, with the reason, when the server is unreachable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from ferrogate.store.audit import AuditEvent
from ferrogate.store.postgres import PostgresStore
from ferrogate.store.sql import SqlStore
from ferrogate.store.sqlite import SqliteStore
from tests.integration.store.conftest import scratch_database

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    yield from scratch_database("fg_audit_test")


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


def cli_url(url: str) -> str:
    """The ``FERROGATE_DATABASE_URL`` of a :func:`db_url` (``sqlite:////absolute/path`` for a file)."""
    return f"sqlite:///{url.removeprefix('sqlite:')}" if url.startswith("sqlite:") else url


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m ferrogate ARGS`` against the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROGATE_")}
    env["FERROGATE_DATABASE_URL"] = cli_url(url)
    return subprocess.run(
        [sys.executable, "-m", "ferrogate", *args], env=env, capture_output=True, text=True, timeout=30
    )


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


def event(n: int, **fields: object) -> AuditEvent:
    """Event number ``n``: an admin change by one of three actors in one of two teams."""
    values: dict[str, object] = {
        "event_id": f"evt_{n:06d}",
        "created_at": T0 + timedelta(seconds=n),
        "kind": "admin",
        "actor": ("master", "key_a", "key_b")[n % 3],
        "action": ("team.update", "key.create")[n % 2],
        "target": f"obj_{n}",
        "team_id": ("team_a", "team_b")[n % 2],
        "data": {"before": {"n": n - 1}, "after": {"n": n, "cost": n / 1024, "tags": ["é", None, True]}},
    }
    values.update(fields)
    return AuditEvent(**values)  # type: ignore[arg-type]
