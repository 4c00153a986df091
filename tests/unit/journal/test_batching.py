"""The batching policy of the spooled writers: a write round takes what is queued when it starts.

Items that arrive while a batch is being written (requests keep coming) wait for the next round; before,
the round drained "until empty" and, whenever a write took about as long as the gap between requests,
degenerated into one transaction per request or two (seen as a budgeted request costing 5x its work).
The store here is a stand-in for the writer's own bookkeeping only; the store side is tested against
SQLite and PostgreSQL in tests/integration/metering.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from ferrogate.journal.file import Journal
from ferrogate.journal.writer import JournalWriter, Tuning, Wording, WriterStats

pytestmark = pytest.mark.anyio


@dataclass
class Item:
    n: int

    def to_json(self) -> bytes:
        return orjson.dumps({"n": self.n})


class ArrivingWriter(JournalWriter[Item, WriterStats]):
    """Records each batch's size; every store call lets ``arrivals`` more items arrive (one per call)."""

    def __init__(self, spool_dir: Path, *, batch_size: int, interval_s: float, arrivals: int) -> None:
        super().__init__(
            Journal(spool_dir, prefix="items", decode=lambda raw: Item(**orjson.loads(raw))),
            WriterStats(),
            Wording(logging.getLogger("test"), "items", "items", "items", "item"),
            Tuning(batch_size, interval_s, max_queue=10_000, retry_s=1.0, timeout_s=5.0, scan_s=60.0),
        )
        self.batches: list[int] = []
        self.arrivals = arrivals
        self.next = 1_000

    def _check(self, item: Item) -> Item:
        return item

    async def _store_batch(self, batch: list[Item], *, trusted: bool, fresh: bool) -> int:
        self.batches.append(len(batch))
        await asyncio.sleep(0)  # the write is in flight: requests run meanwhile
        if self.arrivals > 0:
            self.arrivals -= 1
            self.next += 1
            self._enqueue(Item(self.next))
        return len(batch)


async def test_a_round_writes_what_was_queued_when_it_started(tmp_path: Path) -> None:
    writer = ArrivingWriter(tmp_path, batch_size=100, interval_s=60.0, arrivals=30)
    for n in range(250):
        writer._enqueue(Item(n))
    await writer.flush()
    assert writer.batches == [100, 100, 50]  # not followed by 1-item batches of the arrivals
    assert writer.pending == 3  # what arrived during the three writes waits for the next round
    await writer.flush()
    assert writer.batches[3:] == [3] and writer.pending == 1
    writer.arrivals = 2  # shutdown: arrivals dry up
    await writer.close()
    # close() runs rounds until the queue is empty: what arrived during a write is written, not spooled
    assert writer.batches[4:] == [1, 1, 1] and writer.pending == 0 and writer.stats.spooled == 0


async def test_close_spools_what_keeps_arriving(tmp_path: Path) -> None:
    writer = ArrivingWriter(tmp_path, batch_size=100, interval_s=60.0, arrivals=1_000)
    writer._enqueue(Item(0))
    await writer.close()  # a bounded number of rounds, then the rest goes to the spool for the successor
    assert 1 < len(writer.batches) < 10 and writer.pending == 0 and writer.stats.spooled == 1


async def test_the_background_loop_batches_under_steady_arrivals(tmp_path: Path) -> None:
    writer = ArrivingWriter(tmp_path, batch_size=50, interval_s=0.05, arrivals=200)
    task = asyncio.create_task(writer.run())
    for n in range(200):  # a steady trickle, and one more item per store call on top
        writer._enqueue(Item(n))
        await asyncio.sleep(0.001)
    await writer.close()
    await task
    written = sum(writer.batches) + writer.stats.spooled
    assert written == 200 + (200 - writer.arrivals)
    assert len(writer.batches) < written / 4, writer.batches  # batches, not one call per item
