"""The audit writer: takes audit events on the hot path, appends them to the hash chain in batches.

``record()`` writes the event to this process's journal (``audit-<pid>-*.jsonl``: one ``write(2)``, fsync'd in
groups off the event loop) and appends it to an in-memory deque. A background task (:meth:`AuditWriter.run`)
appends a batch every ``interval_s`` or as soon as ``batch_size`` events wait, each batch in one transaction
(the store assigns the chain positions under its chain lock), idempotent by event id. When the store fails,
the events wait in the journal and the store is probed again every ``retry_s``; once it answers, the journal is
replayed. Segments left by crashed or killed processes are replayed at start (and every ``scan_s``). The same
guarantees as the usage recorder (:mod:`ferrogate.metering.recorder`), the same machinery
(:class:`ferrogate.journal.writer.JournalWriter`), with a journal of its own keeping audit events.

Example:
    >>> # writer = AuditWriter(store, Path(".ferrogate/spool/audit"))
    >>> # task = asyncio.create_task(writer.run())
    >>> # writer.record(request_facts(ctx, cost_usd=cost, latency_ms=latency_ms))
    >>> # await writer.close()   # at shutdown: stop, flush (the journal keeps what the store will not take)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from ferrogate.journal.file import Journal
from ferrogate.journal.writer import JournalWriter, Tuning, Wording, WriterStats
from ferrogate.store.audit import AuditEvent, RequestFacts, check_event, check_facts, read_item
from ferrogate.store.base import Audit
from ferrogate.store.errors import InvalidValue

log = logging.getLogger("ferrogate.audit")


class AuditStore(Protocol):
    """What the writer needs of a store: its ``audit`` repository."""

    @property
    def audit(self) -> Audit:
        """The audit trail."""
        ...


@dataclass(slots=True)
class AuditStats(WriterStats):
    """Counters for metrics: events stored (new rows), spooled, replayed from spools, rejected as invalid."""


#: What the writer queues: an admin change, or a data-plane request's facts.
AuditItem = AuditEvent | RequestFacts


class AuditWriter(JournalWriter[AuditItem, AuditStats]):
    """Batched, spooled, hash-chained audit writes. One per worker process, created in the worker's event loop.

    Args:
        store: the store whose ``audit.append_many`` receives the batches.
        spool_path: the spool directory (created if missing; the file name carries the pid). Give it its own
            directory or share the usage spool's: a spool only touches files of its own prefix.
        batch_size: events per transaction; reaching it wakes the writer early.
        interval_s: the longest an event waits in memory before a write is attempted.
        max_queue: events kept in memory at most; beyond it the queue spills to the spool file.
        retry_s: after a store failure, how long batches go straight to the spool before the store is tried.
        timeout_s: the longest one store call may take before it counts as a failure.
        scan_s: how often to look for journal segments left by other (crashed) processes.
        fsync_interval_s: how often the journal's writes are made durable (a power loss takes at most this).
        journal: every item to the journal as it arrives (``False``: only while the store is down).
    """

    _refused: ClassVar[tuple[type[Exception], ...]] = (InvalidValue, TypeError)  # TypeError: data that is not JSON
    consumer = "audit"

    def __init__(
        self,
        store: AuditStore,
        spool_path: Path,
        *,
        batch_size: int = 2000,
        interval_s: float = 0.5,
        max_queue: int = 100_000,
        retry_s: float = 1.0,
        timeout_s: float = 10.0,
        scan_s: float = 60.0,
        fsync_interval_s: float = 0.05,
        journal: bool = True,
    ) -> None:
        super().__init__(
            Journal(Path(spool_path), prefix="audit", decode=read_item, fsync_interval_s=fsync_interval_s),
            AuditStats(),
            Wording(log, kind="audit", what="audit events", items="events", item="audit event"),
            Tuning(batch_size, interval_s, max_queue, retry_s, timeout_s, scan_s, journal),
        )
        self._store = store

    def record(self, event: AuditItem) -> None:
        """Journal and queue one event (or a request's facts); never blocks or awaits. In the journal file when
        it returns.

        Example:
            >>> # writer.record(request_facts(ctx, cost_usd=cost, latency_ms=latency_ms))
        """
        self._enqueue(event)

    async def record_and_flush(self, event: AuditEvent) -> None:
        """Queue ``event`` and write now: returns once it is in the store or in the (fsync'd) journal.

        For admin changes (rare, not on the hot path): the admin API answers after its audit event is durable.

        Example:
            >>> # await writer.record_and_flush(admin_event(actor, "team.create", team.id, team.id, None, team))
        """
        self.record(event)
        if not self._closed:
            await self.flush()
            if self._down or self._queue:  # not in the store yet: durable in the journal before the answer
                if not self._journaling and self._queue:
                    self._fall_behind()  # journal off: the queue is in memory only; spill it (fsync'd)
                self._journal.sync()

    async def _store_batch(self, batch: list[AuditItem], *, trusted: bool, fresh: bool) -> int:
        # queued events come typed from the account phase and the admin API; spooled ones were checked on
        # reading (a retry after a refusal checks every event again)
        return await self._store.audit.append_many(batch, validate=not trusted, fresh=fresh)

    def from_facts(self, facts: RequestFacts) -> AuditItem:
        """A request's facts are the audit writer's item as they are."""
        return facts

    def _check(self, item: AuditItem) -> AuditItem:
        if isinstance(item, RequestFacts):
            return check_facts(item)
        check_event(item)
        item.to_json()  # data that is not JSON (check_event does not serialise)
        return item
