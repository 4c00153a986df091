"""The audit trail in the store: one hash-chained row per admin change or data-plane request.

Each row's ``hash`` is SHA-256 over the canonical JSON of its fields plus ``prev_hash``, the hash of the row
before it (:data:`GENESIS` for the first), so an edited, inserted or deleted row breaks the chain
(:func:`ferrogate.audit.verify.verify_chain`). :meth:`SqlAudit.append_many` assigns ``seq`` and ``prev_hash``
inside its write transaction, after taking the chain lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a
transaction-scoped advisory lock) and reading the head there, so concurrent writers (workers, instances)
extend one chain without forks or gaps. Events are idempotent by ``event_id``: a replayed batch is skipped.

Example:
    >>> ev = AuditEvent(event_id="evt_1", created_at=datetime(2025, 1, 1, tzinfo=UTC), kind="admin",
    ...                 actor="master", action="team.create", target="team_1", data={"after": {"name": "ml"}})
    >>> record_hash(1, ev.event_id, ev.created_at, ev.kind, ev.actor, ev.action, ev.target, None,
    ...             canonical(ev.data), GENESIS)[:16]
    'a2d203ca7d62b9c2'
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime  # noqa: F401 (UTC: the examples below)
from itertools import chain
from typing import TYPE_CHECKING, Any

import orjson

from ferrogate._core import audit_hash
from ferrogate.store.errors import InvalidValue, StoreError
from ferrogate.store.fields import stamp, when
from ferrogate.store.records import Page
from ferrogate.store.sql import MAX_LIMIT, IntegrityFault, Row, Table

if TYPE_CHECKING:
    from ferrogate.store.sql import Program, SqlStore

#: ``prev_hash`` of the first record of the chain.
GENESIS = "0" * 64
#: What an event is about: an admin-plane change, or a data-plane request.
KINDS: tuple[str, ...] = ("admin", "request")
#: The actions of data-plane request events; every other action is an admin change's. The list query relies
#: on it to name the kind (the action and kind indexes cover admin records only, migration 0005).
REQUEST_ACTIONS = frozenset({"chat.completions"})
#: Statement size for batched inserts and lookups (11 parameters per row).
CHUNK = 500
#: The name of the lock that serialises chain appends (PostgreSQL advisory lock).
CHAIN_LOCK = "ferrogate.audit_log"
AUDIT = Table(
    "audit_log",
    "audit record",
    ("seq", "event_id", "created_at", "kind", "actor", "action", "target", "team_id", "data", "prev_hash", "hash"),
)
_FIELDS = ("event_id", "created_at", "kind", "actor", "action", "target", "team_id", "data")


def canonical(data: Any) -> str:
    """``data`` as canonical JSON text (keys sorted at every level, no whitespace), as the row stores it.

    Raises:
        InvalidValue: ``data`` is not JSON-serialisable (or has non-string keys).

    Example:
        >>> canonical({"b": 1, "a": {"d": None, "c": [1.5]}})
        '{"a":{"c":[1.5],"d":null},"b":1}'
    """
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        raise InvalidValue("data", data, "a JSON-serialisable object with string keys") from None


def record_hash(
    seq: int,
    event_id: str,
    created_at: datetime | str,
    kind: str,
    actor: str,
    action: str,
    target: str | None,
    team_id: str | None,
    data: str,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) over the canonical encoding of a record's fields and ``prev_hash``.

    The encoding is one JSON object with sorted keys (as orjson ``OPT_SORT_KEYS`` writes it), ``created_at``
    as :func:`stamp` (or that text itself), and ``data`` embedded verbatim as the stored JSON text (so any
    change to the stored text changes the hash). Computed by the Rust core (``_core.audit_hash``, ~4x
    cheaper than building the object and encoding it here); tests/unit/store/test_audit_hash.py holds the
    Python reference it must match.

    Example:
        >>> len(record_hash(1, "e", datetime(2025, 1, 1, tzinfo=UTC), "admin", "a", "x", None, None, "{}", GENESIS))
        64
    """
    at = created_at if isinstance(created_at, str) else stamp(created_at)
    return audit_hash(seq, event_id, at, kind, actor, action, target, team_id, data, prev_hash)


