"""The usage recorder on both backends: batches arrive exactly once; spool, overflow and crash recovery."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

import pytest

from ferrogate.journal.file import REJECTED
from ferrogate.metering import UsageRecorder
from ferrogate.store.sql import SqlStore
from ferrogate.store.sqlite import SqliteStore
from tests.integration.metering.conftest import open_url, usage

pytestmark = pytest.mark.anyio


async def totals(store: SqlStore) -> tuple[int, int, int, float]:
    row = (await store.usage.summary()).items[0]
    return row.requests, row.prompt_tokens, row.completion_tokens, row.cost_usd


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


def expected(ns: range | list[int]) -> tuple[int, int, int, float]:
    ns = list(ns)
    return len(ns), sum(ns), 2 * sum(ns), sum(n / 1024 for n in ns)


async def test_many_records_arrive_exactly_once(store: SqlStore, tmp_path: Path) -> None:
    recorder = UsageRecorder(store, tmp_path / "spool", batch_size=100, interval_s=0.02)
    task = asyncio.create_task(recorder.run())

    async def producer(first: int) -> None:
        for n in range(first, first + 1000):
            recorder.record(usage(n))
            if n % 50 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(producer(1 + 1000 * i) for i in range(5)))
    await recorder.close()
    await task
    assert await totals(store) == expected(range(1, 5001))
    assert recorder.stats.stored == 5000 and recorder.stats.spooled == 0 and recorder.pending == 0
    assert spool_files(tmp_path / "spool") == []


async def test_flush_writes_what_is_queued_without_the_loop(store: SqlStore, tmp_path: Path) -> None:
    recorder = UsageRecorder(store, tmp_path, batch_size=10)
    for n in range(1, 26):
        recorder.record(usage(n))
    assert recorder.pending == 25 and await totals(store) == expected([])
    await recorder.flush()
    assert recorder.pending == 0 and await totals(store) == expected(range(1, 26))
    await recorder.close()


async def test_overflow_spills_to_the_spool_then_replays(store: SqlStore, tmp_path: Path) -> None:
    recorder = UsageRecorder(store, tmp_path, batch_size=10, max_queue=100)
    for n in range(1, 251):
        recorder.record(usage(n))  # the writer is not running: the queue overflows
    assert recorder.pending <= 100 and recorder.stats.spooled >= 150 and recorder.spool_bytes > 0
    assert recorder.stats.spooled + recorder.pending == 250
    await recorder.flush()
    assert await totals(store) == expected(range(1, 251))
    assert recorder.spool_bytes == 0 and recorder.stats.replayed == recorder.stats.spooled
    await recorder.close()
    assert spool_files(tmp_path) == []


async def test_crash_recovery_replays_a_predecessors_spool(store: SqlStore, tmp_path: Path) -> None:
    # a previous process spooled 1..300 (its last line torn by the crash); 1..100 had reached the store anyway
    assert await store.usage.insert_many([usage(n) for n in range(1, 101)]) == 100
    dead = tmp_path / "usage-4242-0badf00d.jsonl"
    dead.write_bytes(b"".join(usage(n).to_json() + b"\n" for n in range(1, 301)) + b'{"request_id": "req_0')
    # a sibling worker that is alive holds its own file: it must not be touched
    live = tmp_path / "usage-4343-a11ve000.jsonl"
    live.write_bytes(usage(999).to_json() + b"\n")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        recorder = UsageRecorder(store, tmp_path, interval_s=0.02)
        task = asyncio.create_task(recorder.run())
        recorder.record(usage(301))
        for _ in range(200):
            if not dead.exists() and (await totals(store))[0] == 301:
                break
            await asyncio.sleep(0.01)
        await recorder.close()
        await task
    finally:
        os.close(fd)
    assert await totals(store) == expected(range(1, 302))
    assert not dead.exists() and live.exists()
    assert recorder.stats.replayed == 300 and recorder.stats.stored == 201
    assert (tmp_path / REJECTED).read_bytes() == b'{"request_id": "req_0\n'


async def test_two_processes_replaying_one_spool_count_once(db_url: str, store: SqlStore, tmp_path: Path) -> None:
    dead = tmp_path / "usage-4242-0badf00d.jsonl"
    dead.write_bytes(b"".join(usage(n).to_json() + b"\n" for n in range(1, 2001)))
    a, b = open_url(db_url), open_url(db_url)
    try:
        ra, rb = UsageRecorder(a, tmp_path, batch_size=100), UsageRecorder(b, tmp_path, batch_size=100)
        await asyncio.gather(ra.flush(), rb.flush())
        await asyncio.gather(ra.close(), rb.close())
    finally:
        await a.close()
        await b.close()
    assert await totals(store) == expected(range(1, 2001))
    assert ra.stats.stored + rb.stats.stored == 2000 and not dead.exists()


async def test_a_store_without_its_table_is_a_failure_then_recovers(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "fresh.db"))  # not migrated yet: every insert fails
    try:
        recorder = UsageRecorder(store, tmp_path / "spool", batch_size=20, interval_s=0.01, retry_s=0.05)
        task = asyncio.create_task(recorder.run())
        for n in range(1, 101):
            recorder.record(usage(n))
            if n % 10 == 0:
                await asyncio.sleep(0.005)
        await recorder.flush()
        assert recorder.store_down and recorder.stats.spooled == 100 and recorder.pending == 0
        assert "usage_records" in (recorder.stats.last_error or "")
        await store.migrate()  # the store answers again
        for n in range(101, 151):
            recorder.record(usage(n))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not recorder.store_down and recorder.spool_bytes == 0 and recorder.pending == 0:
                break
        await recorder.close()
        await task
        assert await totals(store) == expected(range(1, 151))
        assert spool_files(tmp_path / "spool") == []
    finally:
        await store.close()


async def test_records_after_close_are_spooled_for_the_successor(store: SqlStore, tmp_path: Path) -> None:
    first = UsageRecorder(store, tmp_path)
    first.record(usage(1))
    await first.close()
    first.record(usage(2))  # e.g. a request that finished during shutdown
    assert await totals(store) == expected([1])
    second = UsageRecorder(store, tmp_path)
    await second.flush()
    await second.close()
    assert await totals(store) == expected([1, 2])
