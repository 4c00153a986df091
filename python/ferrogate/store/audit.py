"""The audit trail in the store: one hash-chained row per admin change or data-plane request.

Each row's ``hash`` is SHA-256 over the canonical JSON of its fields plus ``prev_hash``, the hash of the row
before it (:data:`GENESIS` for the first), so an edited, inserted or deleted row breaks the chain
(:func:`ferrogate.audit.verify.verify_chain`). :meth:`SqlAudit.append_many` assigns ``seq`` and ``prev_hash``
inside its write transaction, after taking the chain lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a
transaction-scoped advisory lock) and reading the head there, so concurrent writers (workers, instances)
extend one chain without forks or gaps. Events are idempotent by ``event_id``: a replayed batch is skipped.

Admin changes are ``audit_log`` rows. Data-plane requests, nearly every record, are stored in blocks: the
requests of one batch are one ``audit_blocks`` row (migration 0006), a JSON array of records, each with the
hash it would have as a row (``_core.audit_block``), so one chain runs through both tables in ``seq`` order
and :meth:`SqlAudit.scan` and :meth:`SqlAudit.list` read them back as the same :class:`AuditRecord`. A row
costs a request ~3 µs of SQLite work (its B-trees, its index entries); its share of a block, ~1.

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
import builtins
import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import TYPE_CHECKING, Any, cast

import orjson

from ferrogate._core import audit_block, audit_hash, audit_request_data, audit_requests
from ferrogate.store.errors import InvalidValue, StoreError
from ferrogate.store.fields import stamp, when
from ferrogate.store.records import Page
from ferrogate.store.sql import MAX_LIMIT, IntegrityFault, Row, Table

if TYPE_CHECKING:
    from ferrogate.store.sql import Program, SqlStore, Tx

#: ``prev_hash`` of the first record of the chain.
GENESIS = "0" * 64
#: What an event is about: an admin-plane change, or a data-plane request.
KINDS: tuple[str, ...] = ("admin", "request")
#: The actions of data-plane request events; every other action is an admin change's. The list query relies
#: on it to name the kind (the action and kind indexes cover admin records only, migration 0005).
REQUEST_ACTIONS = frozenset(
    {
        "chat.completions",
        "messages",
        "messages.count_tokens",
        "responses",
        "embeddings",
        "mcp.tools.call",  # the MCP gateway (mcp/calls.py): one record per tool call, resource read, prompt get
        "mcp.resources.read",
        "mcp.prompts.get",
    }
)
#: Statement size for batched inserts and lookups (11 parameters per row).
CHUNK = 500
#: Blocks read per query when listing or scanning.
BLOCKS_PER_READ = 2  # a block holds up to batch_size records: a page rarely needs more
#: The ``created_at`` of the placeholder record that stands for a block whose text does not parse.
_UNREADABLE_AT = datetime(1970, 1, 1, tzinfo=UTC)
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


class RequestFacts(
    tuple[
        str, datetime, str, str, str | None, str | None,  # event_id, created_at, actor, action, target, team_id
        str | None, str | None, str | None, str | None, str | None,  # client id, trace, user, upstream, its model
        int, str | None, bool,  # status, error code, stream
        int, int, int, int, bool,  # prompt, completion, cached, reasoning tokens; counted
        float | None, float,  # cost_usd, latency_ms
    ]
):  # fmt: skip
    """One data-plane request as the account phase hands it to the audit writer: its record's fields and the
    facts its ``data`` holds, as one tuple (built by :func:`ferrogate.audit.events.request_facts`).

    A tuple, not an :class:`AuditEvent`: no data dict and no JSON are made on the hot path; the Rust core
    encodes the records of a whole batch at once (``_core.audit_requests``), exactly as
    :func:`canonical` encodes :meth:`event`'s data. ``created_at`` is an aware UTC datetime. The spool keeps it
    as a JSON array (an event is an object).

    Example:
        >>> facts = RequestFacts(("req_1", datetime(2025, 1, 1, tzinfo=UTC), "key_1", "chat.completions", "gpt-4o",
        ...     None, None, None, None, "openai", "gpt-4o", 200, None, False, 10, 2, 0, 0, False, None, 1.5))
        >>> facts.event_id, facts.event().data["latency_ms"], RequestFacts.from_json(facts.to_json()) == facts
        ('req_1', 1.5, True)
    """

    __slots__ = ()
    kind = "request"
    FIELDS = (
        "event_id", "created_at", "actor", "action", "target", "team_id", "client_request_id", "trace_id",
        "user_id", "upstream", "upstream_model", "status", "error", "stream", "prompt_tokens",
        "completion_tokens", "cached_tokens", "reasoning_tokens", "counted", "cost_usd", "latency_ms",
    )  # fmt: skip

    @property
    def event_id(self) -> str:
        """The request id."""
        return self[0]

    @property
    def created_at(self) -> datetime:
        """When the request was accounted."""
        return self[1]

    @property
    def actor(self) -> str:
        """The key id (``anonymous`` without one)."""
        return self[2]

    @property
    def action(self) -> str:
        """The data-plane action."""
        return self[3]

    @property
    def target(self) -> str | None:
        """The model requested."""
        return self[4]

    @property
    def team_id(self) -> str | None:
        """The key's team."""
        return self[5]

    def event(self) -> AuditEvent:
        """The same request as an :class:`AuditEvent`: the Python reference of what the Rust core encodes."""
        event_id, created_at, actor, action, target, team_id = self[:6]
        data = dict(zip(self.FIELDS[6:], self[6:], strict=True))
        return AuditEvent(
            event_id=event_id,
            created_at=created_at,
            kind="request",
            actor=actor,
            action=action,
            target=target,
            team_id=team_id,
            data={**data, "content": False},
        )

    def to_json(self) -> bytes:
        """One JSON array (no newline), as the spool file holds it."""
        return orjson.dumps(tuple(self))  # orjson takes exact tuples only

    @classmethod
    def from_json(cls, data: bytes | str) -> RequestFacts:
        """The facts written by :meth:`to_json`.

        Raises:
            InvalidValue: not a JSON array of the facts, or a field of the wrong type.
        """
        try:
            raw = orjson.loads(data)
            raw[1] = datetime.fromisoformat(raw[1]).astimezone(UTC)
            extra = len(raw) - len(RequestFacts.FIELDS)
            if extra in (1, 2):  # guardrail findings, then (a request retried) its failed attempts
                base = len(RequestFacts.FIELDS)
                raw[base] = tuple(tuple(str(part) for part in finding) for finding in raw[base])
                if extra == 2:
                    raw[base + 1] = tuple((str(key), int(status), str(outcome)) for key, status, outcome in raw[-1])
                facts: RequestFacts = GuardedFacts(raw)
            else:
                facts = cls(raw)
        except (orjson.JSONDecodeError, TypeError, KeyError, IndexError, ValueError):
            raise InvalidValue("request facts", data, "a JSON array of request facts") from None
        return check_facts(facts)


