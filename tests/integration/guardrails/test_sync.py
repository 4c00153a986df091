"""Guardrail policy propagation (``PolicySync``) against real stores (SQLite file and PostgreSQL) and real Redis:
start-up load, the local apply after a change, the version poll, the Redis message, and what a store fault or a
refused document leaves in force."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
import redis.asyncio as aioredis

from ferrogate.guardrails.sync import PolicySync
from ferrogate.store.postgres import PostgresStore
from ferrogate.store.sql import SqlStore
from tests.integration.backends import anyio_backend, db_url, open_url, store  # noqa: F401 (fixtures)
from tests.integration.limits.conftest import URL as REDIS_URL
from tests.integration.limits.conftest import require_redis
from tests.integration.store.conftest import scratch_database
from tests.support import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    yield from scratch_database("fg_guardsync_test")


class Registry:
    """Stands in for ``Guardrails``: records what is applied; refuses documents holding ``"refuse": true``."""

    def __init__(self) -> None:
        self.applied: list[dict[str, dict[str, Any]]] = []

    def apply(self, docs: Mapping[str, dict[str, Any]]) -> None:
        if any(doc.get("refuse") for doc in docs.values()):
            raise ValueError("rules[0].regex: rule 'bad' does not compile")
        self.applied.append(dict(docs))

    def validate(self, scope: str, doc: dict[str, Any]) -> None:
        if doc.get("refuse"):
            raise ValueError("refused")

    @property
    def current(self) -> dict[str, dict[str, Any]] | None:
        return self.applied[-1] if self.applied else None


async def until(check: Any, bound_s: float = 1.0) -> float:
    """Wait (polling, at most ``bound_s``) until ``check()`` holds; the seconds it took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < bound_s, f"not within {bound_s} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


@pytest.fixture
async def second(db_url: str, store: SqlStore) -> AsyncIterator[SqlStore]:  # noqa: F811
    """Another worker's (or instance's) store on the same database."""
    other = open_url(db_url)
    yield other
    await other.close()


async def test_start_up_load_applies_every_document(store: SqlStore) -> None:  # noqa: F811
    await store.guardrails.put("global", {"actions": {"pii": "redact"}}, "master")
    await store.guardrails.put("team:team_0123456789abcdef", {"responses": True}, "master")
    registry = Registry()
    sync = PolicySync(registry, store, None)
    assert await sync.load() is True
    assert registry.current == {
        "global": {"actions": {"pii": "redact"}},
        "team:team_0123456789abcdef": {"responses": True},
    }
    assert sync.version == 2
    assert await sync.load() is True and len(registry.applied) == 1  # the same version is not applied twice


async def test_an_empty_store_applies_no_overrides(store: SqlStore) -> None:  # noqa: F811
    registry = Registry()
    sync = PolicySync(registry, store, None)
    assert await sync.load() is True
    assert (registry.current, sync.version) == ({}, 0)


async def test_changed_applies_at_once_in_the_writing_worker(store: SqlStore) -> None:  # noqa: F811
    registry = Registry()
    sync = PolicySync(registry, store, None, poll_s=3600)
    await sync.load()
    await store.guardrails.put("key:key_0123456789abcdef", {"actions": {"secret": "block"}}, "master")
    await sync.changed()
    assert registry.current == {"key:key_0123456789abcdef": {"actions": {"secret": "block"}}}
    assert sync.version == 1


async def test_the_poll_picks_up_another_workers_change_within_a_second(
    store: SqlStore,  # noqa: F811
    second: SqlStore,
) -> None:
    registry = Registry()
    sync = PolicySync(registry, store, None)  # the default 0.5 s poll, no Redis
    await sync.load()
    poll = asyncio.create_task(sync.poll())
    try:
        await second.guardrails.put("global", {"responses": True}, "master")
        took = await until(lambda: registry.current == {"global": {"responses": True}}, bound_s=1.0)
        assert took < 1.0
        await second.guardrails.delete("global")
        await until(lambda: registry.current == {}, bound_s=1.0)
        assert sync.version == 2
    finally:
        poll.cancel()


async def test_a_store_fault_keeps_the_policies_in_force(store: SqlStore) -> None:  # noqa: F811
    await store.guardrails.put("global", {"actions": {"pii": "block"}}, "master")
    registry = Registry()
    sync = PolicySync(registry, store, None, poll_s=0.05, timeout_s=0.5)
    await sync.load()
    dead = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/none", min_size=0, max_size=1)
    sync.store = dead
    poll = asyncio.create_task(sync.poll())
    try:
        assert await sync.load() is False
        await asyncio.sleep(0.3)  # several failed polls
        assert registry.applied == [{"global": {"actions": {"pii": "block"}}}]  # never replaced by nothing
        assert sync.version == 1
        sync.store = store  # the store is back: the poll resumes
        await store.guardrails.put("global", {"actions": {"pii": "log"}}, "master")
        await until(lambda: registry.current == {"global": {"actions": {"pii": "log"}}})
    finally:
        poll.cancel()
        await dead.close()


async def test_a_refused_set_of_documents_leaves_the_previous_one_applied(store: SqlStore) -> None:  # noqa: F811
    await store.guardrails.put("global", {"responses": True}, "master")
    registry = Registry()
    sync = PolicySync(registry, store, None)
    await sync.load()
    await store.guardrails.put("team:team_0123456789abcdef", {"refuse": True}, "master")  # written around the API
    assert await sync.load() is False
    assert await sync.load() is False  # that version is not retried...
    assert (registry.applied, sync.version) == ([{"global": {"responses": True}}], 1)
    await store.guardrails.delete("team:team_0123456789abcdef")  # ...the next one is
    assert await sync.load() is True
    assert (registry.current, sync.version) == ({"global": {"responses": True}}, 3)


async def test_redis_carries_a_change_to_every_worker_at_once(store: SqlStore, second: SqlStore) -> None:  # noqa: F811
    """Polling every hour: only the Redis message can bring the change within the second."""
    require_redis()
    channel = f"ferrogate:test:guardrails:{secrets.token_hex(4)}"
    writer_registry, reader_registry = Registry(), Registry()
    writer = PolicySync(writer_registry, store, REDIS_URL, poll_s=3600, channel=channel)
    reader = PolicySync(reader_registry, second, REDIS_URL, poll_s=3600, channel=channel)
    await writer.load()
    await reader.load()
    listening = asyncio.create_task(reader.listen())
    watcher = aioredis.from_url(REDIS_URL)
    try:
        async with asyncio.timeout(5):
            while (await watcher.pubsub_numsub(channel))[0][1] < 1:  # noqa: ASYNC110 (subscribed before the change)
                await asyncio.sleep(0.01)
        await store.guardrails.put("global", {"deny_patterns": [{"id": "x", "regex": "forbidden"}]}, "master")
        await writer.changed()
        assert writer_registry.current == {"global": {"deny_patterns": [{"id": "x", "regex": "forbidden"}]}}
        took = await until(lambda: reader_registry.current == writer_registry.current, bound_s=1.0)
        assert took < 1.0 and reader.version == writer.version == 1
    finally:
        listening.cancel()
        await watcher.aclose()
        await writer.close()
        await reader.close()
