"""Batched, spooled writes: the machinery the usage recorder and the audit writer share.

``record()`` only appends to an in-memory deque. A background task (:meth:`SpooledWriter.run`) writes a batch
every ``interval_s`` or as soon as ``batch_size`` items wait, each batch in one store call. When the store
fails, the batch goes to this process's spool file (:mod:`ferrogate.metering.spool`) and the store is probed
again every ``retry_s``; once it answers, the spool is replayed and truncated only after its items are in.
Files left by crashed processes are replayed at start (and every ``scan_s``). Nothing is dropped: a queue
above ``max_queue`` spills to the spool; an item that arrives after :meth:`SpooledWriter.close` is spooled
directly.

A subclass supplies the store call (:meth:`SpooledWriter._store_batch`), the check of one item
(:meth:`SpooledWriter._check`) and the words of its log messages (:class:`Wording`).

Example:
    >>> # class UsageRecorder(SpooledWriter[UsageRecord, RecorderStats]):
    >>> #     async def _store_batch(self, batch, *, trusted): return await usage.insert_many(batch, validate=...)
    >>> #     def _check(self, item): return check_record(item)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from ferrogate.metering.spool import Spool, Spoolable
from ferrogate.store.errors import InvalidValue

T = TypeVar("T", bound=Spoolable)
#: Write rounds close() runs at most before spooling what is still queued.
_CLOSE_ROUNDS = 5


@dataclass(slots=True)
class WriterStats:
    """Counters for metrics: items stored (new rows), spooled, replayed from spools, rejected as invalid."""

    stored: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    store_failures: int = 0
    last_error: str | None = None


S = TypeVar("S", bound=WriterStats)


@dataclass(frozen=True, slots=True)
class Wording:
    """How a writer names things in its log messages.

    Example:
        >>> w = Wording(logging.getLogger("ferrogate.metering"), "usage", "usage", "records", "usage record")
        >>> f"{w.kind} store failed: spooling {w.what} until it answers"
        'usage store failed: spooling usage until it answers'
    """

    log: logging.Logger
    kind: str  # the store and spool: "usage store failed", "usage spool x replayed"
    what: str  # what gets spooled: "spooling usage until it answers"
    items: str  # the plural: "(12 records)"
    item: str  # one refused: "usage record refused: ..."


@dataclass(frozen=True, slots=True)
class Tuning:
    """When and how much a :class:`SpooledWriter` writes.

    Args:
        batch_size: items per store call; reaching it wakes the writer early.
        interval_s: the longest an item waits in memory before a write is attempted.
        max_queue: items kept in memory at most; beyond it the queue spills to the spool file.
        retry_s: after a store failure, how long batches go straight to the spool before the store is tried.
        timeout_s: the longest one store call may take before it counts as a failure.
        scan_s: how often to look for spool files left by other (crashed) processes.

    Example:
        >>> Tuning(batch_size=500, interval_s=0.5, max_queue=100_000, retry_s=1.0, timeout_s=10.0, scan_s=60.0).retry_s
        1.0
    """

    batch_size: int
    interval_s: float
    max_queue: int
    retry_s: float
    timeout_s: float
    scan_s: float


class SpooledWriter(Generic[T, S]):
    """Batched, spooled writes of ``T`` items, counted in ``S`` stats. One per worker process, created in the
    worker's event loop. Subclasses override :meth:`_store_batch` and :meth:`_check`.

    Args:
        spool: this process's spool (its prefix and decoder are the subclass's).
        stats: the counters to fill.
        wording: the logger and the words of the log messages.
        tuning: batch size, intervals and timeouts.
    """

    _refused: ClassVar[tuple[type[Exception], ...]] = (InvalidValue,)  # what _check raises for a bad item

    def __init__(self, spool: Spool[T], stats: S, wording: Wording, tuning: Tuning) -> None:
        self._spool = spool
        self._words = wording
        self._batch_size = max(1, tuning.batch_size)
        self._interval_s = tuning.interval_s
        self._max_queue = max(self._batch_size, tuning.max_queue)
        self._retry_s = tuning.retry_s
        self._timeout_s = tuning.timeout_s
        self._scan_s = tuning.scan_s
        self._queue: deque[T] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._done = asyncio.Event()
        self._running = False
        self._stopping = False
        self._closed = False
        self._down = False
        self._retry_at = 0.0
        self._scan_at = 0.0  # scan at the first write
        self.stats = stats

    # ---- what a subclass supplies --------------------------------------------------------------------------
    async def _store_batch(self, batch: list[T], *, trusted: bool, fresh: bool) -> int:
        """Store ``batch`` in one call; how many were new. ``trusted``: the first try, before any check.
        ``fresh``: the items come straight from the queue, never offered to a store before (not replayed
        from a spool), so the store may skip looking for ids it already holds.

        Raises:
            InvalidValue: an item the store refuses (the batch is checked, the bad ones dropped, tried again).
        """
        raise NotImplementedError

    def _check(self, item: T) -> T:
        """``item`` as it can be stored, or raise one of ``_refused``."""
        raise NotImplementedError

    # ---- hot path ------------------------------------------------------------------------------------------
    def _enqueue(self, item: T) -> None:
        """Queue one item; never blocks or awaits (spills to the spool file only above ``max_queue``)."""
        if self._closed:  # after shutdown: straight to a spool file, left unlocked for the successor
            self._spill([item])
            self._spool.close()
            return
        queue = self._queue
        queue.append(item)
        if len(queue) >= self._batch_size:
            if len(queue) > self._max_queue:
                self._spill_queue()
            self._wake.set()

    @property
    def pending(self) -> int:
        """Items waiting in memory."""
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
            raise RuntimeError(f"{type(self).__name__}.run() is already running")
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
            # a round writes what was queued when it started: a few more rounds take what arrived meanwhile
            # (shutdown: arrivals dry up); what is left after them, or after a failed write, is spooled
            for _ in range(_CLOSE_ROUNDS):
                await self._write(force=True)
                if not self._queue or self._down:
                    break
            self._spill_queue()
            if self._queue:  # the spool could not be written either: these are lost with the process
                words = self._words
                words.log.error("%s: %d %s could not be stored nor spooled", words.kind, len(self._queue), words.items)
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
            items, offset = self._spool.read()
            if not await self._store_items(items, replayed=True):
                self._spill_queue()
                return
            self._spool.consume(offset)
        # only what is queued now: items that arrive while a batch is being written wait for the next round
        # (or wake it once a full batch waits). Draining "until empty" degenerates under steady load into
        # one tiny transaction per request or two whenever a write takes as long as the gap between requests.
        left = len(self._queue)
        while left > 0 and self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, left, len(self._queue)))]
            left -= len(batch)
            if not await self._store_items(batch, replayed=False):
                self._spill(batch)
                self._spill_queue()
                return
        if self._down:
            words = self._words
            words.log.warning("%s store is back: spooled %s replayed", words.kind, words.what)
            self._down = False

    async def _store_items(self, items: Sequence[T], *, replayed: bool) -> bool:
        """Store ``items`` in batches; ``False`` (store marked down) when the store fails."""
        for start in range(0, len(items), self._batch_size):
            chunk = list(items[start : start + self._batch_size])
            try:
                async with asyncio.timeout(self._timeout_s):
                    try:
                        new = await self._store_batch(chunk, trusted=True, fresh=not replayed)
                    except InvalidValue:
                        chunk = self._drop_invalid(chunk)
                        new = await self._store_batch(chunk, trusted=False, fresh=not replayed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any fault of the store or the network: spool and go on
                self._failed(exc)
                return False
            self.stats.stored += new
            if replayed:
                self.stats.replayed += len(chunk)
        return True

    def _drop_invalid(self, chunk: list[T]) -> list[T]:
        """The items of ``chunk`` that can be stored; the others go to the rejected log (a programming error)."""
        good: list[T] = []
        bad: list[bytes] = []
        for item in chunk:
            try:
                good.append(self._check(item))
            except self._refused as exc:
                self._words.log.error("%s refused: %s", self._words.item, exc)
                bad.append(repr(item).encode())
        self.stats.rejected += len(bad)
        self._spool.reject(bad)
        return good

    def _failed(self, exc: BaseException) -> None:
        self.stats.store_failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        if not self._down:
            words = self._words
            words.log.warning(
                "%s store failed (%s): spooling %s until it answers", words.kind, self.stats.last_error, words.what
            )
        self._down = True
        self._retry_at = asyncio.get_running_loop().time() + self._retry_s

    async def _replay_leftovers(self) -> bool:
        """Replay every spool file left by a process that is gone; ``False`` when the store fails."""
        words = self._words
        for path in self._spool.leftovers():
            try:
                with self._spool.claim(path) as claimed:
                    if claimed is None:
                        continue
                    items, fd = claimed
                    if not await self._store_items(items, replayed=True):
                        return False
                    self._spool.finish(path, fd)
                    words.log.warning("%s spool %s replayed (%d %s)", words.kind, path.name, len(items), words.items)
            except OSError as exc:
                words.log.error("%s spool %s: cannot replay: %s", words.kind, path, exc)
        return True

    def _spill_queue(self) -> None:
        if self._queue:
            batch = list(self._queue)
            self._queue.clear()
            self._spill(batch)

    def _spill(self, batch: list[T]) -> None:
        try:
            self.stats.spooled += self._spool.append(batch)
        except OSError as exc:  # cannot spool either: keep the items in memory, try again later
            words = self._words
            words.log.error(
                "%s spool %s: cannot write: %s (keeping %d %s in memory)",
                words.kind,
                self._spool.path,
                exc,
                len(batch),
                words.items,
            )
            self._queue.extendleft(reversed(batch))