class GuardedFacts(RequestFacts):
    """The facts of a request with more to say than :class:`RequestFacts`: the 21 facts and, 22nd, what the
    guardrails found (``(rule, category, action, path)`` each, never the text found) and, 23rd when the request
    took more than one attempt, its failed attempts (``(deployment key, status, outcome)`` each; status 0: no
    answer).

    The request journal holds them as one line like any request's, so a killed process loses neither the
    request nor its findings; the audit writer stores them as an event (:meth:`event`), whose ``data`` adds
    ``guardrails`` (and ``attempts``, the count, with ``failed_attempts``), not through the Rust core's
    compact request records.

    Example:
        >>> facts = RequestFacts(("req_1", datetime(2025, 1, 1, tzinfo=UTC), "key_1", "chat.completions", "m",
        ...     None, None, None, None, "up", "m", 200, None, False, 10, 2, 0, 0, False, None, 1.5))
        >>> guarded = GuardedFacts((*facts, (("aws-access-key-id", "secret", "redact", "messages[0].content"),)))
        >>> guarded.event().data["guardrails"][0]["rule"], RequestFacts.from_json(guarded.to_json()) == guarded
        ('aws-access-key-id', True)
        >>> retried = GuardedFacts((*facts, (), (("a/m", 503, "error"),)))
        >>> retried.event().data["attempts"], RequestFacts.from_json(retried.to_json()) == retried
        (2, True)
    """

    __slots__ = ()

    @property
    def findings(self) -> tuple[tuple[str, str, str, str], ...]:
        """The guardrails' findings."""
        return cast("tuple[tuple[str, str, str, str], ...]", tuple.__getitem__(self, len(RequestFacts.FIELDS)))

    @property
    def failed_attempts(self) -> tuple[tuple[str, int, str], ...]:
        """The attempts that failed before the one that answered (or the last one), in order."""
        if len(self) < len(RequestFacts.FIELDS) + 2:
            return ()
        return cast("tuple[tuple[str, int, str], ...]", tuple.__getitem__(self, len(RequestFacts.FIELDS) + 1))

    def plain(self) -> RequestFacts:
        """The request's facts without the findings and attempts."""
        return RequestFacts(cast(Any, self[: len(RequestFacts.FIELDS)]))

    def event(self) -> AuditEvent:
        """The request as an :class:`AuditEvent` whose ``data`` also lists the findings (``guardrails``) and, for
        a request that took more than one attempt, ``attempts`` (the count) and ``failed_attempts``."""
        event = self.plain().event()
        data = dict(event.data)
        if self.findings:
            data["guardrails"] = [{"rule": r, "category": c, "action": a, "path": p} for r, c, a, p in self.findings]
        failed = self.failed_attempts
        if failed:
            data["attempts"] = len(failed) + 1
            data["failed_attempts"] = [{"deployment": k, "status": st, "outcome": o} for k, st, o in failed]
        return dataclasses.replace(event, data=data)


