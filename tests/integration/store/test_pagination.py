"""Keyset pagination: every row exactly once, in (created_at, id) order, with and without filters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from ferrogate.store import InvalidValue, Key, Page
from ferrogate.store.sql import SqlStore
from tests.integration.store.conftest import key_hash

pytestmark = pytest.mark.anyio
T = TypeVar("T")


async def walk(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> tuple[list[T], int]:
    """Every item, following next_cursor; and the number of pages."""
    items: list[T] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await fetch(cursor)
        pages += 1
        items += page.items
        if page.next_cursor is None:
            return items, pages
        cursor = page.next_cursor


async def seed(store: SqlStore) -> tuple[list[Key], dict[str, Any]]:
    ml, ops = await store.teams.create("ml"), await store.teams.create("ops")
    ana = await store.users.create(ml.id, "ana")
    keys: list[Key] = []
    for i in range(57):
        team = ml if i % 3 else ops
        key = await store.keys.create(
            key_hash(i),
            f"fg-{i:05d}",
            name=f"{'ci' if i % 4 == 0 else 'dev'}-{i}",
            team_id=team.id,
            user_id=ana.id if team is ml and i % 2 else None,
            role="team_admin" if i % 10 == 0 else "member",
        )
        if i % 5 == 0:
            key = await store.keys.revoke(key.id)
        keys.append(key)
    return keys, {"ml": ml.id, "ops": ops.id, "ana": ana.id}


def ordered(keys: list[Key]) -> list[str]:
    return [k.id for k in sorted(keys, key=lambda k: (k.created_at, k.id))]


@pytest.mark.parametrize(
    ("filters", "want"),
    [
        ({}, lambda k, ids: True),
        ({"team_id": "ml"}, lambda k, ids: k.team_id == ids["ml"]),
        ({"user_id": "ana"}, lambda k, ids: k.user_id == ids["ana"]),
        ({"role": "team_admin"}, lambda k, ids: k.role == "team_admin"),
        ({"revoked": True}, lambda k, ids: k.revoked_at is not None),
        ({"revoked": False}, lambda k, ids: k.revoked_at is None),
        ({"name_prefix": "ci-"}, lambda k, ids: k.name.startswith("ci-")),
        ({"name_prefix": "CI-"}, lambda k, ids: False),
        (
            {"team_id": "ml", "revoked": False, "name_prefix": "dev"},
            lambda k, ids: k.team_id == ids["ml"] and k.revoked_at is None and k.name.startswith("dev"),
        ),
    ],
)
@pytest.mark.parametrize("limit", [1, 7, 1000])
async def test_pages_cover_every_match_once(
    store: SqlStore, filters: dict[str, Any], want: Callable[[Key, dict[str, str]], bool], limit: int
) -> None:
    keys, ids = await seed(store)
    args = {f: ids.get(v, v) if isinstance(v, str) else v for f, v in filters.items()}
    got, pages = await walk(lambda cursor: store.keys.list(limit=limit, cursor=cursor, **args))
    expected = ordered([k for k in keys if want(k, ids)])
    assert [k.id for k in got] == expected
    assert pages == max(1, -(-len(expected) // limit))  # no empty trailing page


async def test_equal_timestamps_are_ordered_by_id(store: SqlStore) -> None:
    keys, _ = await seed(store)
    async with store.transaction() as tx:
        await tx.execute("UPDATE keys SET created_at = ?", store.ts_in(datetime(2026, 1, 1, tzinfo=UTC)))
    got, pages = await walk(lambda cursor: store.keys.list(limit=10, cursor=cursor))
    assert [k.id for k in got] == sorted(k.id for k in keys)
    assert pages == 6


async def test_teams_and_users_page_too(store: SqlStore) -> None:
    teams = [await store.teams.create(f"{'ml' if i % 2 else 'ops'}-{i:02d}") for i in range(25)]
    got, _ = await walk(lambda cursor: store.teams.list(limit=4, cursor=cursor))
    assert got == teams
    got, _ = await walk(lambda cursor: store.teams.list(name_prefix="ml-", limit=4, cursor=cursor))
    assert got == [t for t in teams if t.name.startswith("ml-")]
    users = [
        await store.users.create(teams[i % 2].id, f"u{i}", role="auditor" if i % 3 else "member") for i in range(20)
    ]
    got_users, _ = await walk(
        lambda cursor: store.users.list(team_id=teams[0].id, role="auditor", limit=3, cursor=cursor)
    )
    assert got_users == [u for u in users if u.team_id == teams[0].id and u.role == "auditor"]


async def test_rows_added_while_paging_appear_at_the_end(store: SqlStore) -> None:
    first = [await store.teams.create(f"t{i}") for i in range(5)]
    page = await store.teams.list(limit=3)
    late = await store.teams.create("late")
    rest, _ = await walk(lambda cursor: store.teams.list(limit=3, cursor=cursor or page.next_cursor))
    assert page.items + rest == [*first, late]


@pytest.mark.parametrize("limit", [0, 1001, -1, True])
async def test_limit_bounds(store: SqlStore, limit: int) -> None:
    with pytest.raises(InvalidValue, match=r"limit .* expected an integer from 1 to 1000"):
        await store.keys.list(limit=limit)


@pytest.mark.parametrize("cursor", ["", "garbage", "bm90LWEtY3Vyc29y", "MjAyNi0wMS0wMXw="])
async def test_bad_cursor_is_refused(store: SqlStore, cursor: str) -> None:
    with pytest.raises(InvalidValue, match="cursor"):
        await store.teams.list(cursor=cursor)
