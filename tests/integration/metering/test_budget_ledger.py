"""The budget ledger in the store (SQLite and PostgreSQL): holds, spend, release by the usage insert, periods.

The concurrency test runs many reservations at once through several store connections (PostgreSQL: a pool
of 8; SQLite: two stores on one file, as two workers would) and checks that the holds never exceed a budget.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ferrogate.store.budgets import Hold
from ferrogate.store.errors import InvalidValue
from ferrogate.store.sql import SqlStore
from ferrogate.store.usage import UsageRecord
from tests.integration.metering.conftest import open_url

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TODAY = "2026-11-25"


def team_hold(limit: float, since: str = TODAY) -> Hold:
    return Hold("team", "team_1", limit, since)


def record(rid: str, cost: float | None, *, at: datetime = NOW, key: str = "key_1") -> UsageRecord:
    return UsageRecord(
        request_id=rid,
        created_at=at,
        model="m",
        status=200,
        key_id=key,
        team_id="team_1",
        user_id="usr_1",
        prompt_tokens=10,
        completion_tokens=5,
        cost_usd=cost,
    )


async def test_reserve_until_the_budget_is_held(store: SqlStore) -> None:
    holds = [team_hold(1.0)]
    for i in range(4):
        result = await store.budgets.reserve(f"r{i}", holds, 0.25, now=NOW, ttl_s=60)
        assert result.refused is None
        assert result.balances[0].reserved_usd == pytest.approx(0.25 * i)
    refused = await store.budgets.reserve("r4", holds, 0.01, now=NOW, ttl_s=60)
    assert refused.refused == 0
    assert refused.balances[0].reserved_usd == pytest.approx(1.0)
    (bal,) = await store.budgets.balances(holds, now=NOW)
    assert (bal.spent_usd, bal.reserved_usd) == (0.0, pytest.approx(1.0))  # the refused one held nothing


async def test_usage_insert_replaces_the_hold_with_the_real_cost(store: SqlStore) -> None:
    holds = [Hold("key", "key_1", 1.0, TODAY), team_hold(5.0), Hold("user", "usr_1", 2.0, TODAY)]
    assert (await store.budgets.reserve("r1", holds, 0.5, now=NOW, ttl_s=60)).refused is None
    assert (await store.budgets.reserve("r2", holds, 0.5, now=NOW, ttl_s=60)).refused is None
    assert await store.usage.insert_many([record("r1", 0.125)]) == 1
    balances = await store.budgets.balances(holds, now=NOW)
    assert [(b.spent_usd, b.reserved_usd) for b in balances] == [(0.125, 0.5)] * 3
    # a stream that ran past its hold is counted at its real cost
    assert await store.usage.insert_many([record("r2", 0.75)]) == 1
    balances = await store.budgets.balances(holds, now=NOW)
    assert [(b.spent_usd, b.reserved_usd) for b in balances] == [(0.875, 0.0)] * 3
    # a replayed batch neither adds spend twice nor fails
    assert await store.usage.insert_many([record("r1", 0.125), record("r2", 0.75)]) == 0
    assert (await store.budgets.balances(holds, now=NOW))[0].spent_usd == 0.875
    refused = await store.budgets.reserve("r3", holds, 0.2, now=NOW, ttl_s=60)
    assert refused.refused == 0  # the key's $1 cannot hold 0.875 + 0.2


async def test_a_record_without_a_hold_spends_but_leaves_reservations_alone(store: SqlStore) -> None:
    holds = [team_hold(5.0)]
    assert (await store.budgets.reserve("r1", holds, 0.5, now=NOW, ttl_s=60)).refused is None
    no_hold = record("r1", 0.125)
    no_hold.hold = False  # the account phase knows the request had no budget: no lookup of a hold
    assert await store.usage.insert_many([no_hold], fresh=True) == 1
    (bal,) = await store.budgets.balances(holds, now=NOW)
    assert (bal.spent_usd, bal.reserved_usd) == (0.125, 0.5)  # spent, and the hold not looked for
    assert await store.usage.insert_many([record("r1", 0.125)], fresh=True) == 0  # a replay (hold: True) releases
    (bal,) = await store.budgets.balances(holds, now=NOW)
    assert (bal.spent_usd, bal.reserved_usd) == (0.125, 0.0)


async def test_unpriced_records_add_no_spend(store: SqlStore) -> None:
    await store.usage.insert_many([record("r1", None), record("r2", 0.0)])
    (bal,) = await store.budgets.balances([team_hold(1.0)], now=NOW)
    assert bal.spent_usd == 0.0


async def test_periods_sum_their_days(store: SqlStore) -> None:
    await store.usage.insert_many(
        [
            record("old", 4.0, at=NOW - timedelta(days=40)),
            record("month", 2.0, at=NOW - timedelta(days=10)),
            record("week", 1.0, at=NOW - timedelta(days=1)),
            record("today", 0.5),
        ]
    )
    since = {"daily": TODAY, "weekly": "2026-11-23", "monthly": "2026-11-01", "total": "0000-01-01"}
    spent = {
        period: (await store.budgets.balances([team_hold(100.0, day)], now=NOW))[0].spent_usd
        for period, day in since.items()
    }
    assert spent == {"daily": 0.5, "weekly": 1.5, "monthly": 3.5, "total": 7.5}


async def test_expired_holds_are_ignored(store: SqlStore) -> None:
    holds = [team_hold(1.0)]
    assert (await store.budgets.reserve("crashed", holds, 1.0, now=NOW, ttl_s=60)).refused is None
    assert (await store.budgets.reserve("r1", holds, 0.5, now=NOW, ttl_s=60)).refused == 0
    later = NOW + timedelta(seconds=61)
    assert (await store.budgets.reserve("r1", holds, 0.5, now=later, ttl_s=60)).refused is None


async def test_release_and_bad_arguments(store: SqlStore) -> None:
    holds = [team_hold(1.0)]
    await store.budgets.reserve("r1", holds, 1.0, now=NOW, ttl_s=60)
    await store.budgets.release("r1")
    assert (await store.budgets.balances(holds, now=NOW))[0].reserved_usd == 0.0
    with pytest.raises(InvalidValue):
        await store.budgets.reserve("r2", holds, -1.0, now=NOW, ttl_s=60)
    with pytest.raises(InvalidValue):
        await store.budgets.reserve("r2", [Hold("org", "o", 1.0, TODAY)], 1.0, now=NOW, ttl_s=60)


async def test_notices_are_recorded_once_per_period(store: SqlStore) -> None:
    holds = [team_hold(1.0)]
    await store.usage.insert_many([record("spent", 0.85)])
    first = await store.budgets.reserve("r1", holds, 0.1, now=NOW, ttl_s=60, soft_fraction=0.8)
    assert (first.refused, first.notices) == (None, [(0, "soft")])
    again = await store.budgets.reserve("r2", holds, 0.1, now=NOW, ttl_s=60, soft_fraction=0.8)
    assert (again.refused, again.notices) == (0, [(0, "exhausted")])  # 0.85 + 0.1 held + 0.1 > 1
    third = await store.budgets.reserve("r3", holds, 0.1, now=NOW, ttl_s=60, soft_fraction=0.8)
    assert (third.refused, third.notices) == (0, [])
    tomorrow = [team_hold(1.0, "2026-11-26")]
    fresh = await store.budgets.reserve("r4", tomorrow, 0.1, now=NOW, ttl_s=60, soft_fraction=0.8)
    assert (fresh.refused, fresh.notices) == (None, [])


async def test_concurrent_reservations_never_overshoot(store: SqlStore, db_url: str) -> None:
    """60 concurrent holds of $0.1 on a $2.35 budget through several connections: exactly 23 fit."""
    other = open_url(db_url, max_size=8)
    stores = [store, other]
    holds = [team_hold(100.0), Hold("key", "key_1", 2.35, TODAY)]

    async def one(i: int) -> bool:
        result = await stores[i % 2].budgets.reserve(f"c{i}", holds, 0.1, now=NOW, ttl_s=60)
        return result.refused is None

    try:
        admitted = await asyncio.gather(*(one(i) for i in range(60)))
    finally:
        await other.close()
    assert sum(admitted) == 23
    balances = await store.budgets.balances(holds, now=NOW)
    assert balances[1].reserved_usd == pytest.approx(2.3)
    assert balances[0].reserved_usd == pytest.approx(2.3)  # the team holds exactly what the key admitted


async def test_sqlite_hold_waits_for_a_write_lock_taken_elsewhere(tmp_path: Path) -> None:
    # A hold runs on the event loop's connection only when the write lock is free at once; when another
    # worker (here a second store on the file) holds it, the hold waits on the store's thread instead.
    url = f"sqlite:///{tmp_path / 'fg.db'}"
    first, second = open_url(url), open_url(url)
    await first.migrate()
    try:
        async with second.transaction() as tx:
            await tx.fetch("INSERT INTO budget_held (scope, owner_id, held_usd) VALUES ('team', 'other', 0)")
            hold = asyncio.create_task(first.budgets.reserve("r1", [team_hold(1.0)], 0.25, now=NOW, ttl_s=60))
            await asyncio.sleep(0.2)
            assert not hold.done()  # queued behind the other writer, not refused and not failed
        assert (await hold).refused is None
        (bal,) = await first.budgets.balances([team_hold(1.0)], now=NOW)
        assert bal.reserved_usd == pytest.approx(0.25)
    finally:
        await second.close()
        await first.close()


async def test_sqlite_holds_on_the_loop_do_not_grow_the_wal(tmp_path: Path) -> None:
    # the loop's connection never checkpoints (a checkpoint may fsync): the store's thread does, every
    # CHECKPOINT_EVERY of its commits, so the WAL file is reused instead of growing with every hold
    path = tmp_path / "fg.db"
    store = open_url(f"sqlite:///{path}")
    await store.migrate()
    try:
        for i in range(3_000):
            assert (await store.budgets.reserve(f"r{i}", [team_hold(1e9)], 0.01, now=NOW, ttl_s=60)).refused is None
            if i % 16 == 0:
                await asyncio.sleep(0)  # requests yield to the loop; the checkpoints run then
        # one hold writes ~4 pages: 3,000 holds without checkpoints leave a WAL of ~50 MB
        assert path.with_name("fg.db-wal").stat().st_size < 16 * 2**20
    finally:
        await store.close()
