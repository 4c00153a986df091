"""The audit writer on both backends: data-plane events from request contexts, batches chained exactly once,
spooling while the store is down and replaying on recovery, crash recovery, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

import pytest

from ferrogate.audit import AuditWriter, request_facts
from ferrogate.audit.verify import chain, verify_store
from ferrogate.auth.identity import Identity
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.metering.prices import Price, PriceTable
from ferrogate.pipeline.context import RequestContext, Usage
from ferrogate.store.audit import AuditRecord
from ferrogate.store.postgres import PostgresStore
from ferrogate.store.sql import SqlStore
from tests.integration.audit.conftest import event, mixed, open_url, wipe
from tests.integration.metering.test_outage import Proxy

pytestmark = pytest.mark.anyio


async def everything(store: SqlStore) -> list[AuditRecord]:
    return [r async for r in chain(store.audit)]


def spool_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.jsonl"))


def context(
    rid: str, *, status: int = 200, usage: Usage | None = None, error: Exception | None = None
) -> RequestContext:
    ctx = RequestContext(rid)
    ctx.identity = Identity("key_1", "team_1", "user_1", ("*",), None, None)
    ctx.model, ctx.upstream_model, ctx.stream, ctx.status = "gpt-4o", "gpt-4o-2024-08-06", True, status
    ctx.provider = SimpleNamespace(name="openai-eu")  # what request_facts reads of a provider: its name
    ctx.usage = usage
    ctx.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    if error is not None:
        ctx.fail(error)
    return ctx


async def test_data_plane_events_from_request_contexts(store: SqlStore, tmp_path: Path) -> None:
    prices = PriceTable(models={"gpt-4o": Price(input=2.5, output=10)})
    writer = AuditWriter(store, tmp_path / "spool", interval_s=0.01)
    task = asyncio.create_task(writer.run())
    writer.record(request_facts(context("req_ok", usage=Usage(1000, 100, 400, 7)), prices=prices, latency_ms=12.5))
    limited = context("req_429", status=429, error=GatewayError(ErrorKind.RATE_LIMITED_REQUESTS, "slow down"))
    writer.record(request_facts(limited, cost_usd=None, latency_ms=0.8))
    anonymous = RequestContext("req_401")
    anonymous.status = 401
    writer.record(request_facts(anonymous, latency_ms=0.1))
    await writer.close()
    await task
    ok, refused, unknown = await everything(store)
    assert (ok.event_id, ok.kind, ok.actor, ok.action, ok.target, ok.team_id) == (
        "req_ok",
        "request",
        "key_1",
        "chat.completions",
        "gpt-4o",
        "team_1",
    )
    assert ok.payload() == {  # the request id, key, team and model are the columns above, not repeated
        "client_request_id": None,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "user_id": "user_1",
        "upstream": "openai-eu",
        "upstream_model": "gpt-4o-2024-08-06",
        "status": 200,
        "error": None,
        "stream": True,
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "cached_tokens": 400,
        "reasoning_tokens": 7,
        "counted": False,
        "cost_usd": (1000 * 2.5 + 100 * 10) / 1_000_000,
        "latency_ms": 12.5,
        "content": False,
    }
    data = refused.payload()
    assert (data["status"], data["error"], data["prompt_tokens"], data["cost_usd"]) == (
        429,
        "rate_limit_exceeded",  # the code the client received (as in the request log)
        0,
        None,
    )
    assert (unknown.actor, unknown.team_id, unknown.target, unknown.payload()["user_id"]) == (
        "anonymous",
        None,
        None,
        None,
    )
    assert (await verify_store(store.audit)).records == 3


async def test_concurrent_producers_are_chained_exactly_once(store: SqlStore, tmp_path: Path) -> None:
    writer = AuditWriter(store, tmp_path / "spool", batch_size=50, interval_s=0.01)
    task = asyncio.create_task(writer.run())

    async def producer(first: int) -> None:
        for n in range(first, first + 200):
            writer.record(event(n))
            if n % 20 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(producer(1 + 200 * i) for i in range(5)))
    await writer.close()
    await task
    records = await everything(store)
    assert sorted(r.event_id for r in records) == [f"evt_{n:06d}" for n in range(1, 1001)]
    assert [r.seq for r in records] == list(range(1, 1001))
    assert (await verify_store(store.audit)).ok
    assert writer.stats.stored == 1000 and writer.stats.spooled == 0 and spool_files(tmp_path / "spool") == []


async def test_record_and_flush_returns_once_stored(store: SqlStore, tmp_path: Path) -> None:
    writer = AuditWriter(store, tmp_path, interval_s=60)  # the loop would not write for a minute
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0.01)
    await writer.record_and_flush(event(1))
    assert [r.event_id for r in await everything(store)] == ["evt_000001"]
    await writer.close()
    await task


async def test_a_store_without_its_schema_fails_then_recovers(db_url: str, tmp_path: Path) -> None:
    # the database answers but the audit table is not there yet: every append fails until it is migrated
    if not db_url.startswith("sqlite:"):
        await wipe(db_url)
    store = open_url(db_url)
    spool = tmp_path / "spool"
    try:
        writer = AuditWriter(store, spool, batch_size=20, interval_s=0.01, retry_s=0.05)
        task = asyncio.create_task(writer.run())
        for n in range(1, 101):
            writer.record(event(n))
            if n % 10 == 0:
                await asyncio.sleep(0.005)
        await writer.flush()
        assert writer.store_down and writer.stats.spooled == 100 and writer.pending == 0
        assert "audit_log" in (writer.stats.last_error or "")
        assert writer.spool_bytes > 0 and spool_files(spool)[0].startswith(f"audit-{os.getpid()}-")
        await store.migrate()
        for _ in range(300):
            await asyncio.sleep(0.01)
            if not writer.store_down and writer.spool_bytes == 0:
                break
        writer.record(event(101))
        await writer.close()
        await task
        records = await everything(store)
        assert [r.event_id for r in records] == [f"evt_{n:06d}" for n in range(1, 102)]  # spooled order kept
        assert (await verify_store(store.audit)).records == 101
        assert writer.stats.replayed == 100 and spool_files(spool) == []
    finally:
        await store.close()


async def test_outage_mid_run_every_event_is_chained_once(pg_database: str, tmp_path: Path) -> None:
    await wipe(pg_database)
    direct = PostgresStore(pg_database, min_size=1, max_size=1)
    await direct.migrate()
    parts = urlsplit(pg_database)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    through = PostgresStore(
        urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}")), max_size=2
    )
    spool = tmp_path / "spool"
    writer = AuditWriter(through, spool, batch_size=25, interval_s=0.02, retry_s=0.2, timeout_s=2)
    task = asyncio.create_task(writer.run())
    try:
        for n in range(1, 601):
            writer.record(mixed(n))  # admin rows and request blocks
            if n % 25 == 0:
                await asyncio.sleep(0.005)
            if n == 200:
                await writer.flush()
                assert len(await everything(direct)) == 200  # the store took events before the cut
                await proxy.cut()
            if n == 400:
                await writer.flush()
                assert writer.store_down and writer.spool_bytes > 0  # spooling while down
                await proxy.start()  # restored, on the same port
        for _ in range(500):
            await asyncio.sleep(0.02)
            if not writer.store_down and writer.spool_bytes == 0 and writer.pending == 0:
                break
        assert not writer.store_down and writer.spool_bytes == 0
        await writer.close()
        await task
        records = await everything(direct)
        assert sorted(r.event_id for r in records) == sorted(mixed(n).event_id for n in range(1, 601))
        report = await verify_store(direct.audit)
        assert (report.ok, report.records) == (True, 600)
        assert writer.stats.store_failures >= 1 and writer.stats.spooled >= 150
        assert writer.stats.replayed == writer.stats.spooled and spool_files(spool) == []
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.cut()
        await through.close()
        await direct.close()


async def test_crash_recovery_replays_a_predecessors_spool_once(store: SqlStore, tmp_path: Path) -> None:
    # a dead process spooled 1..30 (its last line torn); 1..10 had reached the store anyway
    # (admin events and request facts: the stored requests are found in their blocks)
    assert await store.audit.append_many([mixed(n) for n in range(1, 11)], fresh=True) == 10
    dead = tmp_path / "audit-4242-0badf00d.jsonl"
    dead.write_bytes(b"".join(mixed(n).to_json() + b"\n" for n in range(1, 31)) + b'{"event_id": "evt_0')
    live = tmp_path / "audit-4343-a11ve000.jsonl"  # a live sibling's file: not touched
    live.write_bytes(event(999).to_json() + b"\n")
    usage = tmp_path / "usage-4242-0badf00d.jsonl"  # the usage spool's: not the audit writer's business
    usage.write_bytes(b'{"request_id": "r"}\n')
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        writer = AuditWriter(store, tmp_path, interval_s=0.01)
        await writer.flush()
        await writer.close()
    finally:
        os.close(fd)
    assert [r.event_id for r in await everything(store)] == [mixed(n).event_id for n in range(1, 31)]
    assert not dead.exists() and live.exists() and usage.exists()
    assert writer.stats.replayed == 30 and writer.stats.stored == 20
    assert (tmp_path / "audit-rejected.log").read_bytes() == b'{"event_id": "evt_0\n'


async def test_an_event_after_close_is_spooled_for_the_successor(store: SqlStore, tmp_path: Path) -> None:
    writer = AuditWriter(store, tmp_path)
    await writer.close()
    writer.record(event(1))  # a request that finished during shutdown
    assert await everything(store) == [] and len(spool_files(tmp_path)) == 1
    successor = AuditWriter(store, tmp_path)
    await successor.flush()
    await successor.close()
    assert [r.event_id for r in await everything(store)] == ["evt_000001"] and spool_files(tmp_path) == []
