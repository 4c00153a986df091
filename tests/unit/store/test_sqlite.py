"""SQLite specifics: work happens off the event loop; several stores (workers) share one file."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from ferrogate.store.sqlite import SqliteStore


def test_statements_run_on_the_store_thread(tmp_path: Path) -> None:
    async def main() -> str:
        store = SqliteStore(str(tmp_path / "fg.db"))
        try:
            return await store.run(lambda: threading.current_thread().name)
        finally:
            await store.close()

    name = asyncio.run(main())
    assert name.startswith("ferrogate-sqlite") and name != threading.current_thread().name


def test_wal_and_foreign_keys_are_on(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "fg.db"))
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    asyncio.run(store.close())
    asyncio.run(store.close())  # idempotent


def test_two_stores_on_one_file_write_concurrently(tmp_path: Path) -> None:
    path = str(tmp_path / "fg.db")

    async def main() -> int:
        a, b = SqliteStore(path), SqliteStore(path)
        try:
            await asyncio.gather(a.migrate(), b.migrate())
            await asyncio.gather(*(s.teams.create(f"{n}-{i}") for i in range(40) for n, s in (("a", a), ("b", b))))
            names: list[str] = []
            cursor = None
            while True:
                page = await a.teams.list(limit=1000, cursor=cursor)
                names += [t.name for t in page.items]
                if not (cursor := page.next_cursor):
                    return len(set(names))
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(main()) == 80
