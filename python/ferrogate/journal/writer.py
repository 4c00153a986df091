"""Journaled, batched writes: the machinery the usage recorder and the audit writer share.

``record()`` writes the item to this process's journal (:mod:`ferrogate.journal.file`: a memory copy, no
``fsync``; so it survives the death of the process from the moment the call returns) and appends it to an
in-memory deque. A background task (:meth:`JournalWriter.run`) writes a batch every ``interval_s`` or as soon
as ``batch_size`` items wait, each batch in one store call; each write round seals the journal's current
segment (which then holds exactly the items the round takes from memory) and removes it once they are stored.
When the store fails, the memory queue is dropped (its items are in the journal) and the store is probed again
every ``retry_s``; once it answers, the sealed segments are replayed (idempotent by id) and removed. Segments
left by processes that are gone (crashed, killed, or stopped while the store was down) are replayed at start
(and every ``scan_s``). Nothing is dropped: a queue above ``max_queue`` falls back to the journal the same way;
an item that arrives after :meth:`JournalWriter.close` is journaled for the successor. Only an item the journal
cannot take (disk full) waits in memory alone, and is logged.

A subclass supplies the store call (:meth:`JournalWriter._store_batch`), the check of one item
(:meth:`JournalWriter._check`) and the words of its log messages (:class:`Wording`).

Example:
    >>> # class UsageRecorder(JournalWriter[UsageRecord, RecorderStats]):
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
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from ferrogate.journal.file import Journal, Journaled

if TYPE_CHECKING:
    from ferrogate.journal.requests import RequestJournal
    from ferrogate.store.audit import RequestFacts
from ferrogate.store.errors import InvalidValue

T = TypeVar("T", bound=Journaled)
#: Write rounds close() runs at most before spooling what is still queued.
_CLOSE_ROUNDS = 5


@dataclass(slots=True)
class WriterStats:
    """Counters for metrics: items stored (new rows), left to the journal while the store was down (``spooled``),
    replayed from journals, rejected as invalid, and lost (neither stored nor journaled: disk full too)."""

    stored: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    store_failures: int = 0
    lost: int = 0
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
        max_queue: items kept in memory at most; beyond it the queue is dropped and replayed from the journal.
        retry_s: after a store failure, how long items wait in the journal before the store is tried again.
        timeout_s: the longest one store call may take before it counts as a failure.
        scan_s: how often to look for journal segments left by other (crashed) processes.
        journal: write every item to the journal as it arrives (the default); ``False``: only when the store
            fails, as a spool (what a killed process held in memory is lost: for measuring the journal's cost).

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
    journal: bool = True  # False: items go to the journal only when the store fails (a killed process loses a round)


class JournalWriter(Generic[T, S]):
    """Batched, spooled writes of ``T`` items, counted in ``S`` stats. One per worker process, created in the
    worker's event loop. Subclasses override :meth:`_store_batch` and :meth:`_check`.

    Args:
        journal: this process's journal of this writer (its prefix and decoder are the subclass's).
        stats: the counters to fill.
        wording: the logger and the words of the log messages.
        tuning: batch size, intervals and timeouts.
    """

    _refused: ClassVar[tuple[type[Exception], ...]] = (InvalidValue,)  # what _check raises for a bad item
    #: This writer's name in a :class:`~ferrogate.journal.requests.RequestJournal` it consumes.
    consumer: ClassVar[str] = "items"

    def __init__(self, journal: Journal[T], stats: S, wording: Wording, tuning: Tuning) -> None:
        self._journal = journal
        self._words = wording
        self._batch_size = max(1, tuning.batch_size)
        self._interval_s = tuning.interval_s
        self._max_queue = max(self._batch_size, tuning.max_queue)
        self._retry_s = tuning.retry_s
        self._timeout_s = tuning.timeout_s
        self._scan_s = tuning.scan_s
        self._journaling = tuning.journal
        self._queue: deque[T] = deque()
        self._queueing = True  # False: the store is down or the queue overflowed; the journal has the items
        self._unjournaled: deque[T] = deque()  # items the journal could not take (disk full): memory only
        self._journal_errors = 0
        self._shared: RequestJournal | None = None  # the worker's request journal, when this writer takes from it
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._done = asyncio.Event()
        self._running = False
        self._stopping = False
        self._closed = False
        self._down = False
        self._retry_at = 0.0
        self._scan_at = 0.0  # scan at the first write
        self._shared_scan_at = 0.0
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
        """Journal and queue one item; never blocks or awaits. In the journal file when it returns."""
        if self._journaling or not self._queueing or self._closed:
            try:
                self._journal.write(item)
            except (OSError, TypeError, ValueError) as exc:
                self._memory_only(item, exc)
                return
        if self._closed:  # after shutdown: the journal keeps it for the successor (closed: synced, unlocked)
            self._journal.close()
            return
        self._queue_item(item)

    def take(self, item: T, journaled: bool) -> None:
        """Queue one item the caller already wrote to the request journal this writer consumes (``journaled``);
        an item that is not journaled goes the way of :meth:`_enqueue`. Never blocks or awaits."""
        if not journaled:
            self._enqueue(item)
        elif not self._closed:  # closed: the request journal keeps it for the successor
            self._queue_item(item)

    def _queue_item(self, item: T) -> None:
        """Queue an item (not while the store is down or the queue overflowed: it is in a journal then, and
        replayed from there)."""
        if not self._queueing:
            self.stats.spooled += 1
            return
        queue = self._queue
        queue.append(item)
        if len(queue) >= self._batch_size:
            if len(queue) > self._max_queue:
                self._fall_behind()
            self._wake.set()

    def share(self, journal: RequestJournal) -> None:
        """Consume ``journal``: request items arrive through :meth:`take`, already journaled there."""
        self._shared = journal
        journal.register(self)

    def from_facts(self, facts: RequestFacts) -> T:
        """This writer's item for one request's facts (a replay of the request journal)."""
        raise NotImplementedError

    async def store_replayed(self, items: Sequence[T]) -> bool:
        """Store replayed items, idempotently; ``False`` (store marked down) when the store fails."""
        return await self._store_items(items, replayed=True)

    def _memory_only(self, item: T, exc: BaseException) -> None:
        """An item the journal refused (disk full, or not encodable): kept in memory, bounded, and said."""
        self._journal_errors += 1
        if self._journal_errors == 1 or self._journal_errors % 1000 == 0:
            words = self._words
            words.log.error(
                "%s journal %s: cannot write (%s): %d %s kept in memory only",
                words.kind,
                self._journal.directory,
                exc,
                self._journal_errors,
                words.items,
            )
        if len(self._unjournaled) >= self._max_queue:
            self._unjournaled.popleft()
            self.stats.lost += 1
        self._unjournaled.append(item)

    def _fall_behind(self) -> None:
        """Drop the memory queue: its items are in the journal, replayed from there by the next round."""
        queue = self._queue
        if not self._journaling and queue:  # they are in memory only: to the journal first (fsync'd)
            try:
                self._journal.append(queue)
            except (OSError, TypeError, ValueError) as exc:
                for item in queue:
                    self._memory_only(item, exc)
                queue.clear()
        self.stats.spooled += len(queue)
        queue.clear()
        self._queueing = False

    @property
    def pending(self) -> int:
        """Items waiting in memory."""
        return len(self._queue) + len(self._unjournaled)

    @property
    def store_down(self) -> bool:
        """``True`` between a store failure and the next successful write."""
        return self._down

    @property
    def spool_bytes(self) -> int:
        """Bytes of journaled items that wait for the store and are no longer in memory (the store was down)."""
        own = self._journal.backlog() if self._queueing else self._journal.size()
        if self._shared is not None and not self._queueing:
            own += self._shared.backlog(self.consumer)
        return own

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
            # (shutdown: arrivals dry up); what is left after them, or after a failed write, stays in the journal
            for _ in range(_CLOSE_ROUNDS):
                await self._write(force=True)
                if (not self._queue and not self._unjournaled) or self._down:
                    break
            if self._queue:
                self._fall_behind()
            if self._unjournaled:
                try:
                    self.stats.spooled += self._journal.append(self._unjournaled)
                    self._unjournaled.clear()
                except OSError as exc:  # these are lost with the process
                    words = self._words
                    self.stats.lost += len(self._unjournaled)
                    words.log.error(
                        "%s: %d %s could not be stored nor journaled: %s",
                        words.kind,
                        len(self._unjournaled),
                        words.items,
                        exc,
                    )
            self._closed = True
            self._journal.close()  # what is not stored stays, synced and unlocked, for the successor

    # ---- internals -----------------------------------------------------------------------------------------
    async def _write(self, *, force: bool) -> None:
        now = asyncio.get_running_loop().time()
        if self._down and not force and now < self._retry_at:
            return
        shared = self._shared
        if now >= self._scan_at or self._down:
            if not await self._replay_leftovers():
                return
            self._scan_at = now + self._scan_s
        if shared is not None and now >= self._shared_scan_at:
            # a gone process's request journal goes into every consumer: one whose store fails leaves it for
            # the next scan, and must not hold this writer's own round up
            self._shared_scan_at = now + self._scan_s
            await shared.replay_leftovers()
        if not self._queueing and not await self._catch_up():
            return
        if not self._queueing:  # the queue overflowed again while catching up: its items are in the journal
            return
        # The journals' current segments hold exactly what is queued now: seal them, store that, release them.
        # Only what is queued now: items that arrive while a batch is being written wait for the next round
        # (or wake it once a full batch waits). Draining "until empty" degenerates under steady load into one
        # tiny transaction per request or two whenever a write takes as long as the gap between requests.
        journal = self._journal
        segment = journal.seal()
        mark = shared.mark() if shared is not None else 0  # with the seal: no await between the two
        left = len(self._queue)
        while left > 0 and self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, left, len(self._queue)))]
            left -= len(batch)
            if not await self._store_items(batch, replayed=False):
                self._queue.extendleft(reversed(batch))
                self._fall_behind()  # the sealed segments stay: replayed once the store answers
                return
        if left > 0 or not self._queueing:  # the queue overflowed meanwhile: not all of it is stored
            return
        journal.release(segment)
        if shared is not None:
            shared.done(self.consumer, mark)
        if self._unjournaled:
            memory = list(self._unjournaled)
            if not await self._store_items(memory, replayed=True):
                return
            for _ in memory:
                self._unjournaled.popleft()
        if self._down:
            words = self._words
            words.log.warning("%s store is back: journaled %s replayed", words.kind, words.what)
            self._down = False

    async def _catch_up(self) -> bool:
        """Replay what the journals hold and memory does not (after a store failure or a queue overflow), then
        queue again; ``False`` when the store failed again.

        Old segments first, without sealing anything new: until they are in, new items only go to the
        journals' current segments, so an outage adds no segment per retry. Then, with no await in between,
        queueing resumes and the current segments are sealed and replayed too.
        """
        journal = self._journal
        shared = self._shared
        for _ in range(2):  # the sealed segments there were, then the ones sealed when queueing resumes
            for old in journal.sealed():
                if not await self._store_items(journal.read(old), replayed=True):
                    self._fall_behind()
                    return False
                journal.release(old)
            if shared is not None:
                mark = shared.marks
                for old in shared.pending(self.consumer, mark):
                    if not await self._store_items([self.from_facts(f) for f in shared.read(old)], replayed=True):
                        self._fall_behind()
                        return False
                shared.done(self.consumer, mark)
            if not self._queueing:
                self._queueing = True  # from here on items are queued (and land in new segments) ...
                journal.seal()  # ... and what came before is sealed, for the second pass
                if shared is not None:
                    shared.mark()
        return True

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
        self._journal.reject(bad)
        return good

    def _failed(self, exc: BaseException) -> None:
        self.stats.store_failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        if not self._down:
            words = self._words
            words.log.warning(
                "%s store failed (%s): %s wait in the journal until it answers",
                words.kind,
                self.stats.last_error,
                words.what,
            )
        self._down = True
        self._retry_at = asyncio.get_running_loop().time() + self._retry_s

    async def _replay_leftovers(self) -> bool:
        """Replay every journal segment left by a process that is gone; ``False`` when the store fails."""
        return await self._journal.replay_leftovers(self.store_replayed)