#: The keys of a request record's ``data`` in order (sorted: the facts' own and ``content``): a compact block
#: record (the account phase's, encoded by the Rust core) stores their values alone, and the object is rebuilt
#: from them to read or verify it.
REQUEST_DATA_KEYS = tuple(sorted((*RequestFacts.FIELDS[6:], "content")))


def check_facts(facts: RequestFacts) -> RequestFacts:
    """``facts`` when every field has the type its record needs (run before any SQL).

    Raises:
        InvalidValue: naming the field.
    """
    try:
        audit_request_data(facts.plain() if isinstance(facts, GuardedFacts) else facts)
    except (TypeError, ValueError, UnicodeEncodeError, OverflowError) as exc:
        raise InvalidValue("request facts", facts[0] if facts else facts, str(exc)) from None
    if facts.action not in REQUEST_ACTIONS:
        raise InvalidValue(f"action of {facts.event_id}", facts.action, "a data-plane action")
    return facts


def read_item(line: bytes | str) -> AuditEvent | RequestFacts:
    """One line of an audit spool: an :class:`AuditEvent` (a JSON object) or :class:`RequestFacts` (an array).

    Raises:
        InvalidValue: the line is neither.
    """
    text = line.lstrip()
    if text[:1] in (b"[", "["):
        return RequestFacts.from_json(line)
    return AuditEvent.from_json(line)


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


def _runs(events: list[AuditEvent | RequestFacts]) -> Iterable[list[AuditEvent | RequestFacts]]:
    """``events`` cut where the kind (or the type) changes: each run of requests becomes a block, each run of
    admin changes rows, in the order given."""
    run: list[AuditEvent | RequestFacts] = []
    last: object = None
    for event in events:
        key = RequestFacts if type(event) is RequestFacts else event.kind
        if key != last and run:
            yield run
            run = []
        last = key
        run.append(event)
    if run:
        yield run


#: Replayed requests further apart than this are looked up in separate time windows (see ``_windows``).
WINDOW_GAP = timedelta(minutes=1)


def _windows(times: Sequence[datetime]) -> Iterable[tuple[datetime, datetime]]:
    """The sorted ``times`` as (first, last) windows split wherever two are more than :data:`WINDOW_GAP`
    apart: a spool written over hours is looked up in the blocks of the minutes it has records of, not
    in all the blocks between its first and its last.

    Example:
        >>> t = datetime(2025, 1, 1, tzinfo=UTC)
        >>> [(a.minute, b.minute) for a, b in _windows([t, t.replace(minute=1), t.replace(minute=9)])]
        [(0, 1), (9, 9)]
    """
    if not times:
        return
    start = prev = times[0]
    for at in times[1:]:
        if at - prev > WINDOW_GAP:
            yield start, prev
            start = at
        prev = at
    yield start, prev


