"""Usage records: one row per data-plane request (tokens, cost, latency), written in batches, summed on demand.

Writes are idempotent by ``request_id`` (``INSERT ... ON CONFLICT DO NOTHING``), so a batch replayed from
the metering spool never counts twice. Summaries are keyset pages ordered by the group value.

Example:
    >>> # new = await store.usage.insert_many(records)   # how many were not stored before
    >>> # page = await store.usage.summary(team_id=team.id, group_by="model", limit=100)
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal

import orjson

from ferrogate.store.budgets import release_holds
from ferrogate.store.errors import Conflict, InvalidValue, NotFound
from ferrogate.store.fields import when
from ferrogate.store.records import Page
from ferrogate.store.sql import MAX_LIMIT, Row, Table

if TYPE_CHECKING:
    from ferrogate.store.sql import SqlStore

GroupBy = Literal["model", "day", "key"]
GROUPS: tuple[str, ...] = ("model", "day", "key")
USAGE = Table(
    "usage_records",
    "usage record",
    (
        "request_id",
        "created_at",
        "key_id",
        "team_id",
        "user_id",
        "model",
        "upstream",
        "upstream_model",
        "status",
        "stream",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "counted",
        "cost_usd",
        "latency_ms",
    ),
)
#: Rows per ``INSERT`` statement (17 parameters each: well under both databases' parameter limits).
CHUNK = 500
_TEXT = ("request_id", "model")
_OPT_TEXT = ("key_id", "team_id", "user_id", "upstream", "upstream_model")
_INTS = ("status", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
_BOOLS = ("stream", "counted", "hold")


@dataclass(slots=True, kw_only=True)  # not frozen: a frozen dataclass's __init__ costs ~2 µs more per request
class UsageRecord:
    """What one request used: written by the ``account`` phase through the metering recorder (treat as immutable).

    ``counted`` is ``True`` when the gateway counted the tokens itself (no usage from the upstream);
    ``cost_usd`` is ``None`` when the model has no price (never a silent zero).

    Example:
        >>> rec = UsageRecord(request_id="req_1", created_at=datetime(2025, 1, 1, tzinfo=UTC), model="gpt-4o",
        ...                   status=200, prompt_tokens=10, completion_tokens=5, cost_usd=0.000075)
        >>> UsageRecord.from_json(rec.to_json()) == rec
        True
    """

    request_id: str
    created_at: datetime
    model: str
    status: int
    stream: bool = False
    key_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    upstream: str | None = None
    upstream_model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    counted: bool = False
    cost_usd: float | None = None
    latency_ms: float = 0.0
    #: ``False``: the request took no budget hold (no budget on its chain), so the insert does not look for
    #: one to release (~0.6 µs per record). Not stored; journaled with the record (a replay looks only where
    #: the request took a hold); ``True`` (look) unless the account phase knows.
    hold: bool = field(default=True, compare=False)

    def to_json(self) -> bytes:
        """One JSON array of the fields in order (no newline), as the journal holds it; ``created_at`` ISO-8601.

        An array, not an object: this runs for every request (the journal), and an array of the attributes
        costs half of an object. :meth:`from_json` reads both.

        Example:
            >>> UsageRecord(request_id="r", created_at=datetime(2025, 1, 1, tzinfo=UTC), model="m",
            ...             status=200).to_json()[:40]
            b'["r","2025-01-01T00:00:00+00:00","m",200'
        """
        return orjson.dumps(_ALL_FIELDS(self))

    @classmethod
    def from_json(cls, data: bytes | str) -> UsageRecord:
        """The record written by :meth:`to_json` (an array), or an object of its fields (older journals).

        Raises:
            InvalidValue: not JSON, or a field is missing or of the wrong type.

        Example:
            >>> UsageRecord.from_json('{"request_id": "r", "created_at": "2025-01-01T00:00:00Z",'
            ...                       ' "model": "m", "status": 200}').status
            200
        """
        try:
            raw = orjson.loads(data)
            if type(raw) is list:
                if len(raw) != len(FIELD_NAMES):
                    raise ValueError("wrong number of fields")
                raw = dict(zip(FIELD_NAMES, raw, strict=True))
            raw["created_at"] = datetime.fromisoformat(raw["created_at"])
            record = cls(**raw)
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            raise InvalidValue("usage record", data, "a JSON usage record") from None
        check_record(record)
        return record


#: The fields of a request's facts (``RequestFacts.FIELDS``).
_FACTS = 21


def usage_of(facts: Any, *, hold: bool = True) -> UsageRecord:
    """The usage record of a request's audit facts (:class:`~ferrogate.store.audit.RequestFacts`): what the
    request journal holds once for both, and what the account phase builds the record from. ``hold``: the
    request may have a budget hold to release (``True``, the default of a replay: the insert looks).

    Example:
        >>> from ferrogate.store.audit import RequestFacts
        >>> f = RequestFacts(("req_1", datetime(2025, 1, 1, tzinfo=UTC), "key_1", "chat.completions", "gpt-4o",
        ...     "team_1", None, None, None, "openai", "gpt-4o", 200, None, True, 10, 2, 0, 0, False, 0.5, 1.5))
        >>> r = usage_of(f); (r.request_id, r.key_id, r.model, r.stream, r.prompt_tokens, r.cost_usd)
        ('req_1', 'key_1', 'gpt-4o', True, 10, 0.5)
    """
    if len(facts) != _FACTS:  # a guarded request's facts: its findings come last
        facts = facts[:_FACTS]
    (rid, created_at, actor, _action, model, team_id, _client, _trace, user_id, upstream, upstream_model, status,
     _error, stream, prompt, completion, cached, reasoning, counted, cost, latency) = facts  # fmt: skip
    return UsageRecord(
        request_id=rid,
        created_at=created_at,
        model=model or "",
        status=status,
        stream=stream,
        key_id=None if actor == "anonymous" else actor,
        team_id=team_id,
        user_id=user_id,
        upstream=upstream,
        upstream_model=upstream_model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        counted=counted,
        cost_usd=cost,
        latency_ms=latency,
        hold=hold,
    )


#: Every field of :class:`UsageRecord`, in order (the journal's array), and a getter of them all as a tuple.
FIELD_NAMES = tuple(f.name for f in fields(UsageRecord))
_ALL_FIELDS = attrgetter(*FIELD_NAMES)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One line of a usage summary: the group value (``None`` when ungrouped) and the sums over its requests.

    ``group`` is the model name (``group_by="model"``), the UTC date ``YYYY-MM-DD`` (``"day"``) or the key id
    (``"key"``; ``None`` for requests without a key). ``cost_usd`` sums the priced requests only;
    ``unpriced_requests`` counts the others.
    """

    group: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float
    unpriced_requests: int


