"""Guardrail policy documents: put/get/all/delete by scope, the change counter, and the cascade on team and key
deletes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from ferrogate.store import InUse, InvalidValue, NotFound
from ferrogate.store.sql import SqlStore
from tests.integration.store.conftest import Backend, key_hash

pytestmark = pytest.mark.anyio

DOC = {
    "actions": {"pii": "redact", "aws-access-key-id": "block"},
    "responses": True,
    "rules": [{"id": "ticket", "regex": r"TICKET-\d{6}", "keywords": ["ticket-"], "action": "log"}],
    "deny_patterns": [{"id": "no-jailbreak", "regex": "(?i)do anything now"}],
    "default_classification": "confidential",
}


async def test_new_store_has_no_documents_and_version_zero(store: SqlStore) -> None:
    assert await store.guardrails.all() == {}
    assert await store.guardrails.get("global") is None
    assert await store.guardrails.version() == 0


async def test_put_get_all_round_trip_and_replace(store: SqlStore) -> None:
    before = datetime.now(UTC)
    put = await store.guardrails.put("global", DOC, actor="master")
    assert (put.scope, put.doc, put.updated_by) == ("global", DOC, "master")
    assert before <= put.updated_at <= datetime.now(UTC) and put.updated_at.tzinfo is UTC
    assert await store.guardrails.get("global") == put
    team = await store.guardrails.put("team:team_0123456789abcdef", {"actions": {"secret": "block"}}, "key_a")
    assert await store.guardrails.all() == {"global": DOC, "team:team_0123456789abcdef": team.doc}
    replaced = await store.guardrails.put("global", {"responses": False}, actor="key_b")
    assert (replaced.doc, replaced.updated_by) == ({"responses": False}, "key_b")  # replaced whole, not merged
    assert replaced.updated_at >= put.updated_at
    assert (await store.guardrails.all())["global"] == {"responses": False}


async def test_every_change_raises_the_version_by_one(store: SqlStore) -> None:
    g = store.guardrails
    await g.put("global", DOC, "master")
    assert await g.version() == 1
    await g.put("global", DOC, "master")  # the same document again is still a change
    await g.put("key:key_0123456789abcdef", {"responses": True}, "master")
    assert await g.version() == 3
    assert await g.delete("key:key_0123456789abcdef") is True
    assert await g.version() == 4
    assert await g.delete("key:key_0123456789abcdef") is False  # nothing to drop: no change
    assert await g.version() == 4
    assert await g.get("key:key_0123456789abcdef") is None


async def test_concurrent_puts_count_every_one(store: SqlStore) -> None:
    g = store.guardrails
    await asyncio.gather(*(g.put(f"team:team_{n:016x}", {"responses": bool(n % 2)}, "master") for n in range(12)))
    assert await g.version() == 12
    assert len(await g.all()) == 12


@pytest.mark.parametrize("scope", ["", "team", "team:", "key:", "user:user_00", "GLOBAL", "global:x"])
async def test_bad_scopes_are_refused(store: SqlStore, scope: str) -> None:
    with pytest.raises(InvalidValue, match="expected global, team:<id> or key:<id>"):
        await store.guardrails.put(scope, {}, "master")
    with pytest.raises(InvalidValue):
        await store.guardrails.get(scope)
    with pytest.raises(InvalidValue):
        await store.guardrails.delete(scope)
    assert await store.guardrails.version() == 0


async def test_a_document_must_be_a_json_object(store: SqlStore) -> None:
    with pytest.raises(InvalidValue, match="a JSON object"):
        await store.guardrails.put("global", ["not", "an", "object"], "master")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="JSON-serialisable"):
        await store.guardrails.put("global", {"x": {1, 2}}, "master")
    assert await store.guardrails.version() == 0


async def test_deleting_a_team_or_key_drops_its_override_in_the_same_transaction(store: SqlStore) -> None:
    g = store.guardrails
    team = await store.teams.create("ml")
    key = await store.keys.create(key_hash("k"), "fg-abcde", team_id=team.id)
    other = await store.teams.create("ops")
    await g.put(f"team:{team.id}", {"actions": {"pii": "block"}}, "master")
    await g.put(f"key:{key.id}", {"responses": True}, "master")
    await g.put(f"team:{other.id}", {"responses": True}, "master")
    assert await g.version() == 3
    with pytest.raises(InUse):  # the team still has a key: nothing is deleted, its override stays
        await store.teams.delete(team.id)
    assert (await g.version(), f"team:{team.id}" in await g.all()) == (3, True)
    await store.keys.delete(key.id)
    assert await g.get(f"key:{key.id}") is None
    assert await g.version() == 4
    await store.teams.delete(team.id)
    assert set(await g.all()) == {f"team:{other.id}"}
    assert await g.version() == 5
    with pytest.raises(NotFound):
        await store.teams.delete(team.id)
    plain = await store.teams.create("no-override")
    await store.teams.delete(plain.id)  # without an override the counter stays
    assert await g.version() == 5


async def test_a_second_store_on_the_database_sees_each_change(store: SqlStore, backend: Backend) -> None:
    """What another worker or instance does: read the version, then the documents."""
    other = backend.open()
    assert await other.guardrails.version() == 0
    await store.guardrails.put("global", DOC, "master")
    assert await other.guardrails.version() == 1
    assert await other.guardrails.all() == {"global": DOC}