async def _snapshot_head(tx: Tx) -> int:
    """The chain's last ``seq`` over rows and blocks, read in one statement: a read then takes records up to
    it only, from both tables. Reads outside a transaction see each statement's own snapshot, and a writer of
    another process may commit between two of them; records are committed in ``seq`` order (the chain
    lock), so all up to this head are in and none after it is taken by half."""
    found = await tx.fetch(
        "SELECT MAX(s) AS s FROM (SELECT MAX(seq) AS s FROM audit_log"
        " UNION ALL SELECT MAX(last_seq) AS s FROM audit_blocks) AS heads"
    )
    return int(found[0]["s"]) if found and found[0]["s"] is not None else 0


class SqlAudit:
    """``store.audit``: chained, idempotent appends; filtered keyset pages; the whole chain in order."""

    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def append_many(
        self, events: Iterable[AuditEvent | RequestFacts], *, validate: bool = True, fresh: bool = False
    ) -> int:
        """Append ``events`` to the chain in one transaction, skipping event ids already stored; how many were new.

        Within ``events`` the first occurrence of an event id wins; the new ones get consecutive ``seq``
        numbers after the current head, in the order given. ``validate=False`` skips :func:`check_event` for
        events built by typed code (the account phase): ~1.6 µs per event on the worker; data that is not
        JSON, a field that is not text and an action of the other kind are refused either way. ``fresh=True``
        says the events were never offered to a store before (straight from the writer's queue, not from a
        spool): the ids already stored are not looked up first (~0.5 µs per event); should an admin event's
        id be stored after all, the insert fails, rolls back and the batch is redone with the lookup. Request
        ids in blocks have no unique index to catch that: a caller passes ``fresh`` only on a batch's first
        offer (a spool replay never is), as the writers do.

        Raises:
            InvalidValue: an event has a field of the wrong type (nothing is written).
            StoreError: the database failed (nothing is written).

        Example:
            >>> # await store.audit.append_many([event])  # 1
            >>> # await store.audit.append_many([event])  # 0: already stored
        """
        unique: dict[str, AuditEvent | RequestFacts] = {}
        data: dict[str, str] = {}  # the canonical data of events (the core encodes that of facts)
        only_facts = True  # the usual batch of the account phase's: one block
        for event in events:
            if isinstance(event, GuardedFacts):  # stored as the event it is (its data lists the findings)
                event = event.event()
            if isinstance(event, RequestFacts):  # the account phase's: indexed, not through the properties
                eid = event[0]
                if validate or event[3] not in REQUEST_ACTIONS:
                    check_facts(event)
            else:
                only_facts = False
                if validate:
                    check_event(event)
                elif (event.action in REQUEST_ACTIONS) != (event.kind == "request"):  # what list() relies on
                    check_event(event)  # raises, naming the field
                eid = event.event_id
                if eid not in unique:
                    data[eid] = canonical(event.data)
            unique.setdefault(eid, event)
        if not unique:
            return 0
        db = self._db
        lock = db.lock_sql(CHAIN_LOCK)
        sqlite = db.kind == "sqlite"

        def program(lookup: bool) -> Program[int]:
            if lock is not None:
                yield lock
            stored: set[str] = set()
            if lookup:  # fresh: none is stored (else a row's insert fails: rollback; blocks: see _stored_in_blocks)
                ids = list(unique)
                for start in range(0, len(ids), CHUNK):
                    part = ids[start : start + CHUNK]
                    marks = ", ".join("?" for _ in part)
                    rows = yield (f"SELECT event_id FROM audit_log WHERE event_id IN ({marks})", part)  # noqa: S608
                    stored.update(r["event_id"] for r in rows)
                stored |= yield from self._stored_in_blocks(list(unique.values()))
            new = list(unique.values()) if not stored else [e for eid, e in unique.items() if eid not in stored]
            if not new:
                return 0
            seq, prev = yield from self._head()
            for run in [new] if only_facts else _runs(new):
                if run[0].kind == "request":
                    seq, prev = yield from self._append_block(run, data, seq, prev)
                else:
                    seq, prev = yield from self._append_rows(run, data, seq, prev, sqlite)
            return len(new)

        if fresh:
            with contextlib.suppress(IntegrityFault):  # an event id stored after all: nothing was written
                return await db.run_program(program(False))
        try:
            return await db.run_program(program(True))
        except IntegrityFault as fault:  # only if the chain lock was bypassed (e.g. a hand-written row)
            raise StoreError(f"audit log: {fault}") from None

    def _head(self) -> Program[tuple[int, str]]:
        """The chain's last ``seq`` and hash (0 and :data:`GENESIS` when empty), rows and blocks alike."""
        row = yield ("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", ())
        block = yield ("SELECT last_seq, last_hash FROM audit_blocks ORDER BY first_seq DESC LIMIT 1", ())
        head = (int(row[0]["seq"]), str(row[0]["hash"])) if row else (0, GENESIS)
        if block and int(block[0]["last_seq"]) > head[0]:
            head = (int(block[0]["last_seq"]), str(block[0]["last_hash"]))
        return head

    def _stored_in_blocks(self, events: Sequence[AuditEvent | RequestFacts]) -> Program[set[str]]:
        """The ids of ``events`` already in a block: only blocks whose time bounds cover an event's time are
        read (a replay's lookup; the queue's fresh batches skip it). A block that does not parse is skipped
        (verify names it)."""
        requests = [event for event in events if event.kind == "request"]
        if not requests:
            return set()
        ids = {event.event_id for event in requests}
        ts_in = self._db.ts_in
        found: set[str] = set()
        for lo, hi in _windows(sorted(e.created_at for e in requests)):
            sql = "SELECT records FROM audit_blocks WHERE max_at >= ? AND min_at <= ?"
            for block in (yield (sql, (ts_in(lo), ts_in(hi)))):
                with contextlib.suppress(orjson.JSONDecodeError, TypeError, KeyError, IndexError):
                    records = orjson.loads(block["records"])
                    found.update(eid for r in records if (eid := r[1] if isinstance(r, list) else r["event_id"]) in ids)
        return found

    def _append_rows(
        self, run: Sequence[AuditEvent | RequestFacts], data: dict[str, str], seq: int, prev: str, sqlite: bool
    ) -> Program[tuple[int, str]]:
        """Insert ``run`` as ``audit_log`` rows after ``seq``/``prev``; the new head."""
        db = self._db
        values: list[tuple[Any, ...]] = []
        for event in run:
            assert isinstance(event, AuditEvent)  # runs of facts are blocks
            text_data = data[event.event_id]
            seq += 1
            at, kind, actor, action = event.created_at, event.kind, event.actor, event.action
            target, team = event.target, event.team_id
            ts = db.ts_in(at)
            text = ts if sqlite else stamp(at)  # SQLite's ts_in is stamp: format it once
            try:
                digest = audit_hash(seq, event.event_id, text, kind, actor, action, target, team, text_data, prev)
            except (TypeError, UnicodeEncodeError):  # a field of an unchecked event that is no text
                raise InvalidValue("audit event", event.event_id, "text fields (str or null)") from None
            values.append((seq, event.event_id, ts, kind, actor, action, target, team, text_data, prev, digest))
            prev = digest
        marks = "(" + ", ".join("?" for _ in AUDIT.columns) + ")"
        for start in range(0, len(values), CHUNK):
            batch = values[start : start + CHUNK]
            yield (
                f"INSERT INTO audit_log ({AUDIT.select}) VALUES " + ", ".join(marks for _ in batch),  # noqa: S608
                list(chain.from_iterable(batch)),
            )
        return seq, prev

    def _append_block(
        self, run: Sequence[AuditEvent | RequestFacts], data: dict[str, str], seq: int, prev: str
    ) -> Program[tuple[int, str]]:
        """Insert the requests of ``run`` (all events, or all facts) as one block after ``seq``/``prev``, with a
        reference per distinct actor and team; the new head."""
        db = self._db
        try:
            if type(run[0]) is RequestFacts:
                facts = cast("list[RequestFacts]", run)
                text, last, earliest, latest, actors, teams = audit_requests(seq + 1, prev, facts)
                lo, hi = datetime.fromisoformat(earliest), datetime.fromisoformat(latest)
                refs = {("actor", a) for a in actors} | {("team_id", t) for t in teams}
            else:
                events = cast("list[AuditEvent]", run)
                entries = [
                    (e.event_id, stamp(e.created_at), e.actor, e.action, e.target, e.team_id, data[e.event_id])
                    for e in events
                ]
                text, last = audit_block(seq + 1, prev, entries)
                lo, hi = min(e.created_at for e in events), max(e.created_at for e in events)
                refs = {("actor", e.actor) for e in events} | {
                    ("team_id", e.team_id) for e in events if e.team_id is not None
                }
        except (TypeError, ValueError, UnicodeEncodeError, OverflowError) as exc:  # unchecked facts of a wrong type
            raise InvalidValue("audit event", run[0].event_id, f"fields of the right types ({exc})") from None
        yield (
            "INSERT INTO audit_blocks (first_seq, last_seq, min_at, max_at, prev_hash, last_hash, records)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq + 1, seq + len(run), db.ts_in(lo), db.ts_in(hi), prev, last, text),
        )
        ordered = sorted(refs)
        for start in range(0, len(ordered), CHUNK):
            part = ordered[start : start + CHUNK]
            marks = ", ".join("(?, ?, ?)" for _ in part)
            yield (
                f"INSERT INTO audit_block_refs (field, value, first_seq) VALUES {marks}",  # noqa: S608
                [value for ref in part for value in (*ref, seq + 1)],
            )
        return seq + len(run), last

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
        ts_in = self._db.ts_in
        since = when("since", since) if since is not None else None
        until = when("until", until) if until is not None else None
        after = _after(cursor) if cursor is not None else 0
        where, args = self.filters(actor, team_id, action, kind, target)
        for op, at in ((">=", since), ("<", until)):
            if at is not None:
                where.append(f"created_at {op} ?")
                args.append(ts_in(at))
        where.append("seq > ? AND seq <= ?")
        sql = f"SELECT {AUDIT.select} FROM audit_log WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"  # noqa: S608
        async with self._db.transaction(write=False) as tx:
            head = await _snapshot_head(tx)
            rows = [self._record(r) for r in await tx.fetch(sql, *args, after, head, limit + 1)]
            # data-plane records in blocks (they are all requests): only when the filters admit requests
            if (kind is None or kind == "request") and (action is None or action in REQUEST_ACTIONS):
                bound = rows[-1].seq if len(rows) > limit else head  # the blocks need not reach past it

                def wanted(r: AuditRecord) -> bool:
                    return (
                        r.seq > after
                        and (actor is None or r.actor == actor)
                        and (team_id is None or r.team_id == team_id)
                        and (action is None or r.action == action)
                        and (target is None or r.target == target)
                        and (since is None or r.created_at >= since)
                        and (until is None or r.created_at < until)
                    )

                ref = ("actor", actor) if actor is not None else ("team_id", team_id) if team_id is not None else None
                found = await self._from_blocks(tx, after, limit + 1, bound, wanted, ref, since, until)
                rows = sorted(rows + found, key=lambda r: r.seq)[: limit + 1]
        items = rows[:limit]
        return Page(items, _cursor(items[-1].seq) if len(rows) > limit else None)

    async def _from_blocks(
        self,
        tx: Tx,
        after: int,
        want: int,
        bound: int,
        wanted: Callable[[AuditRecord], bool],
        ref: tuple[str, str] | None,
        since: datetime | None,
        until: datetime | None,
    ) -> builtins.list[AuditRecord]:
        """Up to ``want`` records after ``after`` that pass ``wanted``, in ``seq`` order, from the blocks (only
        those with a reference to ``ref`` and whose time bounds meet ``since``/``until``); none past ``bound``
        (the snapshot's head, or where the rows already fill the page)."""
        ts_in = self._db.ts_in
        start = await tx.fetch("SELECT MAX(first_seq) AS s FROM audit_blocks WHERE first_seq <= ?", after)
        lowest = int(start[0]["s"]) if start and start[0]["s"] is not None else 0  # the block holding `after`
        join, terms = "", ["b.last_seq > ?"]
        args: builtins.list[Any] = [after]
        if ref is not None:
            join = "JOIN audit_block_refs r ON r.first_seq = b.first_seq AND r.field = ? AND r.value = ? "
            args = [*ref, *args]
            terms.append("r.first_seq >= ?")
        else:
            terms.append("b.first_seq >= ?")
        args.append(lowest)
        if since is not None:
            terms.append("b.max_at >= ?")
            args.append(ts_in(since))
        if until is not None:
            terms.append("b.min_at < ?")
            args.append(ts_in(until))
        sql = (
            f"SELECT b.first_seq, b.prev_hash, b.records FROM audit_blocks b {join}"  # noqa: S608
            f"WHERE {' AND '.join(terms)} AND b.first_seq > ? ORDER BY b.first_seq LIMIT ?"
        )
        found: builtins.list[AuditRecord] = []
        last = -1
        while len(found) < want:
            blocks = await tx.fetch(sql, *args, last, BLOCKS_PER_READ)
            for block in blocks:
                if int(block["first_seq"]) > bound:
                    return found
                found += [r for r in self._expand(block) if wanted(r)]
                if len(found) >= want:
                    break
            if len(blocks) < BLOCKS_PER_READ:
                break
            last = int(blocks[-1]["first_seq"])
        return found[:want]

    def _expand(self, block: Row) -> builtins.list[AuditRecord]:
        """The records of one block, each with the hash of the record before as ``prev_hash``; a block whose
        text does not parse as records reads as one record that cannot verify (at its ``first_seq``)."""
        prev = str(block["prev_hash"])
        records: builtins.list[AuditRecord] = []
        try:
            for r in orjson.loads(block["records"]):
                if isinstance(r, list):  # compact: a request's fields and its data's values (REQUEST_DATA_KEYS)
                    seq, event_id, stamped, actor, action, target, team_id, values, digest = r
                    if len(values) != len(REQUEST_DATA_KEYS):
                        raise ValueError(values)
                    data = canonical(dict(zip(REQUEST_DATA_KEYS, values, strict=True)))
                else:
                    seq, event_id, stamped, actor, action = (
                        r["seq"],
                        r["event_id"],
                        r["created_at"],
                        r["actor"],
                        r["action"],
                    )
                    target, team_id, data, digest = r["target"], r["team_id"], canonical(r["data"]), r["hash"]
                at = datetime.fromisoformat(stamped)
                record = AuditRecord(seq, event_id, at, "request", actor, action, target, team_id, data, prev, digest)
                texts, optional = (event_id, actor, action, digest), (target, team_id)
                if not isinstance(seq, int) or isinstance(seq, bool) or at.utcoffset() is None:
                    raise TypeError(seq)
                if not all(isinstance(t, str) for t in texts) or not all(isinstance(t, str | None) for t in optional):
                    raise TypeError(record)  # a field edited to another type: the block cannot verify
                records.append(record)
                prev = record.hash
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, InvalidValue):
            seq = int(block["first_seq"])
            text = str(block["records"])[:200]
            first_prev = str(block["prev_hash"])  # chained to the record before the block: its hash fails
            return [AuditRecord(seq, "?", _UNREADABLE_AT, "request", "?", "?", None, None, text, first_prev, "?")]
        return records

    async def scan(self, after: int | None = None, limit: int = MAX_LIMIT) -> Sequence[AuditRecord]:
        """Up to ``limit`` records with ``seq > after`` (every record when ``after`` is ``None``), in ``seq``
        order, rows and blocks alike: page through the whole chain for verify and export.

        Example:
            >>> # batch = await store.audit.scan(after=last_seq)
        """
        after = after or 0
        sql = f"SELECT {AUDIT.select} FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"  # noqa: S608
        async with self._db.transaction(write=False) as tx:
            head = await _snapshot_head(tx)
            rows = [self._record(r) for r in await tx.fetch(sql, after, head, limit)]
            bound = rows[-1].seq if len(rows) >= limit else head
            found = await self._from_blocks(tx, after, limit, bound, lambda r: r.seq > after, None, None, None)
        return sorted(rows + found, key=lambda r: r.seq)[:limit]
