"""The request journal: each request's facts written once, for both the usage recorder and the audit writer.

A data-plane request leaves a usage record and an audit record, and both are built from the same facts
(:class:`~ferrogate.store.audit.RequestFacts`). Rather than two journal lines,
:class:`~ferrogate.pipeline.account.Books` writes the facts once into this worker's request journal
(``request-<pid>-<random>-<n>.jsonl``), then queues the usage record and the facts with the two writers, which know
the item is journaled. Each writer (a *consumer*) marks the journal at the start of its write round
(:meth:`RequestJournal.mark`: the current segment is sealed, so the segments up to the mark hold exactly what the
writer has queued since its previous mark) and reports the mark :meth:`RequestJournal.done` once its items are
stored; a segment is removed when every consumer is done with it. A consumer whose store failed replays the
segments after its last done mark (:meth:`RequestJournal.pending`) when the store answers. Segments left by a
process that is gone are replayed into every consumer before they are removed
(:meth:`RequestJournal.replay_leftovers`).

Example:
    >>> # journal = RequestJournal(Path(".ferrogate/spool/requests"))
    >>> # journal.register(recorder); journal.register(audit)   # the writers that take request items
    >>> # journal.write(facts)                                   # Books, before the answer's last byte
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from ferrogate.journal.file import Journal, Segment
from ferrogate.store.audit import RequestFacts, read_item

log = logging.getLogger("ferrogate.journal")


class Consumer(Protocol):
    """A writer that takes the journal's request items (the usage recorder, the audit writer)."""

    @property
    def consumer(self) -> str:
        """Its name in the journal's bookkeeping: "usage", "audit"."""
        ...

    def from_facts(self, facts: RequestFacts) -> Any:
        """The writer's item for one request's facts."""
        ...

    async def store_replayed(self, items: Sequence[Any]) -> bool:
        """Store replayed items (idempotently); ``False`` when the store failed."""
        ...


def _facts(line: bytes) -> RequestFacts:
    item = read_item(line)
    if not isinstance(item, RequestFacts):  # only facts are written here
        from ferrogate.store.errors import InvalidValue

        raise InvalidValue("request facts", line, "a JSON array of request facts")
    return item


class RequestJournal:
    """This worker's journal of request facts, shared by the writers registered as its consumers.

    Args:
        directory: where its files live (created if missing); share it between a host's workers.
        fsync_interval_s: how often the syncer thread makes its writes durable.
    """

    def __init__(self, directory: Path, *, fsync_interval_s: float = 0.05) -> None:
        self.journal: Journal[RequestFacts] = Journal(
            directory, prefix="request", decode=_facts, fsync_interval_s=fsync_interval_s
        )
        self._consumers: dict[str, Consumer] = {}
        self._done: dict[str, int] = {}  # consumer -> the last segment number whose items it has stored
        self._marks = 0  # the number of the last sealed segment
        self.write: Callable[[RequestFacts], None] = self.journal.write  # the hot path, without a hop

    def register(self, consumer: Consumer) -> None:
        """``consumer`` takes every request item written from now on."""
        self._consumers[consumer.consumer] = consumer
        self._done[consumer.consumer] = self._marks

    @property
    def marks(self) -> int:
        """The number of the last sealed segment (0: none yet)."""
        return self._marks

    def mark(self) -> int:
        """Seal the current segment (if anything was written to it); the number of the last sealed segment."""
        segment = self.journal.seal()
        if segment is not None:
            self._marks = segment.n
        return self._marks

    def done(self, consumer: str, mark: int) -> None:
        """``consumer`` has stored everything up to ``mark``; segments every consumer is done with are removed."""
        self._done[consumer] = max(self._done[consumer], mark)
        upto = min(self._done.values())
        for segment in self.journal.sealed():
            if segment.n <= upto:
                self.journal.release(segment)

    def pending(self, consumer: str, mark: int) -> list[Segment]:
        """Sealed segments after ``consumer``'s last done mark, up to ``mark``, oldest first."""
        done = self._done[consumer]
        return [s for s in self.journal.sealed() if done < s.n <= mark]

    def read(self, segment: Segment) -> list[RequestFacts]:
        """The facts in one of this worker's segments."""
        return self.journal.read(segment)

    def backlog(self, consumer: str) -> int:
        """Bytes of sealed segments ``consumer`` has not stored yet."""
        done = self._done.get(consumer, 0)
        return sum(s.size for s in self.journal.sealed() if s.n > done)

    async def replay_leftovers(self) -> bool:
        """Replay every segment left by a process that is gone into every consumer, then remove it; ``False``
        when a consumer's store failed (the segment stays for the next try)."""

        async def into_every_consumer(facts: list[RequestFacts]) -> bool:
            for consumer in self._consumers.values():
                if not await consumer.store_replayed([consumer.from_facts(f) for f in facts]):
                    return False
            return True

        return await self.journal.replay_leftovers(into_every_consumer)

    def close(self) -> None:
        """Sync and release the segments: what some consumer has not stored stays for a successor."""
        self.journal.close()