def check_record(rec: UsageRecord) -> UsageRecord:
    """``rec`` when every field has the type the table needs (cheap; run before any SQL).

    Raises:
        InvalidValue: naming the request and the field.

    Example:
        >>> check_record(UsageRecord(request_id="r", created_at=datetime(2025, 1, 1), model="m", status=200))
        Traceback (most recent call last):
        ...
        ferrogate.store.errors.InvalidValue: created_at of r datetime.datetime(2025, 1, 1, 0, 0) is invalid: \
expected a timezone-aware datetime
    """
    rid = rec.request_id if isinstance(rec.request_id, str) else repr(rec.request_id)

    def bad(field: str, expected: str) -> InvalidValue:
        return InvalidValue(f"{field} of {rid}", getattr(rec, field), expected)

    for name in _TEXT:
        if not isinstance(getattr(rec, name), str) or not getattr(rec, name):
            raise bad(name, "a non-empty string")
    for name in _OPT_TEXT:
        if not isinstance(getattr(rec, name), str | None):
            raise bad(name, "a string or null")
    for name in _INTS:
        value = getattr(rec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(name, "a non-negative integer")
    for name in _BOOLS:
        if not isinstance(getattr(rec, name), bool):
            raise bad(name, "a boolean")
    for name in ("cost_usd", "latency_ms"):
        value = getattr(rec, name)
        if value is None and name == "cost_usd":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise bad(name, "a non-negative number")
    if not isinstance(rec.created_at, datetime) or rec.created_at.utcoffset() is None:
        raise bad("created_at", "a timezone-aware datetime")
    return rec


async def _ledger(tx: Any, new: list[UsageRecord], records: list[UsageRecord]) -> None:
    """Add the cost of the ``new`` records to ``budget_spend``; drop the reservations of the requests of
    ``records`` that may hold one (stored now or before: a replay still releases)."""
    spend: dict[tuple[str, str, str], float] = {}
    for rec in new:
        cost = rec.cost_usd
        if not cost:
            continue
        day = rec.created_at.astimezone(UTC).isoformat()[:10]
        for scope, owner in (("key", rec.key_id), ("user", rec.user_id), ("team", rec.team_id)):
            if owner is not None:
                slot = (scope, owner, day)
                spend[slot] = spend.get(slot, 0.0) + cost
    if spend:
        await tx.fetch(
            "INSERT INTO budget_spend (scope, owner_id, day, cost_usd) VALUES "  # noqa: S608 (placeholders only)
            + ", ".join("(?, ?, ?, ?)" for _ in spend)
            + " ON CONFLICT (scope, owner_id, day) DO UPDATE SET cost_usd = budget_spend.cost_usd + excluded.cost_usd",
            *chain.from_iterable((*slot, cost) for slot, cost in sorted(spend.items())),  # one lock order
        )
    await release_holds(tx, [rec.request_id for rec in records if rec.hold])


def _cursor(group_by: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{group_by}|{value}".encode()).decode().rstrip("=")


def _after(group_by: str, cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        text = ""
    kind, sep, value = text.partition("|")
    if not sep or kind != group_by:
        raise InvalidValue("cursor", cursor, f"a next_cursor returned by a summary grouped by {group_by}")
    return value


class SqlUsage:
    """``store.usage``: batched idempotent inserts of usage records, and filtered, grouped sums."""

    def __init__(self, db: SqlStore) -> None:
        self._db = db

    def _args(self, rec: UsageRecord) -> tuple[Any, ...]:
        return (
            rec.request_id,
            self._db.ts_in(rec.created_at),
            rec.key_id,
            rec.team_id,
            rec.user_id,
            rec.model,
            rec.upstream,
            rec.upstream_model,
            rec.status,
            rec.stream,
            rec.prompt_tokens,
            rec.completion_tokens,
            rec.cached_tokens,
            rec.reasoning_tokens,
            rec.counted,
            None if rec.cost_usd is None else float(rec.cost_usd),
            float(rec.latency_ms),
        )

    async def insert_many(self, records: Iterable[UsageRecord], *, validate: bool = True, fresh: bool = False) -> int:
        """Store ``records`` in one transaction, skipping request ids already stored; how many were new.

        In the same transaction the cost of each new record is added to the budget ledger's spend of its key,
        user and team for its UTC day, and the budget reservations of every request in the batch are deleted
        (the real cost replaces the worst case; see :mod:`ferrogate.store.budgets`).

        Replaying a batch (or part of one) never counts a request twice; within ``records`` the first
        occurrence of a request id wins. ``validate=False`` skips :func:`check_record` for records built
        by typed code (the account phase): ~2.5 µs per record on the hot path's worker. ``fresh=True`` says
        the records were never offered to a store before (straight from the account phase, not from a spool):
        SQLite then inserts without first looking up which ids are stored (~0.6 µs per record); should one be
        stored after all, the insert fails, rolls back and the batch is redone with the lookup.

        Raises:
            InvalidValue: a record has a field of the wrong type (nothing is written).
            StoreError: the database failed (nothing is written).

        Example:
            >>> # await store.usage.insert_many([rec1, rec2])  # 2
            >>> # await store.usage.insert_many([rec1, rec2])  # 0: already stored
        """
        unique = {r.request_id: r for r in reversed(list(records))}  # first occurrence wins
        ordered = list(reversed(unique.values()))
        if validate:
            for rec in ordered:
                check_record(rec)
        args = self._args
        rows = [args(r) for r in ordered]
        if not rows:
            return 0
        marks = "(" + ", ".join("?" for _ in USAGE.columns) + ")"
        head = f"INSERT INTO usage_records ({USAGE.select}) VALUES "  # noqa: S608
        # SQLite's write transaction excludes every other writer: ids not found by one SELECT are new, and a
        # plain INSERT saves the RETURNING rows (~1 µs per record). PostgreSQL writers run concurrently (two
        # processes replaying one spool): there only the insert itself can tell which rows were new.
        serialised = self._db.kind == "sqlite"

        async def op(tx: Any, lookup: bool) -> int:
            new = 0
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                if serialised and not lookup:  # fresh records: a duplicate fails the insert (see the retry)
                    await tx.fetch(head + ", ".join(marks for _ in chunk), *chain.from_iterable(chunk))
                    stored = {row[0] for row in chunk}
                elif serialised:
                    ids = [row[0] for row in chunk]
                    found = await tx.fetch(
                        "SELECT request_id FROM usage_records WHERE request_id IN ("  # noqa: S608 (placeholders)
                        + ", ".join("?" for _ in ids)
                        + ")",
                        *ids,
                    )
                    if found:
                        seen = {r["request_id"] for r in found}
                        chunk = [row for row in chunk if row[0] not in seen]
                    stored = {row[0] for row in chunk}
                    if chunk:
                        await tx.fetch(head + ", ".join(marks for _ in chunk), *chain.from_iterable(chunk))
                else:
                    sql = (
                        head
                        + ", ".join(marks for _ in chunk)
                        + " ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
                    )
                    stored = {r["request_id"] for r in await tx.fetch(sql, *chain.from_iterable(chunk))}
                new += len(stored)
                batch = ordered[start : start + CHUNK]
                await _ledger(tx, [r for r in batch if r.request_id in stored], batch)
            return new

        if fresh and serialised:
            try:
                return await self._db.write(USAGE, {}, lambda tx: op(tx, False))
            except Conflict:  # an id was stored after all (nothing was written): the careful way
                pass
        return await self._db.write(USAGE, {}, lambda tx: op(tx, True))

    async def get(self, request_id: str) -> UsageRecord:
        """The stored record of ``request_id``.

        Raises:
            NotFound: no record for that request.

        Example:
            >>> # (await store.usage.get("req_01")).prompt_tokens
        """
        sql = f"SELECT {USAGE.select} FROM usage_records WHERE request_id = ?"  # noqa: S608
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch(sql, request_id)
        if not rows:
            raise NotFound("usage record", request_id)
        return self._record(rows[0])

    def _record(self, row: Row) -> UsageRecord:
        values = {c: row[c] for c in USAGE.columns}
        values["created_at"] = self._db.ts_out(row["created_at"])
        values["stream"], values["counted"] = bool(row["stream"]), bool(row["counted"])
        return UsageRecord(**values)

    async def summary(
        self,
        *,
        team_id: str | None = None,
        key_id: str | None = None,
        user_id: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: GroupBy | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[UsageRow]:
        """Sums over the records that match every given filter, in total or per group.

        ``since`` is inclusive and ``until`` exclusive (``created_at``). Ungrouped, the page holds exactly one
        row (zeros when nothing matches). Grouped, rows are ordered by the group value and paged by it
        (keyset): pass ``next_cursor`` back with the same filters and ``group_by``.

        Raises:
            InvalidValue: unknown ``group_by``, naive datetime, ``limit`` outside 1..1000, a foreign cursor.

        Example:
            >>> # page = await store.usage.summary(team_id=team.id, since=month_start, group_by="day")
            >>> # [(r.group, r.requests, r.cost_usd) for r in page.items]
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidValue("limit", limit, f"an integer from 1 to {MAX_LIMIT}")
        if group_by is not None and group_by not in GROUPS:
            raise InvalidValue("group_by", group_by, f"one of {', '.join(GROUPS)} or null")
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("team_id", team_id), ("key_id", key_id), ("user_id", user_id), ("model", model)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        for name, op, stamp in (("since", ">=", since), ("until", "<", until)):
            if stamp is not None:
                where.append(f"created_at {op} ?")
                args.append(self._db.ts_in(when(name, stamp)))
        expr = {
            None: "NULL",
            "model": "model",
            "day": self._db.utc_day("created_at"),
            "key": "COALESCE(key_id, '')",
        }[group_by]
        if group_by is not None and cursor is not None:
            where.append(f"{expr} > ?")
            args.append(_after(group_by, cursor))
        sums = ", ".join(
            f"CAST(COALESCE(SUM({c}), 0) AS BIGINT) AS {c}"
            for c in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
        )
        sql = (
            f"SELECT {expr} AS grp, COUNT(*) AS requests, {sums}, "  # noqa: S608
            "COALESCE(SUM(cost_usd), 0.0) AS cost_usd, "
            "CAST(COALESCE(SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS unpriced "
            "FROM usage_records"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + (f" GROUP BY {expr} ORDER BY {expr} LIMIT ?" if group_by is not None else "")
        )
        if group_by is not None:
            args.append(limit + 1)
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch(sql, *args)
        items = [self._row(r, group_by) for r in rows[:limit]]
        next_cursor = None
        if group_by is not None and len(rows) > limit:
            next_cursor = _cursor(group_by, str(rows[limit - 1]["grp"]))
        return Page(items, next_cursor)

    @staticmethod
    def _row(row: Row, group_by: str | None) -> UsageRow:
        group = row["grp"]
        if group_by is None or (group_by == "key" and group == ""):
            group = None
        return UsageRow(
            group=None if group is None else str(group),
            requests=int(row["requests"]),
            prompt_tokens=int(row["prompt_tokens"]),
            completion_tokens=int(row["completion_tokens"]),
            cached_tokens=int(row["cached_tokens"]),
            reasoning_tokens=int(row["reasoning_tokens"]),
            cost_usd=float(row["cost_usd"]),
            unpriced_requests=int(row["unpriced"]),
        )