@dataclass(slots=True, kw_only=True)  # not frozen: built once per request, a frozen __init__ costs ~2 µs more
class AuditEvent:
    """One thing to audit, before it has a place in the chain (what the audit writer queues and spools).

    ``kind`` is ``"admin"`` or ``"request"``; ``actor`` a key id, ``"master"`` or another principal;
    ``action`` e.g. ``"team.create"`` or ``"chat.completions"``; ``target`` the entity acted on;
    ``data`` a JSON object (never secrets: the event constructors in :mod:`ferrogate.audit.events` scrub them).

    Example:
        >>> ev = AuditEvent(event_id="e1", created_at=datetime(2025, 1, 1, tzinfo=UTC), kind="admin",
        ...                 actor="master", action="team.delete", target="team_1")
        >>> AuditEvent.from_json(ev.to_json()) == ev
        True
    """

    event_id: str
    created_at: datetime
    kind: str
    actor: str
    action: str
    target: str | None = None
    team_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """One JSON object (no newline), as the spool file holds it.

        Example:
            >>> AuditEvent(event_id="e", created_at=datetime(2025, 1, 1, tzinfo=UTC), kind="admin",
            ...            actor="a", action="x").to_json()[:31]
            b'{"event_id":"e","created_at":"2'
        """
        return orjson.dumps({name: getattr(self, name) for name in _FIELDS})

    @classmethod
    def from_json(cls, data: bytes | str) -> AuditEvent:
        """The event written by :meth:`to_json`.

        Raises:
            InvalidValue: not JSON, or a field is missing or of the wrong type.

        Example:
            >>> AuditEvent.from_json("{}")
            Traceback (most recent call last):
            ...
            ferrogate.store.errors.InvalidValue: audit event '{}' is invalid: expected a JSON audit event
        """
        try:
            raw = orjson.loads(data)
            raw["created_at"] = datetime.fromisoformat(raw["created_at"])
            event = cls(**raw)
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            raise InvalidValue("audit event", data, "a JSON audit event") from None
        check_event(event)
        return event


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored audit row: the event's fields, its place in the chain (``seq``), ``prev_hash`` and ``hash``.

    ``data`` is the JSON text exactly as stored (what the hash covers); :meth:`payload` parses it.
    """

    seq: int
    event_id: str
    created_at: datetime
    kind: str
    actor: str
    action: str
    target: str | None
    team_id: str | None
    data: str
    prev_hash: str
    hash: str

    def expected_hash(self) -> str:
        """The hash this record's fields and ``prev_hash`` should have (equal to ``hash`` unless tampered)."""
        return record_hash(
            self.seq,
            self.event_id,
            self.created_at,
            self.kind,
            self.actor,
            self.action,
            self.target,
            self.team_id,
            self.data,
            self.prev_hash,
        )

    def payload(self) -> Any:
        """``data`` parsed (the JSON text itself when it does not parse: a tampered row).

        Example:
            >>> # record.payload()["after"]["name"]
        """
        try:
            return orjson.loads(self.data)
        except orjson.JSONDecodeError:
            return self.data

    def to_dict(self) -> dict[str, Any]:
        """The record as one export object: ``created_at`` as :func:`stamp`, ``data`` parsed.

        Example:
            >>> # orjson.dumps(record.to_dict())  # one line of `ferrogate audit export`
        """
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "created_at": stamp(self.created_at),
            "kind": self.kind,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "team_id": self.team_id,
            "data": self.payload(),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AuditRecord:
        """The record of one export object (``data`` re-encoded canonically, as it was stored).

        Raises:
            InvalidValue: a field is missing or of the wrong type.

        Example:
            >>> # AuditRecord.from_dict(orjson.loads(line)).expected_hash()
        """
        try:
            values = {name: raw[name] for name in AUDIT.columns}
            values["created_at"] = when("created_at", datetime.fromisoformat(raw["created_at"]))
            data = raw["data"]
            values["data"] = data if isinstance(data, str) else canonical(data)
            if not isinstance(values["seq"], int) or isinstance(values["seq"], bool):
                raise TypeError(values["seq"])
            return cls(**values)
        except (KeyError, TypeError, ValueError):
            raise InvalidValue("audit record", raw, "an object of `ferrogate audit export`") from None


