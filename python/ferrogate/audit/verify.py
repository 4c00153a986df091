"""Verifying and exporting the audit chain (``ferrogate audit verify``, ``ferrogate audit export``).

The chain is walked in ``seq`` order. Record ``n`` must have ``seq == n`` (1, 2, 3, ...), ``prev_hash``
equal to the ``hash`` of record ``n - 1`` (:data:`~ferrogate.store.audit.GENESIS` for the first), and a
``hash`` equal to the one recomputed from its fields. The first record that fails one of these checks is
named with the reason:

- ``seq gap``: records before it are missing (deleted), or its number was changed;
- ``prev_hash mismatch``: a record was inserted before it, or the one before it was replaced or renumbered;
- ``hash mismatch``: its own fields (data, actor, time, ...) were edited.

Example:
    >>> verify_records([]).ok, verify_records([]).head == GENESIS
    (True, True)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from ferrogate.store.audit import GENESIS, AuditRecord
from ferrogate.store.base import Audit
from ferrogate.store.errors import InvalidValue

#: Records read per query while walking the chain.
PAGE = 1000


@dataclass(frozen=True, slots=True)
class Problem:
    """The first bad record: its ``seq`` and ``event_id``, and why it is bad."""

    seq: int
    event_id: str
    reason: str

    def __str__(self) -> str:
        return f"record seq {self.seq} (event {self.event_id}): {self.reason}"


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of a walk: records checked, the hash of the last good one, and the problem if any."""

    records: int
    head: str
    problem: Problem | None = None
    missing_anchor: str | None = None

    @property
    def ok(self) -> bool:
        """``True`` when the whole chain checked out (and contains the anchor, when one was given)."""
        return self.problem is None and self.missing_anchor is None


class ChainWalk:
    """Checks records one at a time, in the order given; remembers the first problem.

    Args:
        anchor: a head hash kept from an earlier verify: the chain must still contain it (else its tail was cut).

    Example:
        >>> walk = ChainWalk()
        >>> walk.check(AuditRecord(2, "evt_2", datetime.fromisoformat("2025-01-01T00:00:00Z"), "admin",
        ...                        "master", "team.create", None, None, "{}", GENESIS, "0" * 64))
        False
        >>> str(walk.problem)
        'record seq 2 (event evt_2): seq gap: expected seq 1, so record 1 is missing (deleted?)'
    """

    def __init__(self, anchor: str | None = None) -> None:
        self.count = 0
        self.head = GENESIS
        self.problem: Problem | None = None
        self._anchor = anchor
        self._anchor_seen = anchor is None or anchor == GENESIS

    def check(self, record: AuditRecord) -> bool:
        """Check the next record; ``False`` (and :attr:`problem` set) at the first bad one."""
        if self.problem is not None:
            return False
        expected = self.count + 1
        reason = None
        if record.seq != expected:
            if record.seq > expected:
                gone = (
                    f"record {expected} is"
                    if record.seq == expected + 1
                    else f"records {expected}..{record.seq - 1} are"
                )
                reason = f"seq gap: expected seq {expected}, so {gone} missing (deleted?)"
            else:
                reason = f"seq out of order: expected seq {expected} (a record inserted or renumbered?)"
        elif record.prev_hash != self.head:
            before = "the genesis value" if expected == 1 else f"the hash of record {expected - 1}"
            reason = (
                f"prev_hash mismatch: prev_hash {record.prev_hash[:16]}... is not {before} ({self.head[:16]}...): "
                "a record was inserted before it, or the one before it was replaced"
            )
        elif record.expected_hash() != record.hash:
            reason = "hash mismatch: its content was edited (the stored hash does not match its fields)"
        if reason is not None:
            self.problem = Problem(record.seq, record.event_id, reason)
            return False
        self.count = expected
        self.head = record.hash
        if record.hash == self._anchor:
            self._anchor_seen = True
        return True

    def report(self) -> Report:
        """The outcome so far."""
        missing = None if self._anchor_seen or self.problem is not None else self._anchor
        return Report(self.count, self.head, self.problem, missing)


def verify_records(records: Iterable[AuditRecord], anchor: str | None = None) -> Report:
    """Walk ``records`` (in chain order) and report the first bad one.

    Example:
        >>> verify_records([], anchor="ab" * 32).missing_anchor == "ab" * 32
        True
    """
    walk = ChainWalk(anchor)
    for record in records:
        if not walk.check(record):
            break
    return walk.report()


async def chain(audit: Audit, page: int = PAGE) -> AsyncIterator[AuditRecord]:
    """Every record of the store's chain in ``seq`` order, read ``page`` records per query.

    Example:
        >>> # async for record in chain(store.audit): ...
    """
    after: int | None = None
    while True:
        batch = await audit.scan(after, page)
        for record in batch:
            yield record
        if len(batch) < page:
            return
        after = batch[-1].seq


async def verify_store(audit: Audit, anchor: str | None = None, page: int = PAGE) -> Report:
    """Walk the store's whole chain and report the first bad record.

    Example:
        >>> # report = await verify_store(store.audit); report.ok, report.records, report.head
    """
    walk = ChainWalk(anchor)
    async for record in chain(audit, page):
        if not walk.check(record):
            break
    return walk.report()


def read_export(path: Path) -> Iterable[AuditRecord]:
    """The records of a ``ferrogate audit export`` file, in file order.

    Raises:
        InvalidValue: a line is not an exported record (it is named by its line number).

    Example:
        >>> # verify_records(read_export(Path("audit.jsonl")))
    """
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                raw = orjson.loads(line)
                if not isinstance(raw, dict):
                    raise InvalidValue("line", line, "a JSON object")
                yield AuditRecord.from_dict(raw)
            except (orjson.JSONDecodeError, InvalidValue):
                raise InvalidValue(f"{path} line {number}", line[:80], "a record of `ferrogate audit export`") from None


async def export_lines(
    audit: Audit, since: datetime | None = None, until: datetime | None = None, page: int = PAGE
) -> AsyncIterator[bytes]:
    """The chain as JSON lines (``\\n``-terminated, in ``seq`` order), only records with ``since <= created_at
    < until`` when given. A full export (no bounds) verifies offline: ``ferrogate audit verify --file``.

    Example:
        >>> # async for line in export_lines(store.audit): out.write(line)
    """
    if since is None and until is None:
        async for record in chain(audit, page):
            yield orjson.dumps(record.to_dict()) + b"\n"
        return
    cursor: str | None = None
    while True:
        found = await audit.list(since=since, until=until, limit=page, cursor=cursor)
        for record in found.items:
            yield orjson.dumps(record.to_dict()) + b"\n"
        if found.next_cursor is None:
            return
        cursor = found.next_cursor
