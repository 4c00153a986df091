"""Users: CRUD, uniqueness within a team, foreign keys, roles."""

from __future__ import annotations

import pytest

from ferrogate.store import Conflict, InUse, InvalidReference, InvalidValue, NotFound
from ferrogate.store.sql import SqlStore
from tests.integration.store.conftest import key_hash

pytestmark = pytest.mark.anyio


async def test_crud(store: SqlStore) -> None:
    team = await store.teams.create("ml")
    user = await store.users.create(team.id, "ana", role="team_admin", email="ana@example.com", metadata={"k": "v"})
    assert user.id.startswith("usr_") and len(user.id) == 20
    assert (user.team_id, user.name, user.role, user.email, user.metadata) == (
        team.id,
        "ana",
        "team_admin",
        "ana@example.com",
        {"k": "v"},
    )
    assert await store.users.get(user.id) == user
    changed = await store.users.update(user.id, {"role": "auditor", "email": None})
    assert (changed.role, changed.email, changed.name, changed.metadata) == ("auditor", None, "ana", {"k": "v"})
    await store.users.delete(user.id)
    with pytest.raises(NotFound, match=f"user {user.id} not found"):
        await store.users.get(user.id)


async def test_default_role_is_member(store: SqlStore) -> None:
    team = await store.teams.create("ml")
    assert (await store.users.create(team.id, "bo")).role == "member"


async def test_name_is_unique_within_a_team_only(store: SqlStore) -> None:
    ml, ops = await store.teams.create("ml"), await store.teams.create("ops")
    await store.users.create(ml.id, "ana")
    await store.users.create(ops.id, "ana")
    with pytest.raises(Conflict, match="user with name 'ana' already exists") as info:
        await store.users.create(ml.id, "ana")
    assert info.value.field == "name"
    bo = await store.users.create(ml.id, "bo")
    with pytest.raises(Conflict):
        await store.users.update(bo.id, {"team_id": ops.id, "name": "ana"})
    assert (await store.users.get(bo.id)).team_id == ml.id


async def test_unknown_team_is_an_invalid_reference(store: SqlStore) -> None:
    with pytest.raises(InvalidReference, match="team_id 'team_0000000000000000' does not exist") as info:
        await store.users.create("team_0000000000000000", "ana")
    assert (info.value.field, info.value.value) == ("team_id", "team_0000000000000000")
    team = await store.teams.create("ml")
    user = await store.users.create(team.id, "ana")
    with pytest.raises(InvalidReference, match="team_id"):
        await store.users.update(user.id, {"team_id": "team_nope"})
    assert (await store.users.get(user.id)).team_id == team.id
    assert (await store.users.list()).items == [user]


async def test_unknown_role_is_refused(store: SqlStore) -> None:
    team = await store.teams.create("ml")
    with pytest.raises(InvalidValue, match="role 'root' is invalid"):
        await store.users.create(team.id, "ana", role="root")
    with pytest.raises(InvalidValue, match="role"):
        await store.users.list(role="root")


async def test_delete_refuses_a_user_with_keys(store: SqlStore) -> None:
    team = await store.teams.create("ml")
    user = await store.users.create(team.id, "ana")
    key = await store.keys.create(key_hash(), "fg-AbCdE", team_id=team.id, user_id=user.id)
    with pytest.raises(InUse, match=f"user {user.id}"):
        await store.users.delete(user.id)
    await store.keys.delete(key.id)
    await store.users.delete(user.id)


async def test_list_filters(store: SqlStore) -> None:
    ml, ops = await store.teams.create("ml"), await store.teams.create("ops")
    a = await store.users.create(ml.id, "a", role="admin")
    b = await store.users.create(ml.id, "b")
    c = await store.users.create(ops.id, "c")
    assert (await store.users.list()).items == [a, b, c]
    assert (await store.users.list(team_id=ml.id)).items == [a, b]
    assert (await store.users.list(role="member")).items == [b, c]
    assert (await store.users.list(team_id=ops.id, role="admin")).items == []
