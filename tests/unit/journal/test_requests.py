"""The request journal shared by two writers: a segment lives until both have stored its items; a writer
whose store failed replays what it missed, the other is not held up; a dead process's segments reach both."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ferrogate.journal.file import Journal
from ferrogate.journal.requests import RequestJournal
from ferrogate.journal.writer import JournalWriter, Tuning, Wording, WriterStats
from ferrogate.store.audit import RequestFacts, read_item

pytestmark = pytest.mark.anyio
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def facts(n: int) -> RequestFacts:
    head = (f"req_{n}", T0, "key_1", "chat.completions", "m", None, None, None, None, "mock", "m", 200, None)
    return RequestFacts((*head, False, 10, 2, 0, 0, False, None, 1.5))


class Writer(JournalWriter[RequestFacts, WriterStats]):
    """Stores facts in a list; ``down`` makes the store fail."""

    def __init__(self, directory: Path, name: str) -> None:
        super().__init__(
            Journal(directory / name, prefix=name, decode=read_item),  # type: ignore[arg-type]
            WriterStats(),
            Wording(logging.getLogger("test"), name, name, "items", "item"),
            Tuning(batch_size=1000, interval_s=60.0, max_queue=10_000, retry_s=0.0, timeout_s=5.0, scan_s=60.0),
        )
        self.consumer = name  # type: ignore[misc]
        self.stored: list[str] = []
        self.down = False

    def _check(self, item: RequestFacts) -> RequestFacts:
        return item

    def from_facts(self, facts: RequestFacts) -> RequestFacts:
        return facts

    async def _store_batch(self, batch: list[RequestFacts], *, trusted: bool, fresh: bool) -> int:
        if self.down:
            raise OSError("store down")
        new = [f.event_id for f in batch if f.event_id not in self.stored]
        assert fresh is False or len(new) == len(batch), "a fresh batch was offered twice"
        self.stored += new
        return len(new)


def book(journal: RequestJournal, writers: Sequence[Writer], n: int) -> None:
    """What Books does for one request: one journal line, then each writer takes its item."""
    item = facts(n)
    journal.write(item)
    for w in writers:
        w.take(item, True)


def segments(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "requests").glob("request-*.jsonl"))


async def test_a_segment_is_removed_once_both_writers_stored_it(tmp_path: Path) -> None:
    journal = RequestJournal(tmp_path / "requests")
    usage, audit = Writer(tmp_path, "usage"), Writer(tmp_path, "audit")
    usage.share(journal)
    audit.share(journal)
    for n in range(5):
        book(journal, (usage, audit), n)
    await usage.flush()  # seals the segment: usage is done with it, audit not yet
    assert len(segments(tmp_path)) == 1 and usage.stored == [f"req_{n}" for n in range(5)]
    book(journal, (usage, audit), 5)  # a new segment
    await audit.flush()  # seals again: both done with the first, audit with the second too
    assert audit.stored == [f"req_{n}" for n in range(6)]
    assert len(segments(tmp_path)) == 1  # the second segment waits for usage
    await usage.flush()
    assert usage.stored == audit.stored and segments(tmp_path) == []
    journal.close()


async def test_a_writer_whose_store_failed_replays_what_it_missed(tmp_path: Path) -> None:
    journal = RequestJournal(tmp_path / "requests")
    usage, audit = Writer(tmp_path, "usage"), Writer(tmp_path, "audit")
    usage.share(journal)
    audit.share(journal)
    usage.down = True
    for n in range(3):
        book(journal, (usage, audit), n)
    await usage.flush()  # fails: its queue is dropped, the items stay in the journal
    assert usage.store_down and usage.pending == 0 and usage.stats.spooled == 3
    for n in range(3, 6):
        book(journal, (usage, audit), n)  # not queued by usage while it is down: spooled
    await audit.flush()  # audit is not held up
    assert audit.stored == [f"req_{n}" for n in range(6)] and usage.stats.spooled == 6
    assert usage.spool_bytes > 0 and segments(tmp_path)  # kept for usage
    usage.down = False
    book(journal, (usage, audit), 6)
    await usage.flush()  # replays the segments after its last mark, then what it queued since
    assert sorted(usage.stored) == [f"req_{n}" for n in range(7)] and not usage.store_down
    await audit.flush()
    assert sorted(audit.stored) == sorted(usage.stored)
    assert segments(tmp_path) == [] and usage.spool_bytes == 0
    journal.close()


async def test_a_dead_process_segments_reach_both_writers_once(tmp_path: Path) -> None:
    dead = RequestJournal(tmp_path / "requests")
    for n in range(4):
        dead.write(facts(n))
    dead.close()  # as a killed process leaves it: nothing stored, the lock free
    assert len(segments(tmp_path)) == 1
    journal = RequestJournal(tmp_path / "requests")
    usage, audit = Writer(tmp_path, "usage"), Writer(tmp_path, "audit")
    usage.share(journal)
    audit.share(journal)
    await usage.flush()  # the first writer's first round claims the leftover for both consumers
    assert usage.stored == audit.stored == [f"req_{n}" for n in range(4)]
    assert segments(tmp_path) == []
    await audit.flush()
    assert audit.stored == [f"req_{n}" for n in range(4)]  # not twice
    journal.close()


class Flooded(Writer):
    """A store call during which requests keep arriving until the memory queue overflows."""

    def __init__(self, directory: Path, journal: RequestJournal, flood: int) -> None:
        super().__init__(directory, "usage")
        self._max_queue = 20
        self._batch_size = 10
        self.flood = flood
        self.journal = journal
        self.next = 1000

    async def _store_batch(self, batch: list[RequestFacts], *, trusted: bool, fresh: bool) -> int:
        for _ in range(self.flood):  # arrivals while the write is in flight: the queue goes over max_queue
            self.next += 1
            book(self.journal, (self,), self.next)
        self.flood = 0
        return await super()._store_batch(batch, trusted=trusted, fresh=fresh)


async def test_a_queue_overflow_during_a_round_loses_nothing(tmp_path: Path) -> None:
    journal = RequestJournal(tmp_path / "requests")
    writer = Flooded(tmp_path, journal, flood=30)
    writer.share(journal)
    for n in range(15):  # more than one batch: the round is still going when the queue overflows
        book(journal, (writer,), n)
    await writer.flush()
    await writer.flush()  # catches up from the journal
    await writer.flush()
    expected = {f"req_{n}" for n in [*range(15), *range(1001, 1031)]}
    assert set(writer.stored) == expected and len(writer.stored) == len(expected)
    assert segments(tmp_path) == [] and writer.pending == 0
    journal.close()


async def test_an_outage_adds_no_segment_per_retry(tmp_path: Path) -> None:
    journal = RequestJournal(tmp_path / "requests")
    usage, audit = Writer(tmp_path, "usage"), Writer(tmp_path, "audit")
    usage.share(journal)
    audit.share(journal)
    usage.down = audit.down = True
    for n in range(50):  # 50 retries, a request before each
        book(journal, (usage, audit), n)
        await usage.flush()
        await audit.flush()
    assert len(segments(tmp_path)) <= 2 and usage.store_down and audit.store_down
    usage.down = audit.down = False
    await usage.flush()
    await audit.flush()
    assert sorted(usage.stored) == sorted(audit.stored) == sorted(f"req_{n}" for n in range(50))
    assert segments(tmp_path) == []
    journal.close()
