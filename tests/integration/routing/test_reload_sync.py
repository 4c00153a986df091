"""Routing overrides reaching every worker (``ConfigReloader``) against real stores (SQLite file and PostgreSQL) and
real Redis: the local apply after an admin change, the version poll, the Redis message, and a store fault."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from ferrogate.config import Config, load_config_text
from ferrogate.routing.reload import ConfigReloader
from ferrogate.store.postgres import PostgresStore
from ferrogate.store.sql import SqlStore
from tests.integration.backends import anyio_backend, db_url, open_url, store  # noqa: F401 (fixtures)
from tests.integration.limits.conftest import URL as REDIS_URL
from tests.integration.limits.conftest import require_redis
from tests.integration.store.conftest import scratch_database
from tests.support import free_port

pytestmark = pytest.mark.anyio

FILE = """
upstreams: [{name: a, provider: mock}]
model_groups: [{name: fast, deployments: [{upstream: a, model: small}]}]
"""
GROUP = {"name": "fast", "deployments": [{"upstream": "a", "model": "large"}]}


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    yield from scratch_database("fg_routesync_test")


@pytest.fixture
async def second(db_url: str, store: SqlStore) -> AsyncIterator[SqlStore]:  # noqa: F811
    """Another worker's (or instance's) store on the same database."""
    other = open_url(db_url)
    yield other
    await other.close()


class Router:
    def __init__(self) -> None:
        self.reloads: list[Config] = []

    def reload(self, config: Config) -> None:
        self.reloads.append(config)


def model_of(reloader: ConfigReloader) -> str | None:
    return reloader.config.model_groups[0].deployments[0].model


def reloader(on: SqlStore, redis_url: str | None = None, **kw: Any) -> ConfigReloader:
    return ConfigReloader(None, on, Router(), redis_url, config=load_config_text(FILE, "file"), **kw)


async def until(check: Callable[[], bool], bound_s: float = 1.0) -> float:
    """Wait (polling, at most ``bound_s``) until ``check()`` holds; the seconds it took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < bound_s, f"not within {bound_s} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_an_admin_change_applies_at_once_in_the_writing_worker(store: SqlStore) -> None:  # noqa: F811
    writer = reloader(store, poll_s=3600)
    assert await writer.load() is True
    await store.routing.put("model_group", "fast", GROUP, "master")
    await writer.apply_admin_change()
    assert (model_of(writer), writer.version) == ("large", 1)
    assert writer.router.reloads == [writer.config]  # type: ignore[attr-defined]


async def test_the_poll_picks_up_another_workers_change_within_a_second(
    store: SqlStore,  # noqa: F811
    second: SqlStore,
) -> None:
    reader = reloader(store)  # the default 0.5 s poll, no Redis
    await reader.load()
    poll = asyncio.create_task(reader.poll())
    try:
        await second.routing.put("model_group", "fast", GROUP, "master")
        assert await until(lambda: model_of(reader) == "large") < 1.0
        await second.routing.delete("model_group", "fast")
        await until(lambda: model_of(reader) == "small")
        assert reader.version == 2
    finally:
        poll.cancel()


async def test_redis_carries_a_change_to_every_worker_at_once(store: SqlStore, second: SqlStore) -> None:  # noqa: F811
    """Polling every hour: only the Redis message can bring the change within the second."""
    require_redis()
    channel = f"ferrogate:test:routing:{secrets.token_hex(4)}"
    writer = reloader(store, REDIS_URL, poll_s=3600, channel=channel)
    reader = reloader(second, REDIS_URL, poll_s=3600, channel=channel)
    await writer.load()
    await reader.load()
    listening = asyncio.create_task(reader.listen())
    watcher = aioredis.from_url(REDIS_URL)
    try:
        async with asyncio.timeout(5):
            while (await watcher.pubsub_numsub(channel))[0][1] < 1:  # noqa: ASYNC110 (subscribed before the change)
                await asyncio.sleep(0.01)
        await store.routing.put("model_group", "fast", GROUP, "master")
        await writer.apply_admin_change()
        assert await until(lambda: model_of(reader) == "large") < 1.0
        assert reader.version == writer.version == 1
    finally:
        listening.cancel()
        await watcher.aclose()
        await writer.close()
        await reader.close()


async def test_a_store_fault_keeps_the_running_configuration(store: SqlStore) -> None:  # noqa: F811
    await store.routing.put("model_group", "fast", GROUP, "master")
    reader = reloader(store, poll_s=0.05, timeout_s=0.5)
    await reader.load()
    dead = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/none", min_size=0, max_size=1)
    reader.store = dead
    poll = asyncio.create_task(reader.poll())
    try:
        assert await reader.load() is False
        await asyncio.sleep(0.3)  # several failed polls
        assert (model_of(reader), reader.version) == ("large", 1)  # never back to the file's because the store blinked
        reader.store = store  # the store is back: the poll resumes
        await store.routing.delete("model_group", "fast")
        await until(lambda: model_of(reader) == "small")
    finally:
        poll.cancel()
        await dead.close()
