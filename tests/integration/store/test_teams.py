"""Teams: CRUD, uniqueness, partial updates, validation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from ferrogate.store import Conflict, InUse, InvalidValue, NotFound, Team
from ferrogate.store.sql import SqlStore

pytestmark = pytest.mark.anyio


async def test_create_applies_defaults(store: SqlStore) -> None:
    before = datetime.now(UTC)
    team = await store.teams.create("ml")
    assert team.id.startswith("team_") and len(team.id) == 21
    assert (team.name, team.allowed_models, team.classification, team.metadata) == ("ml", ("*",), "internal", {})
    assert (team.rpm, team.tpm, team.budget, team.budget_period) == (None, None, None, None)
    assert before <= team.created_at == team.updated_at <= datetime.now(UTC)
    assert team.created_at.tzinfo is UTC
    assert await store.teams.get(team.id) == team


async def test_create_with_every_field_round_trips(store: SqlStore) -> None:
    team = await store.teams.create(
        "research",
        allowed_models=["gpt-4o*", "claude-*"],
        rpm=600,
        tpm=100_000,
        budget=12.5,
        budget_period="monthly",
        classification="confidential",
        metadata={"owner": "ana", "tags": ["a", 1], "nested": {"x": None}},
    )
    got = await store.teams.get(team.id)
    assert got == team
    assert got.allowed_models == ("gpt-4o*", "claude-*")
    assert (got.rpm, got.tpm, got.budget, got.budget_period) == (600, 100_000, 12.5, "monthly")
    assert got.metadata == {"owner": "ana", "tags": ["a", 1], "nested": {"x": None}}


async def test_duplicate_name_conflicts(store: SqlStore) -> None:
    await store.teams.create("ml")
    with pytest.raises(Conflict, match="team with name 'ml' already exists") as info:
        await store.teams.create("ml")
    assert (info.value.entity, info.value.field, info.value.value) == ("team", "name", "ml")
    other = await store.teams.create("ops")
    with pytest.raises(Conflict, match="'ml'"):
        await store.teams.update(other.id, {"name": "ml"})
    assert (await store.teams.get(other.id)).name == "ops"


async def test_concurrent_creates_of_one_name_let_exactly_one_win(store: SqlStore) -> None:
    results = await asyncio.gather(*(store.teams.create("race") for _ in range(8)), return_exceptions=True)
    assert sum(isinstance(r, Team) for r in results) == 1
    assert sum(isinstance(r, Conflict) for r in results) == 7


async def test_partial_update_changes_only_given_fields(store: SqlStore) -> None:
    team = await store.teams.create("ml", rpm=10, tpm=20, metadata={"a": 1})
    updated = await store.teams.update(team.id, {"rpm": 99, "budget": 5, "budget_period": "daily"})
    assert (updated.rpm, updated.tpm, updated.budget, updated.budget_period) == (99, 20, 5.0, "daily")
    assert (updated.name, updated.metadata, updated.created_at) == ("ml", {"a": 1}, team.created_at)
    assert updated.updated_at > team.updated_at
    cleared = await store.teams.update(team.id, {"rpm": None, "budget_period": None})
    assert (cleared.rpm, cleared.budget_period, cleared.tpm) == (None, None, 20)
    assert await store.teams.get(team.id) == cleared
    assert await store.teams.update(team.id, {}) == cleared


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"budget_period": "yearly"}, "budget_period"),
        ({"rpm": -1}, "rpm"),
        ({"tpm": 1.5}, "tpm"),
        ({"budget": float("nan")}, "budget"),
        ({"allowed_models": "gpt-4o"}, "allowed_models"),
        ({"name": ""}, "name"),
        ({"metadata": ["x"]}, "metadata"),
        ({"id": "team_x"}, "id"),
        ({"created_at": datetime.now(UTC)}, "created_at"),
    ],
)
async def test_refused_values_name_the_field(store: SqlStore, changes: dict[str, object], field: str) -> None:
    team = await store.teams.create("ml")
    with pytest.raises(InvalidValue, match=f"^{field} ") as info:
        await store.teams.update(team.id, changes)
    assert info.value.field == field
    assert await store.teams.get(team.id) == team


async def test_missing_team_is_not_found(store: SqlStore) -> None:
    for call in (
        store.teams.get("team_0000000000000000"),
        store.teams.update("team_0000000000000000", {"rpm": 1}),
        store.teams.delete("team_0000000000000000"),
    ):
        with pytest.raises(NotFound, match="team team_0000000000000000 not found"):
            await call


async def test_delete(store: SqlStore) -> None:
    team = await store.teams.create("ml")
    await store.teams.delete(team.id)
    with pytest.raises(NotFound):
        await store.teams.get(team.id)


async def test_delete_refuses_a_team_with_users(store: SqlStore) -> None:
    team = await store.teams.create("ml")
    user = await store.users.create(team.id, "ana")
    with pytest.raises(InUse, match=f"team {team.id} is still referenced"):
        await store.teams.delete(team.id)
    await store.users.delete(user.id)
    await store.teams.delete(team.id)
    assert (await store.teams.list()).items == []