def check_event(event: AuditEvent) -> AuditEvent:
    """``event`` when every field has the type the table needs (run before any SQL).

    Raises:
        InvalidValue: naming the event and the field.

    Example:
        >>> check_event(AuditEvent(event_id="e", created_at=datetime(2025, 1, 1, tzinfo=UTC), kind="login",
        ...                        actor="a", action="x"))
        Traceback (most recent call last):
        ...
        ferrogate.store.errors.InvalidValue: kind of e 'login' is invalid: expected admin or request
    """
    eid = event.event_id if isinstance(event.event_id, str) else repr(event.event_id)

    def bad(name: str, expected: str) -> InvalidValue:
        return InvalidValue(f"{name} of {eid}", getattr(event, name), expected)

    for name in ("event_id", "actor", "action"):
        if not isinstance(getattr(event, name), str) or not getattr(event, name):
            raise bad(name, "a non-empty string")
    for name in ("target", "team_id"):
        if not isinstance(getattr(event, name), str | None):
            raise bad(name, "a string or null")
    if event.kind not in KINDS:
        raise bad("kind", " or ".join(KINDS))
    if (event.action in REQUEST_ACTIONS) != (event.kind == "request"):
        expected = "one of " + ", ".join(sorted(REQUEST_ACTIONS)) if event.kind == "request" else "an admin action"
        raise bad("action", f"{expected} for a {event.kind} event")
    if not isinstance(event.created_at, datetime) or event.created_at.utcoffset() is None:
        raise bad("created_at", "a timezone-aware datetime")
    if not isinstance(event.data, dict):
        raise bad("data", "a JSON object")
    return event


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"audit|{seq}".encode()).decode().rstrip("=")


def _after(cursor: str) -> int:
    try:
        kind, sep, seq = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition("|")
        if kind == "audit" and sep and seq.isdigit():
            return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise InvalidValue("cursor", cursor, "a next_cursor returned by an audit list call")


