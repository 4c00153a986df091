"""Routing overrides: put/get/overrides/delete by kind and name, tombstones, the rules row, the change counter and
the expected-version check, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from ferrogate.store import Conflict, InvalidValue
from ferrogate.store.routing import RULES, RoutingOverrides
from ferrogate.store.sql import SqlStore
from tests.integration.store.conftest import Backend

pytestmark = pytest.mark.anyio

EU = {"name": "eu", "provider": "openai", "base_url": "https://eu.example.com/v1", "api_key": "${EU_KEY}"}
FAST = {"name": "fast", "deployments": [{"upstream": "eu", "model": "gpt-4o-mini"}], "strategy": "latency"}
RULE_TEXT = '@id("no-slow")\nforbid(principal, action, resource) when { resource.latency_ms > 900 };'


async def test_new_store_has_no_overrides_and_version_zero(store: SqlStore) -> None:
    assert await store.routing.overrides() == RoutingOverrides()
    assert await store.routing.get("upstream", "eu") is None
    assert await store.routing.version() == 0


async def test_put_get_round_trip_replace_and_tombstone(store: SqlStore) -> None:
    r = store.routing
    before = datetime.now(UTC)
    put = await r.put("upstream", "eu", EU, actor="master")
    assert (put.kind, put.name, put.doc, put.updated_by, put.deleted) == ("upstream", "eu", EU, "master", False)
    assert before <= put.updated_at <= datetime.now(UTC) and put.updated_at.tzinfo is UTC
    assert await r.get("upstream", "eu") == put
    assert await r.get("model_group", "eu") is None  # the kind is part of the key
    replaced = await r.put("upstream", "eu", {"name": "eu", "provider": "mock"}, actor="key_b")
    assert (replaced.doc, replaced.updated_by) == ({"name": "eu", "provider": "mock"}, "key_b")  # whole, not merged
    gone = await r.put("model_group", "old", None, actor="master")  # a tombstone: the file's "old" is deleted
    assert (gone.doc, gone.deleted) == (None, True)
    assert (await r.get("model_group", "old")) == gone


async def test_overrides_gather_every_kind_with_the_version(store: SqlStore) -> None:
    r = store.routing
    await r.put("upstream", "eu", EU, "master")
    await r.put("model_group", "fast", FAST, "master")
    await r.put("model_group", "old", None, "master")
    await r.put("rules", RULES, {"text": RULE_TEXT}, "master")
    got = await r.overrides()
    assert got == RoutingOverrides({"eu": EU}, {"fast": FAST, "old": None}, RULE_TEXT, 4)
    assert await r.delete("rules", RULES) is True
    assert (await r.overrides()).rules is None


async def test_every_change_raises_the_version_by_one(store: SqlStore) -> None:
    r = store.routing
    await r.put("upstream", "eu", EU, "master")
    assert await r.version() == 1
    await r.put("upstream", "eu", EU, "master")  # the same document again is still a change
    await r.put("model_group", "fast", None, "master")
    assert await r.version() == 3
    assert await r.delete("model_group", "fast") is True  # a tombstone dropped: the file's entry applies again
    assert await r.version() == 4
    assert await r.delete("model_group", "fast") is False  # nothing to drop: no change
    assert await r.version() == 4


async def test_expect_version_refuses_a_write_on_top_of_another(store: SqlStore) -> None:
    r = store.routing
    await r.put("upstream", "eu", EU, "master", expect_version=0)
    with pytest.raises(Conflict, match="changed since version 0"):
        await r.put("model_group", "fast", FAST, "master", expect_version=0)
    assert (await r.version(), await r.get("model_group", "fast")) == (1, None)  # nothing written
    with pytest.raises(Conflict):
        await r.delete("upstream", "eu", expect_version=0)
    assert (await r.version(), (await r.overrides()).upstreams) == (1, {"eu": EU})  # nothing dropped
    assert await r.delete("upstream", "eu", expect_version=1) is True
    assert await r.version() == 2


async def test_concurrent_writes_expecting_one_version_let_exactly_one_through(store: SqlStore) -> None:
    r = store.routing
    results = await asyncio.gather(
        *(r.put("model_group", f"g{n}", FAST, "master", expect_version=0) for n in range(8)), return_exceptions=True
    )
    assert sum(isinstance(x, Conflict) for x in results) == 7
    assert await r.version() == 1
    assert len((await r.overrides()).model_groups) == 1


async def test_concurrent_puts_count_every_one(store: SqlStore) -> None:
    r = store.routing
    await asyncio.gather(*(r.put("upstream", f"u{n}", {"name": f"u{n}", "provider": "mock"}, "m") for n in range(12)))
    assert await r.version() == 12
    assert sorted((await r.overrides()).upstreams) == sorted(f"u{n}" for n in range(12))


@pytest.mark.parametrize(
    ("kind", "name", "doc", "message"),
    [
        ("route", "x", {}, "expected upstream, model_group or rules"),
        ("upstream", "", {}, "a name of 1 to 128 characters"),
        ("upstream", "x" * 129, {}, "a name of 1 to 128 characters"),
        ("upstream", "x", ["not", "an", "object"], "a JSON object"),
        ("upstream", "x", {"x": {1, 2}}, "JSON-serialisable"),
        ("rules", RULES, {"txt": "forbid"}, "text"),
    ],
)
async def test_bad_writes_are_refused(store: SqlStore, kind: str, name: str, doc: object, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        await store.routing.put(kind, name, doc, "master")  # type: ignore[arg-type]
    assert await store.routing.version() == 0


async def test_a_second_store_on_the_database_sees_each_change(store: SqlStore, backend: Backend) -> None:
    """What another worker or instance does: read the version, then the overrides."""
    other = backend.open()
    assert await other.routing.version() == 0
    await store.routing.put("upstream", "eu", EU, "master")
    assert await other.routing.version() == 1
    assert (await other.routing.overrides()).upstreams == {"eu": EU}


def test_with_change_sets_tombstones_and_drops() -> None:
    base = RoutingOverrides({"eu": EU}, {"old": None}, None, 3)
    assert base.with_change("model_group", "fast", FAST).model_groups == {"old": None, "fast": FAST}
    assert base.with_change("upstream", "eu", None).upstreams == {"eu": None}
    assert base.with_change("upstream", "eu", None, drop=True).upstreams == {}
    assert base.with_change("rules", RULES, {"text": RULE_TEXT}).rules == RULE_TEXT
    assert base.with_change("rules", RULES, None, drop=True).rules is None
    assert base.upstreams == {"eu": EU} and base.version == 3  # the original is unchanged
