"""open_store: URL forms and refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ferrogate.store import DEFAULT_DATABASE_URL, StoreError, open_store
from ferrogate.store.postgres import PostgresStore
from ferrogate.store.sqlite import SqliteStore


def opened_path(url: str) -> Path:
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    try:
        (row,) = store.conn.execute("PRAGMA database_list").fetchall()[:1]
        return Path(row["file"])
    finally:
        asyncio.run(store.close())


def test_relative_sqlite_path_is_under_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert opened_path("sqlite:///data/fg.db") == tmp_path / "data" / "fg.db"
    assert (tmp_path / "data" / "fg.db").exists()


def test_absolute_sqlite_path(tmp_path: Path) -> None:
    assert opened_path(f"sqlite:///{tmp_path}/abs.db") == tmp_path / "abs.db"
    assert str(tmp_path).startswith("/")


def test_default_is_a_sqlite_file_in_dot_ferrogate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_DATABASE_URL == "sqlite:///.ferrogate/ferrogate.db"
    assert opened_path("") == tmp_path / ".ferrogate" / "ferrogate.db"


def test_memory() -> None:
    store = open_store("sqlite:///:memory:")
    assert store.kind == "sqlite"
    asyncio.run(store.close())


@pytest.mark.parametrize("url", ["postgresql://postgres@127.0.0.1:5432/x", "postgres://u:p@db/x?sslmode=disable"])
def test_postgres_urls(url: str) -> None:
    store = open_store(url)
    assert isinstance(store, PostgresStore) and store.kind == "postgres"
    asyncio.run(store.close())  # never connected: nothing to release


@pytest.mark.parametrize("url", ["mysql://root@db/x", "sqlite:/x.db", "/var/lib/fg.db", "redis://localhost"])
def test_unsupported_urls_name_the_variable(url: str) -> None:
    with pytest.raises(StoreError, match=r"^FERROGATE_DATABASE_URL: unsupported scheme .*sqlite:///relative/path"):
        open_store(url)


def test_unopenable_sqlite_file(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="FERROGATE_DATABASE_URL: cannot open"):
        open_store(f"sqlite:///{tmp_path}/dir.db")


def test_unreachable_postgres_reports_on_ping() -> None:
    store = open_store("postgresql://postgres@127.0.0.1:1/x")

    async def ping() -> str | None:
        try:
            return await store.ping()
        finally:
            await store.close()

    problem = asyncio.run(ping())
    assert problem is not None and problem.startswith("postgres:")
