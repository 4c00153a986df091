"""The audit chain in the store, on both backends: one gapless chain from concurrent writers, idempotent
replays, filtered keyset pages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from ferrogate.audit.verify import chain, verify_store
from ferrogate.store.audit import GENESIS, AuditEvent, AuditRecord, RequestFacts, SqlAudit, canonical
from ferrogate.store.errors import InvalidValue
from ferrogate.store.sql import SqlStore
from ferrogate.store.sqlite import SqliteStore
from tests.integration.audit.conftest import T0, event, facts, open_url, request

pytestmark = pytest.mark.anyio


async def everything(store: SqlStore) -> list[AuditRecord]:
    return [r async for r in chain(store.audit, page=7)]  # a small page: the walk crosses many pages


async def test_records_carry_the_chain_and_the_event(store: SqlStore) -> None:
    assert await store.audit.append_many([event(1), event(2)]) == 2
    first, second = await everything(store)
    assert (first.seq, first.prev_hash, second.seq, second.prev_hash) == (1, GENESIS, 2, first.hash)
    for record in (first, second):
        assert record.hash == record.expected_hash() and len(record.hash) == 64
    assert (first.event_id, first.created_at, first.actor, first.action, first.target, first.team_id) == (
        "evt_000001",
        T0 + timedelta(seconds=1),
        "key_a",
        "key.create",
        "obj_1",
        "team_b",
    )
    assert first.data == canonical(event(1).data) and first.payload() == event(1).data
    report = await verify_store(store.audit)
    assert (report.ok, report.records, report.head) == (True, 2, second.hash)


async def test_concurrent_writers_extend_one_gapless_chain(db_url: str, store: SqlStore) -> None:
    # two stores on one database: two SQLite connections on one file, or two PostgreSQL pools (4 connections
    # each); 4 tasks per store append small batches at once
    stores = [open_url(db_url), open_url(db_url)]

    async def writer(s: SqlStore, first: int) -> None:
        for start in range(first, first + 50, 5):
            assert await s.audit.append_many([event(n) for n in range(start, start + 5)]) == 5

    try:
        await asyncio.gather(*(writer(stores[i % 2], 1 + 50 * i) for i in range(8)))
    finally:
        for s in stores:
            await s.close()
    records = await everything(store)
    assert [r.seq for r in records] == list(range(1, 401))
    assert sorted(r.event_id for r in records) == [f"evt_{n:06d}" for n in range(1, 401)]
    report = await verify_store(store.audit)
    assert (report.ok, report.records, report.head) == (True, 400, records[-1].hash)
    # each batch is one transaction: its five events are consecutive in the chain
    for i in range(0, 400, 5):
        ns = [int(r.event_id[4:]) for r in records[i : i + 5]]
        assert ns == list(range(ns[0], ns[0] + 5)) and ns[0] % 5 == 1, ns


async def test_requests_are_chained_in_blocks_between_rows(store: SqlStore) -> None:
    # admin rows, a block of requests, a mixed batch (cut into a row, a block, a row), another block
    assert await store.audit.append_many([event(1), event(2)]) == 2
    assert await store.audit.append_many([request(n) for n in range(3, 8)], fresh=True) == 5
    assert await store.audit.append_many([event(8), request(9), request(10), event(11)]) == 4
    assert await store.audit.append_many([request(12)], validate=False, fresh=True) == 1
    records = await everything(store)
    assert [r.seq for r in records] == list(range(1, 13))
    assert [r.kind for r in records] == ["admin"] * 2 + ["request"] * 5 + ["admin", "request", "request", "admin"] + [
        "request"
    ]
    assert all(r.prev_hash == (records[i - 1].hash if i else GENESIS) for i, r in enumerate(records))
    assert all(r.hash == r.expected_hash() for r in records)
    fourth = records[3]
    assert (fourth.event_id, fourth.created_at, fourth.actor, fourth.action, fourth.target, fourth.team_id) == (
        "req_000004",
        T0 + timedelta(seconds=4),
        "key_b",
        "chat.completions",
        "gpt-4o",
        "team_b",
    )
    assert fourth.data == canonical(request(4).data) and fourth.payload() == request(4).data
    assert AuditRecord.from_dict(fourth.to_dict()) == fourth
    async with store.transaction(write=False) as tx:
        blocks = await tx.fetch("SELECT first_seq, last_seq, prev_hash, last_hash FROM audit_blocks ORDER BY 1")
        rows = await tx.fetch("SELECT seq FROM audit_log ORDER BY seq")
        refs = await tx.fetch("SELECT field, value FROM audit_block_refs WHERE first_seq = 3 ORDER BY 1, 2")
    spans = [(b["first_seq"], b["last_seq"], b["prev_hash"], b["last_hash"]) for b in blocks]
    assert spans == [
        (3, 7, records[1].hash, records[6].hash),
        (9, 10, records[7].hash, records[9].hash),
        (12, 12, records[10].hash, records[11].hash),
    ]
    assert [r["seq"] for r in rows] == [1, 2, 8, 11]
    assert [(r["field"], r["value"]) for r in refs] == [
        ("actor", "key_a"),
        ("actor", "key_b"),
        ("actor", "key_c"),
        ("team_id", "team_a"),
        ("team_id", "team_b"),
    ]
    report = await verify_store(store.audit, page=3)  # pages that end inside blocks
    assert (report.ok, report.records, report.head) == (True, 12, records[-1].hash)


async def test_facts_and_request_events_chain_alike(store: SqlStore) -> None:
    # facts (the account phase's) and request events (a dict's data) make separate blocks, hashed alike
    batch = [facts(1), facts(2), request(3), facts(4), event(5)]
    assert await store.audit.append_many(batch, validate=False, fresh=True) == 5
    records = await everything(store)
    assert [(r.seq, r.event_id, r.kind) for r in records] == [
        (1, "req_000001", "request"),
        (2, "req_000002", "request"),
        (3, "req_000003", "request"),
        (4, "req_000004", "request"),
        (5, "evt_000005", "admin"),
    ]
    assert records[0].payload() == facts(1).event().data and records[2].payload() == request(3).data
    async with store.transaction(write=False) as tx:
        spans = [(b["first_seq"], b["last_seq"]) for b in await tx.fetch("SELECT * FROM audit_blocks ORDER BY 1")]
    assert spans == [(1, 2), (3, 3), (4, 4)]
    assert (await verify_store(store.audit)).records == 5
    with pytest.raises(InvalidValue, match="status has the wrong type"):
        await store.audit.append_many([RequestFacts((*facts(6)[:11], "200", *facts(6)[12:]))])


@pytest.mark.parametrize("make", [event, request])  # admin rows; requests in blocks
@pytest.mark.parametrize("fresh", [False, True])  # fresh: no lookup first; a stored id redoes the batch with it
async def test_replaying_a_batch_is_idempotent(store: SqlStore, fresh: bool, make: Callable[[int], AuditEvent]) -> None:
    batch = [make(n) for n in range(1, 11)]
    assert await store.audit.append_many(batch, fresh=fresh) == 10
    before = await everything(store)
    # a replay comes from a spool, never fresh; a fresh batch that was stored after all is caught by the
    # unique event id of rows (blocks have none: the writer only calls a batch fresh on its first offer)
    replay = fresh and make is event
    assert await store.audit.append_many(batch, fresh=replay) == 0  # replayed whole
    again = [*batch[5:], make(11), make(11), make(12)]
    assert await store.audit.append_many(again, fresh=replay) == 2  # partly new
    assert await store.audit.append_many([], fresh=fresh) == 0
    records = await everything(store)
    assert records[:10] == before
    assert [r.event_id for r in records[10:]] == [make(11).event_id, make(12).event_id]
    assert (await verify_store(store.audit)).records == 12


async def test_an_invalid_event_writes_nothing(store: SqlStore) -> None:
    bad = [
        event(2, kind="login"),
        event(2, created_at=T0.replace(tzinfo=None)),
        event(2, actor=""),
        event(2, data={"x": object()}),
        event(2, data=["not", "an", "object"]),
        event(2, kind="request", action="team.update"),  # a request event names a data-plane action
        event(2, action="chat.completions"),  # and an admin event never does
    ]
    for wrong in bad:
        with pytest.raises(InvalidValue):
            await store.audit.append_many([event(1), wrong])
    # trusted events skip the full check, not these: the list query relies on the kind of an action, and
    # the hash on text fields
    for wrong in (event(2, kind="request", action="team.update"), event(2, actor=5), event(2, target="\ud800")):
        with pytest.raises(InvalidValue):
            await store.audit.append_many([event(1), wrong], validate=False)
    assert await everything(store) == []


async def test_list_filters_and_cursor_paging(store: SqlStore) -> None:
    await store.audit.append_many([event(n) for n in range(1, 31)])
    await store.audit.append_many([event(31, kind="request", actor="key_a", action="chat.completions")])

    async def collect(**filters: object) -> list[int]:
        seqs: list[int] = []
        cursor = None
        while True:
            page = await store.audit.list(limit=4, cursor=cursor, **filters)  # type: ignore[arg-type]
            assert len(page.items) <= 4
            seqs += [r.seq for r in page.items]
            if page.next_cursor is None:
                return seqs
            cursor = page.next_cursor

    assert await collect() == list(range(1, 32))
    assert await collect(actor="master") == [n for n in range(1, 31) if n % 3 == 0]
    assert await collect(team_id="team_a", action="team.update") == [n for n in range(1, 31) if n % 2 == 0]
    assert await collect(kind="request") == [31]
    assert await collect(actor="key_a", kind="admin") == [n for n in range(1, 31) if n % 3 == 1]
    assert await collect(target="obj_7") == [7]
    since, until = T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)
    assert await collect(since=since, until=until) == list(range(10, 20))
    assert await collect(actor="nobody") == []
    assert await collect(action="chat.completions") == [31]
    assert await collect(action="chat.completions", kind="admin") == []  # contradictory: nothing
    assert await collect(action="key.create", kind="request") == []
    assert await collect(kind="other") == []
    with pytest.raises(InvalidValue, match="cursor"):
        await store.audit.list(cursor="bm90IG91cnM")
    with pytest.raises(InvalidValue, match="limit"):
        await store.audit.list(limit=0)
    with pytest.raises(InvalidValue, match="since"):
        await store.audit.list(since=T0.replace(tzinfo=None))


async def test_list_filters_cross_rows_and_blocks(store: SqlStore) -> None:
    batches = [
        [event(n) for n in range(1, 11)],
        [request(n) for n in range(11, 21)],
        [request(n) for n in range(21, 31)],
        [event(n) for n in range(31, 36)],
        [request(36), event(37), request(38), request(39), request(40)],
        [facts(n) for n in range(41, 51)],  # the account phase's: a compact block
        [event(51), facts(52), facts(53)],
    ]
    for batch in batches:
        await store.audit.append_many(batch)
    events = [e for batch in batches for e in batch]  # seq n is events[n - 1]

    async def collect(limit: int, **filters: object) -> list[int]:
        seqs: list[int] = []
        cursor = None
        while True:
            page = await store.audit.list(limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
            assert len(page.items) <= limit
            seqs += [r.seq for r in page.items]
            if page.next_cursor is None:
                return seqs
            cursor = page.next_cursor

    since, until = T0 + timedelta(seconds=8), T0 + timedelta(seconds=33)
    cases: list[dict[str, object]] = [
        {},
        {"actor": "key_a"},
        {"team_id": "team_a"},
        {"actor": "key_b", "team_id": "team_b"},
        {"kind": "request"},
        {"kind": "admin", "team_id": "team_a"},
        {"action": "chat.completions", "target": "gpt-4o"},
        {"since": since, "until": until},
        {"team_id": "team_b", "since": since},
        {"actor": "key_c", "until": until},
        {"actor": "nobody"},
    ]
    for filters in cases:
        expected = [
            n
            for n, e in enumerate(events, 1)
            if all(getattr(e, k) == v for k, v in filters.items() if k not in ("since", "until"))
            and ("since" not in filters or e.created_at >= since)
            and ("until" not in filters or e.created_at < until)
        ]
        for limit in (1, 3, 7, 100):  # pages that end inside blocks and between them
            assert await collect(limit, **filters) == expected, (filters, limit)


async def test_an_event_survives_the_round_trip_through_json(store: SqlStore) -> None:
    ev = event(1, target=None, team_id=None, data={"nested": {"z": 1, "a": [1.5, "x"]}, "unicode": "ünï"})
    assert AuditEvent.from_json(ev.to_json()) == ev
    await store.audit.append_many([AuditEvent.from_json(ev.to_json())])
    (record,) = await everything(store)
    assert (record.target, record.team_id, record.payload()) == (None, None, ev.data)
    assert AuditRecord.from_dict(record.to_dict()) == record


async def test_admin_filters_name_the_kind_for_the_partial_indexes(tmp_path: Path) -> None:
    # the action and kind indexes cover admin records only (migration 0005): the list query names the kind
    # as literal SQL (PostgreSQL's generic plans ignore parameter values), and the planner then uses them
    terms, args = SqlAudit.filters(None, "team_a", "key.create", None, None)
    assert (terms, args) == (["kind = 'admin'", "team_id = ?", "action = ?"], ["team_a", "key.create"])
    assert SqlAudit.filters(None, None, None, "admin", None) == (["kind = 'admin'"], [])
    assert SqlAudit.filters(None, None, "chat.completions", None, None)[0] == ["kind = 'request'", "action = ?"]
    assert SqlAudit.filters(None, None, None, "x' OR 1=1 --", None) == (["kind = ?"], ["x' OR 1=1 --"])
    store = open_url(f"sqlite:///{tmp_path / 'fg.db'}")
    await store.migrate()
    try:
        assert isinstance(store, SqliteStore)
        for filters, index in ((("key.create", None), "audit_admin_action_idx"), ((None, "admin"), "audit_admin_idx")):
            where, args = SqlAudit.filters(None, None, *filters, None)
            sql = f"EXPLAIN QUERY PLAN SELECT seq FROM audit_log WHERE {' AND '.join(where)} ORDER BY seq"  # noqa: S608
            plan = " ".join(str(row[-1]) for row in store.conn.execute(sql, args))
            assert index in plan, plan
    finally:
        await store.close()
