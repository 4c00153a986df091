"""store.usage on both backends: idempotent batched inserts and grouped, filtered, paginated sums."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ferrogate.store import InvalidValue, NotFound
from ferrogate.store.sql import SqlStore
from ferrogate.store.usage import UsageRecord, UsageRow
from tests.integration.metering.conftest import T0, usage

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("fresh", [False, True])  # fresh: no lookup first; a stored id redoes the batch with it
async def test_insert_is_idempotent_by_request_id(store: SqlStore, fresh: bool) -> None:
    first = [usage(n) for n in range(1, 11)]
    assert await store.usage.insert_many(first, fresh=fresh) == 10
    assert await store.usage.insert_many(first, fresh=fresh) == 0  # a replayed batch
    overlap = [*first[5:], *(usage(n) for n in range(11, 16))]
    assert await store.usage.insert_many(overlap, fresh=fresh) == 5
    dupes = [usage(100), usage(100, prompt_tokens=999), usage(101)]
    assert await store.usage.insert_many(dupes, fresh=fresh) == 2  # within a batch the first occurrence wins
    assert (await store.usage.get("req_000100")).prompt_tokens == 100
    assert await store.usage.insert_many([], fresh=fresh) == 0
    total = (await store.usage.summary()).items[0]
    assert total.requests == 17
    assert total.prompt_tokens == sum(range(1, 16)) + 100 + 101


@pytest.mark.parametrize("fresh", [False, True])
async def test_large_batch_spans_statements(store: SqlStore, fresh: bool) -> None:
    records = [usage(n) for n in range(1, 1301)]  # three INSERT statements in one transaction
    assert await store.usage.insert_many(records, fresh=fresh) == 1300
    assert await store.usage.insert_many(records[::-1], fresh=fresh) == 0
    total = (await store.usage.summary()).items[0]
    assert (total.requests, total.prompt_tokens, total.completion_tokens) == (1300, 845650, 2 * 845650)
    assert total.cost_usd == 845650 / 1024


async def test_get_round_trips_every_field(store: SqlStore) -> None:
    at = datetime(2025, 3, 1, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=-5)))
    full = UsageRecord(
        request_id="req_full",
        created_at=at,
        key_id="key_x",
        team_id="team_x",
        user_id="usr_x",
        model="gpt-4o-mini",
        upstream="openai",
        upstream_model="gpt-4o-mini-2024-07-18",
        status=200,
        stream=True,
        prompt_tokens=10,
        completion_tokens=20,
        cached_tokens=3,
        reasoning_tokens=4,
        counted=True,
        cost_usd=0.000123,
        latency_ms=45.25,
    )
    bare = UsageRecord(request_id="req_bare", created_at=T0, model="x", status=502)
    assert await store.usage.insert_many([full, bare]) == 2
    got = await store.usage.get("req_full")
    assert got == full and got.created_at.tzinfo == UTC
    assert await store.usage.get("req_bare") == bare
    with pytest.raises(NotFound):
        await store.usage.get("req_none")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created_at", datetime(2025, 1, 1)),  # naive
        ("prompt_tokens", -1),
        ("prompt_tokens", 1.5),
        ("stream", 1),
        ("cost_usd", float("nan")),
        ("model", ""),
        ("team_id", 7),
    ],
)
async def test_an_invalid_record_writes_nothing(store: SqlStore, field: str, value: object) -> None:
    with pytest.raises(InvalidValue, match=f"{field} of req_000002"):
        await store.usage.insert_many([usage(1), usage(2, **{field: value})])
    assert (await store.usage.summary()).items[0].requests == 0


@pytest.fixture
async def mixed(store: SqlStore) -> SqlStore:
    """Two teams, three keys (one request without a key), two models, two UTC days, one unpriced request."""
    day2 = T0 + timedelta(days=1)
    records = [
        usage(1, cost_usd=0.5),
        usage(2, cost_usd=0.25, model="gpt-4o-mini"),
        usage(3, cost_usd=None, model="unpriced"),
        usage(4, cost_usd=0.125, key_id="key_b", user_id="usr_1", created_at=day2),
        usage(5, cost_usd=1.0, key_id="key_b", user_id="usr_1", created_at=day2 + timedelta(hours=1)),
        usage(6, cost_usd=2.0, team_id="team_b", key_id="key_c"),
        usage(7, cost_usd=4.0, team_id="team_b", key_id=None),
        # 23:30 at UTC-5 is 04:30 UTC the next day: grouped by the UTC date
        usage(
            8,
            cost_usd=8.0,
            team_id="team_b",
            key_id="key_c",
            created_at=datetime(2025, 3, 2, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
        ),
    ]
    assert await store.usage.insert_many(records) == 8
    return store


def row(group: str | None, ns: list[int], cost: float, unpriced: int = 0) -> UsageRow:
    return UsageRow(
        group, len(ns), sum(ns), 2 * sum(ns), sum(n % 3 for n in ns), sum(n % 5 for n in ns), cost, unpriced
    )


async def test_summary_totals_and_filters(mixed: SqlStore) -> None:
    s = mixed.usage.summary
    assert (await s()).items == [row(None, [1, 2, 3, 4, 5, 6, 7, 8], 15.875, 1)]
    assert (await s(team_id="team_a")).items == [row(None, [1, 2, 3, 4, 5], 1.875, 1)]
    assert (await s(key_id="key_b")).items == [row(None, [4, 5], 1.125)]
    assert (await s(user_id="usr_1", model="gpt-4o")).items == [row(None, [4, 5], 1.125)]
    assert (await s(since=T0 + timedelta(days=1), until=T0 + timedelta(days=1, hours=1))).items == [
        row(None, [4], 0.125)
    ]
    assert (await s(since=T0 + timedelta(days=1))).items == [row(None, [4, 5, 8], 9.125)]  # since inclusive
    assert (await s(team_id="team_none")).items == [row(None, [], 0.0)]
    assert (await s()).next_cursor is None


async def test_summary_groups(mixed: SqlStore) -> None:
    s = mixed.usage.summary
    by_model = await s(group_by="model")
    assert by_model.items == [
        row("gpt-4o", [1, 4, 5, 6, 7, 8], 15.625),
        row("gpt-4o-mini", [2], 0.25),
        row("unpriced", [3], 0.0, 1),
    ]
    by_day = await s(group_by="day", team_id="team_b")
    assert by_day.items == [row("2025-03-01", [6, 7], 6.0), row("2025-03-03", [8], 8.0)]
    by_key = await s(group_by="key")
    assert by_key.items == [
        row(None, [7], 4.0),
        row("key_a", [1, 2, 3], 0.75, 1),
        row("key_b", [4, 5], 1.125),
        row("key_c", [6, 8], 10.0),
    ]


@pytest.mark.parametrize("group_by", ["model", "day", "key"])
async def test_summary_pages_by_group_value(mixed: SqlStore, group_by: str) -> None:
    everything = (await mixed.usage.summary(group_by=group_by)).items  # type: ignore[arg-type]
    seen: list[UsageRow] = []
    cursor = None
    while True:
        page = await mixed.usage.summary(group_by=group_by, limit=1, cursor=cursor)  # type: ignore[arg-type]
        seen += page.items
        assert len(page.items) == 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == everything and len(everything) >= 2


async def test_summary_refuses_bad_arguments(mixed: SqlStore) -> None:
    s = mixed.usage.summary
    page = await s(group_by="model", limit=1)
    assert page.next_cursor is not None
    with pytest.raises(InvalidValue, match="cursor"):
        await s(group_by="key", cursor=page.next_cursor)  # a cursor of another grouping
    with pytest.raises(InvalidValue, match="cursor"):
        await s(group_by="model", cursor="!!")
    with pytest.raises(InvalidValue, match="group_by"):
        await s(group_by="team")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="limit"):
        await s(limit=0)
    with pytest.raises(InvalidValue, match="since"):
        await s(since=datetime(2025, 1, 1))
