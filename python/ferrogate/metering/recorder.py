"""The usage recorder: takes one record per request on the hot path, writes them to the store in batches.

``record()`` only appends to an in-memory deque. A background task (:meth:`UsageRecorder.run`) writes a batch
every ``interval_s`` or as soon as ``batch_size`` records wait, each batch in one transaction, idempotent by
request id. When the store fails, the batch goes to this process's spool file (fsync'd JSON lines) and the
store is probed again every ``retry_s``; once it answers, the spool is replayed and truncated only after its
records are in. Files left by crashed processes are replayed at start (and every ``scan_s``). Nothing is
dropped: a queue above ``max_queue`` spills to the spool; a record that arrives after :meth:`close` is
spooled directly.

Example:
    >>> # recorder = UsageRecorder(store, Path(".ferrogate/spool"))
    >>> # task = asyncio.create_task(recorder.run())
    >>> # recorder.record(UsageRecord(request_id=rid, created_at=now, model="gpt-4o", status=200, ...))
    >>> # await recorder.close()   # at shutdown: stop, flush (spooling what the store will not take)
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
from ferrogate.store.base import Usage
from ferrogate.store.errors import InvalidValue
from ferrogate.store.usage import UsageRecord, check_record

log = logging.getLogger("ferrogate.metering")


class UsageStore(Protocol):
    """What the recorder needs of a store: its ``usage`` repository."""

    @property
    def usage(self) -> Usage:
        """Usage records."""
        ...


@dataclass(slots=True)
class RecorderStats:
    """Counters for metrics: records stored (new rows), spooled, replayed from spools, rejected as invalid."""

    stored: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    store_failures: int = 0
    last_error: str | None = None


class UsageRecorder:
    """Batched, spooled usage writes. One per worker process, created in the worker's event loop.

    Args:
        store: the store whose ``usage.insert_many`` receives the batches.
        spool_path: the spool directory (created if missing; the file name carries the pid).
        batch_size: records per transaction; reaching it wakes the writer early.
        interval_s: the longest a record waits in memory before a write is attempted.
        max_queue: records kept in memory at most; beyond it the queue spills to the spool file.
        retry_s: after a store failure, how long batches go straight to the spool before the store is tried.
        timeout_s: the longest one store call may take before it counts as a failure.
        scan_s: how often to look for spool files left by other (crashed) processes.
    """

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
    ) -> None:
        self._store = store
        self._spool = Spool(spool_path)
        self._batch_size = max(1, batch_size)
        self._interval_s = interval_s
        self._max_queue = max(self._batch_size, max_queue)
        self._retry_s = retry_s
        self._timeout_s = timeout_s
        self._scan_s = scan_s
        self._queue: deque[UsageRecord] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._done = asyncio.Event()
        self._running = False
        self._stopping = False
        self._closed = False
        self._down = False
        self._retry_at = 0.0
        self._scan_at = 0.0  # scan at the first write
        self.stats = RecorderStats()

    # ---- hot path ------------------------------------------------------------------------------------------
    def record(self, rec: UsageRecord) -> None:
        """Queue one record; never blocks or awaits (spills to the spool file only above ``max_queue``).

        Example:
            >>> # recorder.record(UsageRecord(request_id=ctx.request_id, created_at=now, model=ctx.model,
            >>> #                             status=200, prompt_tokens=12, completion_tokens=30, cost_usd=4e-4))
        """
        if self._closed:  # after shutdown: straight to a spool file, left unlocked for the successor
            self._spill([rec])
            self._spool.close()
            return
        queue = self._queue
        queue.append(rec)
        if len(queue) >= self._batch_size:
            if len(queue) > self._max_queue:
                self._spill_queue()
            self._wake.set()

    @property
    def pending(self) -> int:
        """Records waiting in memory."""
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
            >>> # task = asyncio.create_task(recorder.run())
        """
        if self._running:
            raise RuntimeError("UsageRecorder.run() is already running")
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
            >>> # await recorder.flush()
        """
        async with self._lock:
            await self._write(force=False)

    async def close(self) -> None:
        """Stop :meth:`run`, then write what is queued (one more try of the store; the rest is spooled).

        Example:
            >>> # await recorder.close()
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
            records, offset = self._spool.read()
            if not await self._insert(records, replayed=True):
                self._spill_queue()
                return
            self._spool.consume(offset)
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            if not await self._insert(batch, replayed=False):
                self._spill(batch)
                self._spill_queue()
                return
        if self._down:
            log.warning("usage store is back: spooled usage replayed")
            self._down = False

    async def _insert(self, records: Sequence[UsageRecord], *, replayed: bool) -> bool:
        """Insert ``records`` in batches; ``False`` (store marked down) when the store fails."""
        for start in range(0, len(records), self._batch_size):
            chunk = list(records[start : start + self._batch_size])
            try:
                async with asyncio.timeout(self._timeout_s):
                    try:  # queued records come typed from the account phase; spooled ones were checked on reading
                        new = await self._store.usage.insert_many(chunk, validate=False)
                    except InvalidValue:
                        chunk = self._drop_invalid(chunk)
                        new = await self._store.usage.insert_many(chunk)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any fault of the store or the network: spool and go on
                self._failed(exc)
                return False
            self.stats.stored += new
            if replayed:
                self.stats.replayed += len(chunk)
        return True

    def _drop_invalid(self, chunk: list[UsageRecord]) -> list[UsageRecord]:
        good: list[UsageRecord] = []
        bad: list[bytes] = []
        for rec in chunk:
            try:
                good.append(check_record(rec))
            except InvalidValue as exc:
                log.error("usage record refused: %s", exc)
                bad.append(repr(rec).encode())
        self.stats.rejected += len(bad)
        self._spool.reject(bad)
        return good

    def _failed(self, exc: BaseException) -> None:
        self.stats.store_failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        if not self._down:
            log.warning("usage store failed (%s): spooling usage until it answers", self.stats.last_error)
        self._down = True
        self._retry_at = asyncio.get_running_loop().time() + self._retry_s

    async def _replay_leftovers(self) -> bool:
        """Replay every spool file left by a process that is gone; ``False`` when the store fails."""
        for path in self._spool.leftovers():
            try:
                with self._spool.claim(path) as claimed:
                    if claimed is None:
                        continue
                    records, fd = claimed
                    if not await self._insert(records, replayed=True):
                        return False
                    self._spool.finish(path, fd)
                    log.warning("usage spool %s replayed (%d records)", path.name, len(records))
            except OSError as exc:
                log.error("usage spool %s: cannot replay: %s", path, exc)
        return True

    def _spill_queue(self) -> None:
        if self._queue:
            batch = list(self._queue)
            self._queue.clear()
            self._spill(batch)

    def _spill(self, batch: list[UsageRecord]) -> None:
        try:
            self.stats.spooled += self._spool.append(batch)
        except OSError as exc:  # cannot spool either: keep the records in memory, try again later
            log.error(
                "usage spool %s: cannot write: %s (keeping %d records in memory)", self._spool.path, exc, len(batch)
            )
            self._queue.extendleft(reversed(batch))
