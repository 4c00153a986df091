"""Time key listing with 100,000 keys: page 1 and a deep page, with and without filters (median of N).

Creates a scratch PostgreSQL database (random suffix; dropped at the end) and, with ``--sqlite``, a
temporary SQLite file too; bulk-loads keys (COPY / executemany) and times ``store.keys.list``.

Usage:
    .venv/bin/python benches/store_list.py [--server postgresql://postgres@127.0.0.1:5432/test]
        [--keys 100000] [--repeat 20] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ferrogate.store.postgres import PostgresStore
from ferrogate.store.sql import SqlStore, encode_cursor
from ferrogate.store.sqlite import SqliteStore

COLUMNS = ("id", "key_hash", "prefix", "name", "team_id", "role", "metadata", "created_at", "updated_at", "revoked_at")
TEAMS = 10


def key_rows(team_ids: list[str], count: int) -> list[tuple[Any, ...]]:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        at = start + timedelta(seconds=i)
        digest = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
        revoked = at if i % 10 == 0 else None
        name = f"{'ci' if i % 4 == 0 else 'dev'}-{i}"
        rows.append(
            (
                f"key_{secrets.token_hex(8)}",
                digest,
                "fg-bench",
                name,
                team_ids[i % TEAMS],
                "member",
                "{}",
                at,
                at,
                revoked,
            )
        )
    return rows


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> float:
    await fn()  # warm (statement cache, page cache)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


async def scenarios(store: SqlStore, team_id: str, count: int, repeat: int) -> None:
    # cursors pointing deep into the data: 90% through all keys, 90% through one team's keys
    deep_all = await store.keys.list(limit=1000)
    order = "ORDER BY created_at, id LIMIT 1 OFFSET ?"
    async with store.transaction(write=False) as tx:
        (row,) = await tx.fetch(f"SELECT created_at, id FROM keys {order}", count * 9 // 10)  # noqa: S608
        (team_row,) = await tx.fetch(
            f"SELECT created_at, id FROM keys WHERE team_id = ? {order}",  # noqa: S608
            team_id,
            count // TEAMS * 9 // 10,
        )
    assert deep_all.items
    deep = encode_cursor(store.ts_out(row["created_at"]), row["id"])
    deep_team = encode_cursor(store.ts_out(team_row["created_at"]), team_row["id"])
    cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("page 1, no filter", lambda: store.keys.list(limit=100)),
        ("deep page (90%), no filter", lambda: store.keys.list(limit=100, cursor=deep)),
        ("page 1, team_id", lambda: store.keys.list(team_id=team_id, limit=100)),
        (
            "deep page (90%), team_id + revoked=False",
            lambda: store.keys.list(team_id=team_id, revoked=False, limit=100, cursor=deep_team),
        ),
        ("deep page (90%), name_prefix='ci-'", lambda: store.keys.list(name_prefix="ci-", limit=100, cursor=deep)),
        ("get_by_hash", lambda: store.keys.get_by_hash(hashlib.sha256(b"bench-4242").hexdigest())),
    ]
    if store.kind == "postgres":
        sql = "EXPLAIN SELECT * FROM keys WHERE team_id = $1 AND revoked_at IS NULL AND (created_at, id) > ($2, $3) "
        async with store.transaction(write=False) as tx:
            plan = await tx.fetch(sql + "ORDER BY created_at, id LIMIT 101", team_id, *team_row)
        print("  plan of the deep team page:", " / ".join(p[0].strip() for p in plan[:2]))
    for label, fn in cases:
        page = await fn()
        assert page is not None
        print(f"  {store.kind:8} {label:45} {await timed(fn, repeat):7.2f} ms")


async def seed(store: SqlStore, load: Callable[[list[tuple[Any, ...]]], Awaitable[None]], count: int) -> str:
    await store.migrate()
    teams = [await store.teams.create(f"bench-{i}") for i in range(TEAMS)]
    rows = key_rows([t.id for t in teams], count)
    t0 = time.perf_counter()
    await load(rows)
    print(f"  {store.kind:8} loaded {count} keys in {time.perf_counter() - t0:.1f} s")
    return teams[3].id


async def bench_postgres(server: str, count: int, repeat: int) -> None:
    name = f"fg_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    store = PostgresStore(urlunsplit(urlsplit(server)._replace(path=f"/{name}")))
    try:

        async def load(rows: list[tuple[Any, ...]]) -> None:
            pool = await store.pool()
            async with pool.acquire() as conn:
                await conn.copy_records_to_table("keys", records=rows, columns=COLUMNS)
                await conn.execute("ANALYZE keys")

        team_id = await seed(store, load, count)
        await scenarios(store, team_id, count, repeat)
    finally:
        await store.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def bench_sqlite(count: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(str(Path(tmp) / "bench.db"))
        try:

            async def load(rows: list[tuple[Any, ...]]) -> None:
                marks = ", ".join("?" * len(COLUMNS))
                sql = f"INSERT INTO keys ({', '.join(COLUMNS)}) VALUES ({marks})"  # noqa: S608
                converted = [tuple(store.bind(v) for v in row) for row in rows]
                async with store.transaction() as tx:
                    await tx.executemany(sql, converted)
                    await tx.execute("ANALYZE")

            team_id = await seed(store, load, count)
            await scenarios(store, team_id, count, repeat)
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--sqlite", action="store_true", help="also time the SQLite backend")
    args = parser.parse_args()
    print(f"store_list: {args.keys} keys, {TEAMS} teams, limit 100, median of {args.repeat}")
    asyncio.run(bench_postgres(args.server, args.keys, args.repeat))
    if args.sqlite:
        asyncio.run(bench_sqlite(args.keys, args.repeat))


if __name__ == "__main__":
    main()
