"""The Redis limiter against a real Redis: exact across clients and processes, sane values, typed errors.

Redis is ``FERROGATE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``); the tests are skipped, with
the reason, when it is unreachable. Every test uses keys of its own.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import secrets
import time

import pytest

from ferrogate._core import InvalidRateError
from ferrogate.limits import RedisLimiter
from ferrogate.limits.redis import KEY_PREFIX, MAX_DEBT_PERIODS
from tests.integration.limits.conftest import URL, require_redis

from .workers import hammer_redis, hammer_redis_clients


@pytest.fixture(scope="module", autouse=True)
def redis_up() -> None:
    require_redis()


def fresh_key() -> str:
    return f"test:{secrets.token_hex(6)}"


def test_clients_and_processes_admit_exactly_the_limit() -> None:
    key = fresh_key()
    start_at = time.time() + 1.5
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        others = pool.starmap_async(hammer_redis, [(URL, key, 50, 3600.0, start_at, 1.0, 2)] * 2)
        here = asyncio.run(hammer_redis_clients(URL, key, 50, 3600.0, start_at, 1.0, 4))
        counts = [here, *others.get(timeout=30)]
    assert sum(counts) == 50, counts


def test_decision_values_match_the_rust_arithmetic() -> None:
    async def scenario() -> None:
        limiter = RedisLimiter.from_url(URL)
        key = fresh_key()
        try:
            start = time.monotonic()
            first = await limiter.check(key, 100, 60.0)
            assert first.allowed and math.floor(first.remaining) == 99 and first.limit == 100
            assert first.retry_after_s == 0.0 and first.reset_s == pytest.approx(0.6, abs=0.01)
            for _ in range(99):
                assert (await limiter.check(key, 100, 60.0)).allowed
            denied = await limiter.check(key, 100, 60.0, 3)
            # the bucket refills while the 100 checks run (a slow machine takes tens of ms): the expected
            # values move by the time spent, measured here; the tolerance stays as it was
            spent = time.monotonic() - start
            assert not denied.allowed and denied.remaining < 1
            assert denied.retry_after_s == pytest.approx(1.8 - spent, abs=0.05)
            assert denied.reset_s == pytest.approx(60.0 - spent, abs=0.05)
            never = await limiter.check(fresh_key(), 10, 60.0, 11)
            assert not never.allowed and never.retry_after_s == math.inf and never.remaining == 10
            # Reserve 800 tokens, settle at 300: 700 left; an over-refund only fills the bucket.
            tpm = fresh_key()
            taken = time.monotonic()
            assert (await limiter.check(tpm, 1000, 60.0, 800)).allowed
            refill = (time.monotonic() - taken) * 1000 / 60.0  # tokens come back while we look
            assert (await limiter.peek(tpm, 1000, 60.0))[0] == pytest.approx(200 + refill, abs=0.5)
            await limiter.refund(tpm, 1000, 60.0, 500)
            refill = (time.monotonic() - taken) * 1000 / 60.0
            assert (await limiter.peek(tpm, 1000, 60.0))[0] == pytest.approx(700 + refill, abs=0.5)
            await limiter.refund(tpm, 1000, 60.0, 10_000)
            assert await limiter.peek(tpm, 1000, 60.0) == (1000.0, 0.0)
            with pytest.raises(InvalidRateError):
                await limiter.check(key, 0, 60.0)
            with pytest.raises(InvalidRateError):
                await limiter.check(key, 10, 60.0, -1)
        finally:
            await limiter.aclose()

    asyncio.run(scenario())


def test_buckets_expire_when_full_again() -> None:
    async def scenario() -> None:
        limiter = RedisLimiter.from_url(URL)
        key = fresh_key()
        try:
            assert (await limiter.check(key, 1000, 1.0)).allowed  # full again after 1 ms
            ttl = await limiter._client.pttl(KEY_PREFIX + key)
            assert 0 < ttl <= 2
            await asyncio.sleep(0.01)
            assert await limiter._client.exists(KEY_PREFIX + key) == 0
        finally:
            await limiter.aclose()

    asyncio.run(scenario())


def test_a_charged_bucket_refuses_until_it_has_refilled() -> None:
    async def scenario() -> None:
        limiter = RedisLimiter.from_url(URL)
        key = fresh_key()
        try:
            assert limiter.sync_core is None
            # Limit 10 per second: reserve 8, then the request turned out to need 7 more (only 2 were left).
            assert (await limiter.check(key, 10, 1.0, 8)).allowed
            await limiter.charge(key, 10, 1.0, 7)
            remaining, reset_s = await limiter.peek(key, 10, 1.0)
            assert remaining == 0.0 and reset_s == pytest.approx(1.5, abs=0.02)  # half a period of debt
            ttl = await limiter._client.pttl(KEY_PREFIX + key)  # expires when full again, past the debt
            assert 1400 < ttl <= 1502
            refused = await limiter.check(key, 10, 1.0)
            assert not refused.allowed and refused.retry_after_s == pytest.approx(0.6, abs=0.02)
            await asyncio.sleep(refused.retry_after_s - 0.3)  # 0.3 s short of it
            assert not (await limiter.check(key, 10, 1.0)).allowed
            await asyncio.sleep(0.35)
            assert (await limiter.check(key, 10, 1.0)).allowed
        finally:
            await limiter.aclose()

    asyncio.run(scenario())


def test_charge_debt_is_bounded_like_the_rust_table() -> None:
    async def scenario() -> None:
        limiter = RedisLimiter.from_url(URL)
        key = fresh_key()
        try:
            await limiter.charge(key, 100, 60.0, 1e9)  # capped at MAX_DEBT_PERIODS periods ahead
            remaining, reset_s = await limiter.peek(key, 100, 60.0)
            assert remaining == 0.0 and reset_s == pytest.approx(MAX_DEBT_PERIODS * 60.0, abs=0.05)
            assert 119_000 < await limiter._client.pttl(KEY_PREFIX + key) <= 120_002
            await limiter.charge(key, 100, 60.0, 50)  # at the cap already: unchanged
            assert (await limiter.peek(key, 100, 60.0))[1] == pytest.approx(120.0, abs=0.05)
            refused = await limiter.check(key, 100, 60.0)
            assert not refused.allowed and refused.retry_after_s == pytest.approx(60.6, abs=0.05)
            untouched = fresh_key()
            await limiter.charge(untouched, 100, 60.0, 0)
            assert await limiter._client.exists(KEY_PREFIX + untouched) == 0
            with pytest.raises(InvalidRateError):
                await limiter.charge(key, 100, 60.0, -1)
        finally:
            await limiter.aclose()

    asyncio.run(scenario())
