"""The usage recorder: takes one record per request on the hot path, writes them to the store in batches.

``record()`` writes the record to this process's journal (one ``write(2)``, fsync'd in groups off the event
loop: from then on it survives the death of the process) and appends it to an in-memory deque. A background
task (:meth:`UsageRecorder.run`) writes a batch every ``interval_s`` or as soon as ``batch_size`` records wait,
each batch in one transaction, idempotent by request id. When the store fails, the records wait in the journal
and the store is probed again every ``retry_s``; once it answers, the journal is replayed. Segments left by
crashed or killed processes are replayed at start (and every ``scan_s``). The machinery is
:class:`ferrogate.journal.writer.JournalWriter`'s.

Example:
    >>> # recorder = UsageRecorder(store, Path(".ferrogate/spool"))
    >>> # task = asyncio.create_task(recorder.run())
    >>> # recorder.record(UsageRecord(request_id=rid, created_at=now, model="gpt-4o", status=200, ...))
    >>> # await recorder.close()   # at shutdown: stop, flush (the journal keeps what the store will not take)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ferrogate.journal.file import Journal
from ferrogate.journal.writer import JournalWriter, Tuning, Wording, WriterStats
from ferrogate.store.audit import RequestFacts
from ferrogate.store.base import Usage
from ferrogate.store.usage import UsageRecord, check_record, usage_of

log = logging.getLogger("ferrogate.metering")


class UsageStore(Protocol):
    """What the recorder needs of a store: its ``usage`` repository."""

    @property
    def usage(self) -> Usage:
        """Usage records."""
        ...


@dataclass(slots=True)
class RecorderStats(WriterStats):
    """Counters for metrics: records stored (new rows), spooled, replayed from spools, rejected as invalid."""


class UsageRecorder(JournalWriter[UsageRecord, RecorderStats]):
    """Batched, spooled usage writes. One per worker process, created in the worker's event loop.

    Args:
        store: the store whose ``usage.insert_many`` receives the batches.
        spool_path: the journal directory (created if missing; the file names carry the pid).
        batch_size: records per transaction; reaching it wakes the writer early.
        interval_s: the longest a record waits in memory before a write is attempted.
        max_queue: records kept in memory at most; beyond it the queue spills to the spool file.
        retry_s: after a store failure, how long batches go straight to the spool before the store is tried.
        timeout_s: the longest one store call may take before it counts as a failure.
        scan_s: how often to look for journal segments left by other (crashed) processes.
        fsync_interval_s: how often the journal's writes are made durable (a power loss takes at most this).
        journal: every item to the journal as it arrives (``False``: only while the store is down).
    """

    consumer = "usage"

    def __init__(
        self,
        store: UsageStore,
        spool_path: Path,
        *,
        batch_size: int = 500,
        interval_s: float = 0.5,
        max_queue: int = 100_000,
        retry_s: float = 1.0,
        timeout_s: float = 10.0,
        scan_s: float = 60.0,
        fsync_interval_s: float = 0.05,
        journal: bool = True,
    ) -> None:
        super().__init__(
            Journal(spool_path, fsync_interval_s=fsync_interval_s),
            RecorderStats(),
            Wording(log, kind="usage", what="usage", items="records", item="usage record"),
            Tuning(batch_size, interval_s, max_queue, retry_s, timeout_s, scan_s, journal),
        )
        self._store = store

    def record(self, rec: UsageRecord) -> None:
        """Journal and queue one record; never blocks or awaits. In the journal file when it returns.

        Example:
            >>> # recorder.record(UsageRecord(request_id=ctx.request_id, created_at=now, model=ctx.model,
            >>> #                             status=200, prompt_tokens=12, completion_tokens=30, cost_usd=4e-4))
        """
        self._enqueue(rec)

    async def _store_batch(self, batch: list[UsageRecord], *, trusted: bool, fresh: bool) -> int:
        # queued records come typed from the account phase; spooled ones were checked on reading
        return await self._store.usage.insert_many(batch, validate=not trusted, fresh=fresh)

    def _check(self, item: UsageRecord) -> UsageRecord:
        return check_record(item)

    def from_facts(self, facts: RequestFacts) -> UsageRecord:
        """The usage record of a request's facts (replayed from the request journal)."""
        return usage_of(facts)
