"""Keys: creation rules, lookups by hash, rotation grace, revocation, last-used batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ferrogate.store import Conflict, InvalidReference, InvalidValue, NotFound
from ferrogate.store.records import Team
from ferrogate.store.sql import SqlStore
from tests.integration.store.conftest import key_hash

pytestmark = pytest.mark.anyio


@pytest.fixture
async def team(store: SqlStore) -> Team:
    return await store.teams.create("ml")


async def test_create_get_and_lookup(store: SqlStore, team: Team) -> None:
    digest = key_hash()
    expires = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    key = await store.keys.create(
        digest,
        "fg-AbCdE",
        name="ci",
        team_id=team.id,
        allowed_models=["gpt-4o-mini"],
        expires_at=expires,
        rpm=60,
        tpm=1000,
        budget=2.5,
        metadata={"env": "ci"},
    )
    assert key.id.startswith("key_") and len(key.id) == 20
    assert (key.key_hash, key.prefix, key.name, key.role, key.team_id, key.user_id) == (
        digest,
        "fg-AbCdE",
        "ci",
        "member",
        team.id,
        None,
    )
    assert (key.allowed_models, key.expires_at, key.rpm, key.tpm, key.budget) == (
        ("gpt-4o-mini",),
        expires,
        60,
        1000,
        2.5,
    )
    assert (key.last_used_at, key.revoked_at, key.previous_hash, key.previous_expires_at) == (None,) * 4
    assert await store.keys.get(key.id) == key
    match = await store.keys.get_by_hash(digest)
    assert match is not None and (match.key, match.matched) == (key, "current")
    assert await store.keys.get_by_hash(key_hash()) is None


async def test_inherit_fields_default_to_none(store: SqlStore, team: Team) -> None:
    key = await store.keys.create(key_hash(), "fg-AbCdE", team_id=team.id)
    assert (key.allowed_models, key.rpm, key.tpm, key.budget, key.expires_at) == (None,) * 5


async def test_expiry_in_non_utc_zone_is_stored_as_utc(store: SqlStore, team: Team) -> None:
    paris = datetime(2030, 6, 1, 12, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    key = await store.keys.create(key_hash(), "fg-AbCdE", team_id=team.id, expires_at=paris)
    assert key.expires_at == datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    assert key.expires_at is not None and key.expires_at.utcoffset() == timedelta(0)


async def test_admin_keys_need_no_team(store: SqlStore) -> None:
    for role in ("admin", "auditor"):
        key = await store.keys.create(key_hash(), "fg-Admin", role=role)
        assert (key.role, key.team_id) == (role, None)


@pytest.mark.parametrize("role", ["member", "team_admin"])
async def test_team_scoped_keys_need_a_team(store: SqlStore, role: str) -> None:
    with pytest.raises(InvalidValue, match=f"team_id None is invalid: expected a team id for a {role} key"):
        await store.keys.create(key_hash(), "fg-AbCdE", role=role)


async def test_raw_keys_are_refused(store: SqlStore, team: Team) -> None:
    with pytest.raises(InvalidValue, match=r"key_hash .* never a raw key"):
        await store.keys.create("fg-AbCdEfGhIjKlMnOp", "fg-AbCdE", team_id=team.id)
    assert (await store.keys.list()).items == []


async def test_duplicate_hash_conflicts(store: SqlStore, team: Team) -> None:
    digest = key_hash()
    await store.keys.create(digest, "fg-AbCdE", team_id=team.id)
    with pytest.raises(Conflict, match="key with key_hash") as info:
        await store.keys.create(digest, "fg-AbCdE", team_id=team.id)
    assert (info.value.field, info.value.value) == ("key_hash", digest)


async def test_unknown_owner_is_an_invalid_reference(store: SqlStore, team: Team) -> None:
    with pytest.raises(InvalidReference, match="team_id 'team_0000000000000000'"):
        await store.keys.create(key_hash(), "fg-AbCdE", team_id="team_0000000000000000")
    with pytest.raises(InvalidReference, match="user_id 'usr_0000000000000000'") as info:
        await store.keys.create(key_hash(), "fg-AbCdE", team_id=team.id, user_id="usr_0000000000000000")
    assert info.value.field == "user_id"
    assert (await store.keys.list()).items == []


async def test_partial_update(store: SqlStore, team: Team) -> None:
    key = await store.keys.create(key_hash(), "fg-AbCdE", team_id=team.id, rpm=5, allowed_models=["a"])
    changed = await store.keys.update(key.id, {"allowed_models": None, "name": "renamed", "budget": 1})
    assert (changed.allowed_models, changed.name, changed.budget, changed.rpm) == (None, "renamed", 1.0, 5)
    assert (changed.key_hash, changed.created_at) == (key.key_hash, key.created_at)
    assert await store.keys.get(key.id) == changed


@pytest.mark.parametrize("field", ["key_hash", "team_id", "user_id", "role", "revoked_at", "previous_hash"])
async def test_update_refuses_read_only_fields(store: SqlStore, team: Team, field: str) -> None:
    key = await store.keys.create(key_hash(), "fg-AbCdE", team_id=team.id)
    with pytest.raises(InvalidValue, match=f"^{field} "):
        await store.keys.update(key.id, {field: None})
    assert await store.keys.get(key.id) == key


async def test_revoke_is_idempotent(store: SqlStore, team: Team) -> None:
    key = await store.keys.create(key_hash(), "fg-AbCdE", team_id=team.id)
    now = datetime.now(UTC)
    assert key.usable(now)
    first = await store.keys.revoke(key.id, at=datetime(2025, 5, 1, tzinfo=UTC))
    assert first.revoked_at == datetime(2025, 5, 1, tzinfo=UTC)
    assert not first.usable(now)
    again = await store.keys.revoke(key.id)
    assert again.revoked_at == first.revoked_at
    match = await store.keys.get_by_hash(key.key_hash)
    assert match is not None and match.key.revoked_at == first.revoked_at
    assert [k.id for k in (await store.keys.list(revoked=True)).items] == [key.id]
    with pytest.raises(NotFound):
        await store.keys.revoke("key_0000000000000000")


async def test_expired_key_is_not_usable(store: SqlStore, team: Team) -> None:
    now = datetime.now(UTC)
    key = await store.keys.create(key_hash(), "fg-AbCdE", team_id=team.id, expires_at=now - timedelta(seconds=1))
    assert not key.usable(now)


async def test_rotation_keeps_the_old_hash_until_grace_ends(store: SqlStore, team: Team) -> None:
    old, new = key_hash("old"), key_hash("new")
    key = await store.keys.create(old, "fg-OldOl", team_id=team.id)
    grace = datetime.now(UTC) + timedelta(hours=1)
    rotated = await store.keys.rotate(key.id, new, "fg-NewNe", grace)
    assert (rotated.key_hash, rotated.prefix, rotated.previous_hash, rotated.previous_expires_at) == (
        new,
        "fg-NewNe",
        old,
        grace,
    )
    current = await store.keys.get_by_hash(new)
    assert current is not None and (current.key.id, current.matched) == (key.id, "current")
    during = await store.keys.get_by_hash(old, now=grace - timedelta(microseconds=1))
    assert during is not None and (during.key.id, during.matched) == (key.id, "previous")
    assert await store.keys.get_by_hash(old, now=grace) is None
    assert await store.keys.get_by_hash(old, now=grace + timedelta(seconds=1)) is None
    # a second rotation replaces the grace hash: the first one stops working at once
    newest = key_hash("newest")
    await store.keys.rotate(key.id, newest, "fg-Newst", grace)
    assert await store.keys.get_by_hash(old, now=grace - timedelta(seconds=1)) is None
    again = await store.keys.get_by_hash(new, now=grace - timedelta(seconds=1))
    assert again is not None and again.matched == "previous"


async def test_rotation_to_a_taken_hash_changes_nothing(store: SqlStore, team: Team) -> None:
    a = await store.keys.create(key_hash(), "fg-AAAAA", team_id=team.id)
    b = await store.keys.create(key_hash(), "fg-BBBBB", team_id=team.id)
    with pytest.raises(Conflict, match="key_hash"):
        await store.keys.rotate(a.id, b.key_hash, "fg-BBBBB", datetime.now(UTC) + timedelta(hours=1))
    assert await store.keys.get(a.id) == a


async def test_rotation_refuses_revoked_and_missing_keys(store: SqlStore, team: Team) -> None:
    key = await store.keys.create(key_hash(), "fg-AbCdE", team_id=team.id)
    await store.keys.revoke(key.id)
    grace = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(Conflict, match=f"key {key.id} is revoked"):
        await store.keys.rotate(key.id, key_hash(), "fg-x", grace)
    with pytest.raises(NotFound):
        await store.keys.rotate("key_0000000000000000", key_hash(), "fg-x", grace)
    with pytest.raises(InvalidValue, match="grace_until"):
        await store.keys.rotate(key.id, key_hash(), "fg-x", datetime(2030, 1, 1))


async def test_touch_last_used_in_batches_never_goes_back(store: SqlStore, team: Team) -> None:
    keys = [await store.keys.create(key_hash(i), f"fg-{i}", team_id=team.id) for i in range(3)]
    t1 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    await store.keys.touch_last_used([keys[0].id, keys[1].id, keys[0].id, "key_0000000000000000"], t1)
    got = [await store.keys.get(k.id) for k in keys]
    assert [k.last_used_at for k in got] == [t1, t1, None]
    await store.keys.touch_last_used([keys[0].id], t1 - timedelta(hours=1))
    assert (await store.keys.get(keys[0].id)).last_used_at == t1
    t2 = t1 + timedelta(minutes=5)
    await store.keys.touch_last_used([k.id for k in keys], t2)
    assert [(await store.keys.get(k.id)).last_used_at for k in keys] == [t2, t2, t2]
    await store.keys.touch_last_used([], t2)


async def test_delete(store: SqlStore, team: Team) -> None:
    key = await store.keys.create(key_hash(), "fg-AbCdE", team_id=team.id)
    await store.keys.delete(key.id)
    assert await store.keys.get_by_hash(key.key_hash) is None
    with pytest.raises(NotFound, match=f"key {key.id} not found"):
        await store.keys.delete(key.id)