class SqlAudit:
    """``store.audit``: chained, idempotent appends; filtered keyset pages; the whole chain in order."""

    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def append_many(self, events: Iterable[AuditEvent], *, validate: bool = True, fresh: bool = False) -> int:
        """Append ``events`` to the chain in one transaction, skipping event ids already stored; how many were new.

        Within ``events`` the first occurrence of an event id wins; the new ones get consecutive ``seq``
        numbers after the current head, in the order given. ``validate=False`` skips :func:`check_event` for
        events built by typed code (the account phase): ~1.6 µs per event on the worker; data that is not
        JSON, a field that is not text and an action of the other kind are refused either way. ``fresh=True``
        says the events were never offered to a store before (straight from the writer's queue, not from a
        spool): the ids already stored are not looked up first (~0.5 µs per event); should one be stored
        after all, the insert fails, rolls back and the batch is redone with the lookup.

        Raises:
            InvalidValue: an event has a field of the wrong type (nothing is written).
            StoreError: the database failed (nothing is written).

        Example:
            >>> # await store.audit.append_many([event])  # 1
            >>> # await store.audit.append_many([event])  # 0: already stored
        """
        unique: dict[str, tuple[AuditEvent, str]] = {}
        for event in events:
            if validate:
                check_event(event)
            elif (event.action in REQUEST_ACTIONS) != (event.kind == "request"):  # what list() relies on
                check_event(event)  # raises, naming the field
            if event.event_id not in unique:
                unique[event.event_id] = (event, canonical(event.data))
        if not unique:
            return 0
        db = self._db
        lock = db.lock_sql(CHAIN_LOCK)
        sqlite = db.kind == "sqlite"

        def program(lookup: bool) -> Program[int]:
            if lock is not None:
                yield lock
            ids = list(unique) if lookup else []  # fresh: none is stored (else the insert fails: rollback)
            stored: set[str] = set()
            for start in range(0, len(ids), CHUNK):
                part = ids[start : start + CHUNK]
                marks = ", ".join("?" for _ in part)
                rows = yield (f"SELECT event_id FROM audit_log WHERE event_id IN ({marks})", part)  # noqa: S608
                stored.update(r["event_id"] for r in rows)
            new = [pair for eid, pair in unique.items() if eid not in stored]
            if not new:
                return 0
            head = yield ("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", ())
            seq, prev = (int(head[0]["seq"]), str(head[0]["hash"])) if head else (0, GENESIS)
            values: list[tuple[Any, ...]] = []
            for event, data in new:
                seq += 1
                at, kind, actor, action = event.created_at, event.kind, event.actor, event.action
                target, team = event.target, event.team_id
                ts = db.ts_in(at)
                text = ts if sqlite else stamp(at)  # SQLite's ts_in is stamp: format it once
                try:
                    digest = audit_hash(seq, event.event_id, text, kind, actor, action, target, team, data, prev)
                except (TypeError, UnicodeEncodeError):  # a field of an unchecked event that is no text
                    raise InvalidValue("audit event", event.event_id, "text fields (str or null)") from None
                values.append((seq, event.event_id, ts, kind, actor, action, target, team, data, prev, digest))
                prev = digest
            marks = "(" + ", ".join("?" for _ in AUDIT.columns) + ")"
            for start in range(0, len(values), CHUNK):
                batch = values[start : start + CHUNK]
                yield (
                    f"INSERT INTO audit_log ({AUDIT.select}) VALUES " + ", ".join(marks for _ in batch),  # noqa: S608
                    list(chain.from_iterable(batch)),
                )
            return len(new)

        if fresh:
            with contextlib.suppress(IntegrityFault):  # an event id stored after all: nothing was written
                return await db.run_program(program(False))
        try:
            return await db.run_program(program(True))
        except IntegrityFault as fault:  # only if the chain lock was bypassed (e.g. a hand-written row)
            raise StoreError(f"audit log: {fault}") from None

    def _record(self, row: Row) -> AuditRecord:
        values = {c: row[c] for c in AUDIT.columns}
        values["seq"] = int(row["seq"])
        values["created_at"] = self._db.ts_out(row["created_at"])
        return AuditRecord(**values)

    @staticmethod
    def filters(
        actor: str | None, team_id: str | None, action: str | None, kind: str | None, target: str | None
    ) -> tuple[list[str], list[Any]]:
        """The WHERE terms and arguments of :meth:`list`'s equality filters.

        A known kind is named literally (``kind = 'admin'``, a fixed word, never the caller's text), and an
        action names its kind too (:data:`REQUEST_ACTIONS`): the action and kind indexes are partial, admin
        records only (migration 0005), and a planner can only use them when the query names that kind
        (PostgreSQL's generic plans do not look at parameter values).

        Example:
            >>> SqlAudit.filters(None, None, "key.create", None, None)
            (["kind = 'admin'", 'action = ?'], ['key.create'])
        """
        where: list[str] = []
        args: list[Any] = []
        if action is not None:  # the action says the kind (check_event): the admin action index needs it named
            kinds = "request" if action in REQUEST_ACTIONS else "admin"
            if kind is not None and kind != kinds:
                kinds = ""  # contradictory filters: nothing matches
            kind = kinds
        if kind is not None:
            # a known kind as literal SQL (a fixed word, never the caller's text): the admin index is partial
            where.append(f"kind = '{kind}'" if kind in KINDS else "kind = ?")
            if kind not in KINDS:
                args.append(kind)
        filters = (("actor", actor), ("team_id", team_id), ("action", action), ("target", target))
        for column, value in filters:
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        return where, args

    async def list(
        self,
        *,
        actor: str | None = None,
        team_id: str | None = None,
        action: str | None = None,
        kind: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[AuditRecord]:
        """The records matching every given filter, in chain order (``seq``), one keyset page at a time.

        ``since`` is inclusive and ``until`` exclusive (``created_at``, the time of the event). Paging by
        ``seq`` also tails the trail: a ``next_cursor`` kept from the last page finds later records.

        Raises:
            InvalidValue: ``limit`` outside 1..1000, a naive datetime, a foreign cursor.

        Example:
            >>> # page = await store.audit.list(actor="master", action="key.revoke", limit=50)
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidValue("limit", limit, f"an integer from 1 to {MAX_LIMIT}")
        where, args = self.filters(actor, team_id, action, kind, target)
        for name, op, at in (("since", ">=", since), ("until", "<", until)):
            if at is not None:
                where.append(f"created_at {op} ?")
                args.append(self._db.ts_in(when(name, at)))
        if cursor is not None:
            where.append("seq > ?")
            args.append(_after(cursor))
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        sql = f"SELECT {AUDIT.select} FROM audit_log {clause}ORDER BY seq LIMIT ?"  # noqa: S608
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch(sql, *args, limit + 1)
        items = [self._record(r) for r in rows[:limit]]
        return Page(items, _cursor(items[-1].seq) if len(rows) > limit else None)

    async def scan(self, after: int | None = None, limit: int = MAX_LIMIT) -> Sequence[AuditRecord]:
        """Up to ``limit`` records with ``seq > after`` (every record when ``after`` is ``None``), in ``seq``
        order: page through the whole chain for verify and export.

        Example:
            >>> # batch = await store.audit.scan(after=last_seq)
        """
        where, args = ("WHERE seq > ? ", [after]) if after is not None else ("", [])
        sql = f"SELECT {AUDIT.select} FROM audit_log {where}ORDER BY seq LIMIT ?"  # noqa: S608
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch(sql, *args, limit)
        return [self._record(r) for r in rows]
