"""Database outage: PostgreSQL cut off mid-run (through a TCP proxy), records keep coming, then it is back.

Every record must arrive exactly once (count and sums), and the spool must be empty at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from ferrogate.metering import UsageRecorder
from ferrogate.store.postgres import PostgresStore
from tests.integration.metering.conftest import usage, wipe

pytestmark = pytest.mark.anyio


class Proxy:
    """A TCP proxy on 127.0.0.1 that can be cut (listener and every connection closed) and restored."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def pg_url(pg_database: str) -> str:
    await wipe(pg_database)
    store = PostgresStore(pg_database)
    try:
        await store.migrate()
    finally:
        await store.close()
    return pg_database


async def test_outage_mid_run_every_record_arrives_exactly_once(pg_url: str, tmp_path: Path) -> None:
    parts = urlsplit(pg_url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    through = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"))
    store = PostgresStore(through, min_size=1, max_size=2)
    direct = PostgresStore(pg_url, min_size=1, max_size=1)
    spool = tmp_path / "spool"
    recorder = UsageRecorder(store, spool, batch_size=50, interval_s=0.02, retry_s=0.2, timeout_s=2)
    task = asyncio.create_task(recorder.run())
    total = 3000
    try:
        for n in range(1, total + 1):
            recorder.record(usage(n))
            if n % 25 == 0:
                await asyncio.sleep(0.005)
            if n == 1000:
                stored_before_cut = (await direct.usage.summary()).items[0].requests
                assert stored_before_cut > 0  # the store was taking records before the cut
                await proxy.cut()
            if n == 2000:
                assert recorder.store_down and recorder.spool_bytes > 0  # spooling while down
                await proxy.start()  # restored, on the same port
        for _ in range(500):
            await asyncio.sleep(0.02)
            if not recorder.store_down and recorder.spool_bytes == 0 and recorder.pending == 0:
                break
        assert not recorder.store_down and recorder.spool_bytes == 0
        await recorder.close()
        await task
        row = (await direct.usage.summary()).items[0]
        assert (row.requests, row.prompt_tokens, row.completion_tokens) == (
            total,
            total * (total + 1) // 2,
            total * (total + 1),
        )
        assert row.cost_usd == sum(n / 1024 for n in range(1, total + 1))
        by_model = (await direct.usage.summary(group_by="model")).items
        assert [(r.group, r.requests) for r in by_model] == [("gpt-4o", total)]
        stats = recorder.stats
        # every spooled record was replayed; a batch whose commit went through but whose answer was lost with the
        # connection ("closed in the middle of operation") is replayed again, idempotently: the rows above are
        # exact, the replay count may exceed the spooled one by such batches
        assert stats.store_failures >= 1 and stats.spooled >= 900 and stats.replayed >= stats.spooled
        assert not any(name.endswith(".jsonl") for name in os.listdir(spool))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.cut()
        await store.close()
        await direct.close()
