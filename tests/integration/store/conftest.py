"""Stores for the shared suite: every test runs once on a SQLite file and once on PostgreSQL.

PostgreSQL: one scratch database per session (random suffix, dropped at the end), its schema wiped before
each test. ``FERROGATE_TEST_POSTGRES_URL`` names the server (default ``postgresql://postgres@127.0.0.1:5432/test``);
the PostgreSQL half is skipped, with the reason, when it is unreachable.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from ferrogate.store.migrate import Migration
from ferrogate.store.postgres import PostgresStore
from ferrogate.store.sql import SqlStore
from ferrogate.store.sqlite import SqliteStore

T = TypeVar("T")
PG_URL = os.environ.get("FERROGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def in_thread(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on its own loop in another thread (keeps clear of the test's loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, fn()).result(timeout=30)  # type: ignore[arg-type]


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def scratch_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database named ``prefix`` + a random suffix, dropped afterwards (for fixtures).

    Skips the test, with the reason, when the server is unreachable.
    """
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        in_thread(lambda: pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL at {PG_URL} is unavailable: {exc}")
    yield with_database(PG_URL, name)
    in_thread(lambda: pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    yield from scratch_database("fg_store_test")


class Backend:
    """Opens stores on this test's database (several may share it); closes them all at teardown."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.opened: list[SqlStore] = []

    def open(self, migrations: Sequence[Migration] | None = None) -> SqlStore:
        store: SqlStore
        if self.kind == "sqlite":
            store = SqliteStore(self.url, migrations=migrations)
        else:
            store = PostgresStore(self.url, min_size=1, max_size=4, migrations=migrations)
        self.opened.append(store)
        return store

    async def reset(self) -> None:
        if self.kind == "postgres":
            conn = await asyncpg.connect(self.url, timeout=5)
            try:
                await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            finally:
                await conn.close()

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "ferrogate.db"))
    return Backend("postgres", request.getfixturevalue("pg_database"))


@pytest.fixture
async def empty_store(backend: Backend) -> AsyncIterator[SqlStore]:
    """A store on an empty database (no schema yet)."""
    await backend.reset()
    store = backend.open()
    try:
        yield store
    finally:
        await backend.close_all()


@pytest.fixture
async def store(empty_store: SqlStore) -> SqlStore:
    """A migrated store on an empty database."""
    assert await empty_store.migrate() == [m.version for m in empty_store.migrations]
    return empty_store


def key_hash(label: Any = None) -> str:
    """A stand-in for the HMAC-SHA256 hex digest of a fresh key."""
    return hashlib.sha256(f"{label}-{secrets.token_hex(8)}".encode()).hexdigest()
