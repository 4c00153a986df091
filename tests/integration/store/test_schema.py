"""Migrations and the schema check, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ferrogate.store import SchemaError
from ferrogate.store.migrate import Migration, load_migrations
from ferrogate.store.sql import SqlStore
from tests.integration.store.conftest import Backend

pytestmark = pytest.mark.anyio


async def tables(store: SqlStore) -> set[str]:
    if store.kind == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'"
    async with store.transaction(write=False) as tx:
        return {row["name"] for row in await tx.fetch(sql)}


async def test_ping_and_kind(store: SqlStore, backend: Backend) -> None:
    assert await store.ping() is None
    assert store.kind == backend.kind


async def test_empty_database_needs_migrate(empty_store: SqlStore) -> None:
    assert await empty_store.schema_version() == 0
    with pytest.raises(SchemaError, match=r"pending migrations: 1, 2, 3, 4, 5, 6, 7, 8, 9\): run `ferrogate migrate`"):
        await empty_store.check_schema()
    with pytest.raises(SchemaError, match="run `ferrogate migrate`"):
        await empty_store.teams.create("ml")


async def test_migrate_is_idempotent(empty_store: SqlStore, backend: Backend) -> None:
    assert await empty_store.migrate() == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert await empty_store.migrate() == []
    assert await backend.open().migrate() == []
    assert await empty_store.schema_version() == 9
    await empty_store.check_schema()
    assert {
        "schema_migrations",
        "teams",
        "users",
        "keys",
        "usage_records",
        "budget_spend",
        "budget_reservations",
        "audit_log",
        "audit_blocks",
        "audit_block_refs",
        "guardrail_policies",
        "guardrail_version",
        "routing_overrides",
        "routing_version",
        "mcp_servers",
        "mcp_policies",
        "mcp_pins",
        "mcp_version",
    } <= await tables(empty_store)


async def test_newer_schema_is_refused(store: SqlStore) -> None:
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", 10, "future", store.ts_in(datetime.now(UTC)))
    message = r"database schema version 10 is newer than this ferrogate \(knows 9\): upgrade ferrogate"
    with pytest.raises(SchemaError, match=message):
        await store.check_schema()
    with pytest.raises(SchemaError, match=message):
        await store.migrate()


async def test_failed_migration_leaves_nothing_behind(store: SqlStore, backend: Backend) -> None:
    team = await store.teams.create("kept")
    broken = Migration(
        10,
        "broken",
        "CREATE TABLE half_done (id TEXT PRIMARY KEY);\n"
        "INSERT INTO half_done VALUES ('x');\n"
        "UPDATE teams SET name = 'renamed';\n"
        "INSERT INTO no_such_table VALUES (1);\n",
    )
    newer = backend.open([*load_migrations(backend.kind), broken])
    with pytest.raises(SchemaError, match="migration 0010_broken failed"):
        await newer.migrate()
    assert await newer.schema_version() == 9
    assert "half_done" not in await tables(newer)
    assert (await store.teams.get(team.id)).name == "kept"
    with pytest.raises(SchemaError, match=r"pending migrations: 10\)"):
        await newer.check_schema()


async def test_pending_migration_applies_in_order(store: SqlStore, backend: Backend) -> None:
    extra = Migration(10, "extra", "CREATE TABLE extra (id TEXT PRIMARY KEY);")
    newer = backend.open([*load_migrations(backend.kind), extra])
    assert await newer.migrate() == [10]
    assert await newer.schema_version() == 10
    await newer.check_schema()
    with pytest.raises(SchemaError, match="newer than this ferrogate"):
        await store.check_schema()
