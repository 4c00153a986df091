"""The audit writer: takes audit events on the hot path, appends them to the hash chain in batches.

``record()`` only appends to an in-memory deque. A background task (:meth:`AuditWriter.run`) appends a batch
every ``interval_s`` or as soon as ``batch_size`` events wait, each batch in one transaction (the store
assigns the chain positions under its chain lock), idempotent by event id. When the store fails, the batch
goes to this process's spool file (``audit-<pid>-*.jsonl``, fsync'd JSON lines) and the store is probed again
every ``retry_s``; once it answers, the spool is replayed and truncated only after its events are in. Files
left by crashed processes are replayed at start (and every ``scan_s``). Nothing is dropped: a queue above
``max_queue`` spills to the spool; an event that arrives after :meth:`close` is spooled directly.
The same guarantees as the usage recorder (:mod:`ferrogate.metering.recorder`), with the spool of
:mod:`ferrogate.metering.spool` keeping audit events in their own directory.

Example:
    >>> # writer = AuditWriter(store, Path(".ferrogate/spool/audit"))
    >>> # task = asyncio.create_task(writer.run())
    >>> # writer.record(request_event(ctx, cost_usd=cost, latency_ms=latency_ms))
    >>> # await writer.close()   # at shutdown: stop, flush (spooling what the store will not take)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ferrogate.metering.spool import Spool
from ferrogate.store.audit import AuditEvent, check_event
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
class AuditStats:
    """Counters for metrics: events stored (new rows), spooled, replayed from spools, rejected as invalid."""

    stored: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    store_failures: int = 0
    last_error: str | None = None


class AuditWriter:
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
        scan_s: how often to look for spool files left by other (crashed) processes.
    """

    def __init__(
        self,
        store: AuditStore,
        spool_path: Path,
        *,
        batch_size: int = 500,
        interval_s: float = 0.5,
        max_queue: int = 100_000,
        retry_s: float = 1.0,
        timeout_s: float = 10.0,
        scan_s: float = 60.0,
    ) -> None:
        self._store = store
        self._spool = Spool(Path(spool_path), prefix="audit", decode=AuditEvent.from_json)
        self._batch_size = max(1, batch_size)
        self._interval_s = interval_s
        self._max_queue = max(self._batch_size, max_queue)
        self._retry_s = retry_s
        self._timeout_s = timeout_s
        self._scan_s = scan_s
        self._queue: deque[AuditEvent] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._done = asyncio.Event()
        self._running = False
        self._stopping = False
        self._closed = False
        self._down = False
        self._retry_at = 0.0
        self._scan_at = 0.0  # scan at the first write
        self.stats = AuditStats()

    # ---- hot path ------------------------------------------------------------------------------------------
    def record(self, event: AuditEvent) -> None:
        """Queue one event; never blocks or awaits (spills to the spool file only above ``max_queue``).

        Example:
            >>> # writer.record(request_event(ctx, cost_usd=cost, latency_ms=latency_ms))
        """
        if self._closed:  # after shutdown: straight to a spool file, left unlocked for the successor
            self._spill([event])
            self._spool.close()
            return
        queue = self._queue
        queue.append(event)
        if len(queue) >= self._batch_size:
            if len(queue) > self._max_queue:
                self._spill_queue()
            self._wake.set()

    async def record_and_flush(self, event: AuditEvent) -> None:
        """Queue ``event`` and write now: returns once it is in the store or in the (fsync'd) spool file.

        For admin changes (rare, not on the hot path): the admin API answers after its audit event is durable.

        Example:
            >>> # await writer.record_and_flush(admin_event(actor, "team.create", team.id, team.id, None, team))
        """
        self.record(event)
        if not self._closed:
            await self.flush()

    @property
    def pending(self) -> int:
        """Events waiting in memory."""
        return len(self._queue)

    @property
    def store_down(self) -> bool:
        """``True`` between a store failure and the next successful write."""
        return self._down

    @property
    def spool_bytes(self) -> int:
        """Bytes waiting in this process's spool file."""
        return self._spool.size()

    # ---- background loop -----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Write batches until :meth:`close`; first replays spool files left by crashed predecessors.

        Raises:
            RuntimeError: already running.

        Example:
            >>> # task = asyncio.create_task(writer.run())
        """
        if self._running:
            raise RuntimeError("AuditWriter.run() is already running")
        self._running = True
        self._done.clear()
        try:
            while not self._stopping:
                await self.flush()
                if self._stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval_s):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            self._running = False
            self._done.set()

    async def flush(self) -> None:
        """Write everything queued now: into the store, or into the spool file when the store fails.

        Example:
            >>> # await writer.flush()
        """
        async with self._lock:
            await self._write(force=False)

    async def close(self) -> None:
        """Stop :meth:`run`, then write what is queued (one more try of the store; the rest is spooled).

        Example:
            >>> # await writer.close()
        """
        self._stopping = True
        self._wake.set()
        if self._running:
            await self._done.wait()
        async with self._lock:
            await self._write(force=True)
            self._closed = True
            self._spool.close()

    # ---- internals -----------------------------------------------------------------------------------------
    async def _write(self, *, force: bool) -> None:
        now = asyncio.get_running_loop().time()
        if self._down and not force and now < self._retry_at:
            self._spill_queue()
            return
        if now >= self._scan_at or self._down:
            if not await self._replay_leftovers():
                self._spill_queue()
                return
            self._scan_at = now + self._scan_s
        if self._spool.size():
            events, offset = self._spool.read()
            if not await self._append(events, replayed=True):
                self._spill_queue()
                return
            self._spool.consume(offset)
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            if not await self._append(batch, replayed=False):
                self._spill(batch)
                self._spill_queue()
                return
        if self._down:
            log.warning("audit store is back: spooled audit events replayed")
            self._down = False

    async def _append(self, events: Sequence[AuditEvent], *, replayed: bool) -> bool:
        """Append ``events`` in batches; ``False`` (store marked down) when the store fails."""
        for start in range(0, len(events), self._batch_size):
            chunk = list(events[start : start + self._batch_size])
            try:
                async with asyncio.timeout(self._timeout_s):
                    try:
                        new = await self._store.audit.append_many(chunk)
                    except InvalidValue:
                        chunk = self._drop_invalid(chunk)
                        new = await self._store.audit.append_many(chunk)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any fault of the store or the network: spool and go on
                self._failed(exc)
                return False
            self.stats.stored += new
            if replayed:
                self.stats.replayed += len(chunk)
        return True

    def _drop_invalid(self, chunk: list[AuditEvent]) -> list[AuditEvent]:
        """The events of ``chunk`` that can be stored; the others go to the rejected log (a programming error)."""
        good: list[AuditEvent] = []
        bad: list[bytes] = []
        for event in chunk:
            try:
                check_event(event)
                event.to_json()  # data that is not JSON (check_event does not serialise)
            except (InvalidValue, TypeError) as exc:
                log.error("audit event refused: %s", exc)
                bad.append(repr(event).encode())
                continue
            good.append(event)
        self.stats.rejected += len(bad)
        self._spool.reject(bad)
        return good

    def _failed(self, exc: BaseException) -> None:
        self.stats.store_failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        if not self._down:
            log.warning("audit store failed (%s): spooling audit events until it answers", self.stats.last_error)
        self._down = True
        self._retry_at = asyncio.get_running_loop().time() + self._retry_s

    async def _replay_leftovers(self) -> bool:
        """Replay every spool file left by a process that is gone; ``False`` when the store fails."""
        for path in self._spool.leftovers():
            try:
                with self._spool.claim(path) as claimed:
                    if claimed is None:
                        continue
                    events, fd = claimed
                    if not await self._append(events, replayed=True):
                        return False
                    self._spool.finish(path, fd)
                    log.warning("audit spool %s replayed (%d events)", path.name, len(events))
            except OSError as exc:
                log.error("audit spool %s: cannot replay: %s", path, exc)
        return True

    def _spill_queue(self) -> None:
        if self._queue:
            batch = list(self._queue)
            self._queue.clear()
            self._spill(batch)

    def _spill(self, batch: list[AuditEvent]) -> None:
        try:
            self.stats.spooled += self._spool.append(batch)
        except OSError as exc:  # cannot spool either: keep the events in memory, try again later
            log.error(
                "audit spool %s: cannot write: %s (keeping %d events in memory)", self._spool.path, exc, len(batch)
            )
            self._queue.extendleft(reversed(batch))
        except TypeError as exc:  # an event whose data is not JSON: never storable, keep the rest
            good = self._drop_invalid(batch)
            if len(good) < len(batch):
                self._spill(good)
            else:
                log.error("audit spool: cannot encode events: %s", exc)
