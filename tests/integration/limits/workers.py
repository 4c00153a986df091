"""Worker-process bodies for the cross-process limit tests (importable by ``spawn`` children)."""

from __future__ import annotations

import asyncio
import time

from ferrogate.limits import LocalLimiter, RedisLimiter


def wait_until(start_at: float) -> None:
    time.sleep(max(0.0, start_at - time.time()))


def hammer_local(
    path: str, capacity: int, key: str, limit: float, period_s: float, start_at: float, seconds: float
) -> int:
    """Check ``key`` on the shared table in a tight loop for ``seconds``; return how many were admitted."""
    limiter = LocalLimiter(path, capacity)
    core = limiter.core
    wait_until(start_at)
    admitted = 0
    deadline = start_at + seconds
    while time.time() < deadline:
        admitted += core.check(key, limit, period_s)[0]
    return admitted


async def hammer_redis_clients(
    url: str, key: str, limit: float, period_s: float, start_at: float, seconds: float, clients: int
) -> int:
    """``clients`` concurrent asyncio clients, each with its own connection pool, checking ``key``."""
    limiters = [RedisLimiter.from_url(url) for _ in range(clients)]

    async def one(limiter: RedisLimiter) -> int:
        admitted = 0
        deadline = start_at + seconds
        while time.time() < deadline:
            admitted += (await limiter.check(key, limit, period_s)).allowed
        return admitted

    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        return sum(await asyncio.gather(*(one(limiter) for limiter in limiters)))
    finally:
        for limiter in limiters:
            await limiter.aclose()


def hammer_redis(
    url: str, key: str, limit: float, period_s: float, start_at: float, seconds: float, clients: int
) -> int:
    """:func:`hammer_redis_clients` in a process of its own."""
    return asyncio.run(hammer_redis_clients(url, key, limit, period_s, start_at, seconds, clients))
