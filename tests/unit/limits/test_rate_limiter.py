"""ferrogate._core.RateLimiter and LocalLimiter: GCRA decisions, refunds, the shared file, eviction."""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path

import pytest

from ferrogate._core import InvalidRateError, LimiterError, RateLimiter
from ferrogate.limits import Decision, LocalLimiter, default_table_path


@pytest.mark.parametrize(
    ("limit", "period_s", "cost", "admitted"),
    [
        (1, 60.0, 1.0, 1),
        (3, 1.0, 1.0, 3),
        (3, 2.0, 1.0, 3),
        (100, 60.0, 1.0, 100),
        (10_000, 3600.0, 1.0, 10_000),  # an hour: 10,000 checks take well under the 0.36 s one unit refills in
        (1000, 60.0, 250.0, 4),
        (1000, 60.0, 300.0, 3),
        (10, 60.0, 0.5, 20),
    ],
)
def test_a_full_bucket_admits_exactly_the_limit(limit: int, period_s: float, cost: float, admitted: int) -> None:
    limiter = RateLimiter(capacity=64)
    results = [limiter.check("k", limit, period_s, cost)[0] for _ in range(admitted + 5)]
    assert results == [True] * admitted + [False] * 5


def test_decision_values() -> None:
    limiter = RateLimiter()
    allowed, remaining, retry_after_s, reset_s = limiter.check("k", 100, 60.0)
    assert allowed and math.floor(remaining) == 99 and retry_after_s == 0.0
    assert reset_s == pytest.approx(0.6, abs=1e-3)
    for _ in range(99):
        assert limiter.check("k", 100, 60.0)[0]
    allowed, remaining, retry_after_s, reset_s = limiter.check("k", 100, 60.0, 3)
    assert not allowed and remaining < 1
    assert retry_after_s == pytest.approx(1.8, abs=0.05)  # three intervals of 0.6 s
    assert reset_s == pytest.approx(60.0, abs=0.05)
    # Too big to ever fit: infinite retry-after, nothing consumed.
    assert limiter.check("other", 10, 60.0, 11) == (False, 10.0, math.inf, 0.0)
    assert limiter.peek("other", 10, 60.0) == (10.0, 0.0)


def test_peek_does_not_consume_and_refund_settles() -> None:
    limiter = RateLimiter()
    assert limiter.check("tpm", 1000, 60.0, 800)[0]
    remaining, reset_s = limiter.peek("tpm", 1000, 60.0)
    assert remaining == pytest.approx(200, abs=0.1) and reset_s == pytest.approx(48, abs=0.1)
    assert limiter.peek("tpm", 1000, 60.0)[0] == pytest.approx(200, abs=0.1)
    assert not limiter.check("tpm", 1000, 60.0, 300)[0]
    limiter.refund("tpm", 1000, 60.0, 500)  # reserved 800, used 300
    assert limiter.peek("tpm", 1000, 60.0)[0] == pytest.approx(700, abs=0.1)
    limiter.refund("tpm", 1000, 60.0, 10_000)  # more than was taken: full, never more
    assert limiter.peek("tpm", 1000, 60.0) == (1000.0, 0.0)
    limiter.refund("never-seen", 1000, 60.0, 5)
    assert limiter.occupancy()[0] == 1


@pytest.mark.parametrize(
    ("limit", "period_s", "cost"),
    [(0, 60.0, 1.0), (-1, 60.0, 1.0), (math.nan, 60.0, 1.0), (math.inf, 60.0, 1.0), (10, 0.0, 1.0),
     (10, math.inf, 1.0), (10, 60.0, -1.0), (10, 60.0, math.nan), (10, 2e9, 1.0)],
)  # fmt: skip
def test_invalid_numbers_are_typed_errors(limit: float, period_s: float, cost: float) -> None:
    limiter = RateLimiter()
    with pytest.raises(InvalidRateError):
        limiter.check("k", limit, period_s, cost)


def test_capacity_is_bounded_and_rounded() -> None:
    assert RateLimiter(capacity=17).capacity == 32
    with pytest.raises(LimiterError):
        RateLimiter(capacity=0)


def test_shared_file_is_one_table(tmp_path: Path) -> None:
    path = tmp_path / "limits"
    a, b = RateLimiter(str(path), 1024), RateLimiter(path, 1024)
    assert a.path == str(path) and a.capacity == 1024
    assert path.stat().st_size == 64 + 1024 * 16
    assert a.check("k", 2, 3600.0)[0] and b.check("k", 2, 3600.0)[0]
    assert not a.check("k", 2, 3600.0)[0] and not b.check("k", 2, 3600.0)[0]
    with pytest.raises(LimiterError, match="capacity 1024 slots, asked for 2048"):
        RateLimiter(path, 2048)
    junk = tmp_path / "junk"
    junk.write_bytes(b"x" * 4096)
    with pytest.raises(LimiterError, match="bad magic"):
        RateLimiter(junk, 1024)
    with pytest.raises(LimiterError, match="open"):
        RateLimiter(tmp_path / "missing" / "limits", 1024)


def test_eviction_keeps_memory_bounded(tmp_path: Path) -> None:
    path = tmp_path / "limits"
    limiter = RateLimiter(path, 64)
    size = path.stat().st_size
    for i in range(5000):
        assert limiter.check(f"key{i}", 10, 60.0)[0]
    held, busy = limiter.occupancy()
    assert held == 64 and busy == 64
    assert path.stat().st_size == size
    # The most recent key kept its state.
    assert limiter.peek("key4999", 10, 60.0)[0] == pytest.approx(9, abs=1e-3)


def test_idle_keys_are_reused_before_busy_ones() -> None:
    limiter = RateLimiter(capacity=16)  # one group of 16 slots: every key competes
    for i in range(15):
        assert limiter.check(f"busy{i}", 10, 3600.0, 5)[0]
    assert limiter.check("idle", 100_000, 1.0)[0]  # full again after 10 µs
    time.sleep(0.002)
    assert limiter.check("new", 10, 3600.0, 5)[0]
    for i in range(15):
        assert limiter.peek(f"busy{i}", 10, 3600.0)[0] == pytest.approx(5, abs=1e-3)


def test_local_limiter_decisions(tmp_path: Path) -> None:
    async def scenario() -> list[Decision]:
        limiter = LocalLimiter(tmp_path / "limits", capacity=256)
        decisions = [await limiter.check("rpm:key:1", 2, 60.0) for _ in range(3)]
        await limiter.refund("rpm:key:1", 2, 60.0, 1)
        decisions.append(await limiter.check("rpm:key:1", 2, 60.0))
        assert await limiter.peek("rpm:key:1", 2, 60.0) == pytest.approx((0.0, 60.0), abs=1e-3)
        return decisions

    first, second, third, after_refund = asyncio.run(scenario())
    assert isinstance(first, Decision) and first.allowed and first.retry_after_s == 0.0 and first.limit == 2
    assert first.remaining == pytest.approx(1.0, abs=1e-6) and first.reset_s == pytest.approx(30.0, abs=1e-3)
    assert second.allowed and not third.allowed and after_refund.allowed
    assert third.retry_after_s == pytest.approx(30.0, abs=0.01) and third.limit == 2
    with pytest.raises(AttributeError):
        first.allowed = False  # type: ignore[misc]


def test_default_table_path() -> None:
    path = default_table_path("8080")
    assert path.name == f"ferrogate-limits-{os.getuid()}-8080"
    assert os.path.isdir(path.parent)


def test_a_charged_bucket_refuses_until_it_has_refilled() -> None:
    async def scenario() -> None:
        limiter = LocalLimiter(None, capacity=64)
        assert limiter.sync_core is limiter.core
        # Limit 10 per second: reserve 8, then the request turned out to need 7 more (only 2 were left).
        assert (await limiter.check("tpm", 10, 1.0, 8)).allowed
        await limiter.charge("tpm", 10, 1.0, 7)
        remaining, reset_s = await limiter.peek("tpm", 10, 1.0)
        assert remaining == 0.0 and reset_s == pytest.approx(1.5, abs=0.01)  # half a period of debt
        refused = await limiter.check("tpm", 10, 1.0)
        assert not refused.allowed and refused.retry_after_s == pytest.approx(0.6, abs=0.01)
        await asyncio.sleep(refused.retry_after_s - 0.3)  # 0.3 s short of it
        assert not (await limiter.check("tpm", 10, 1.0)).allowed
        await asyncio.sleep(0.35)
        assert (await limiter.check("tpm", 10, 1.0)).allowed

    asyncio.run(scenario())


def test_charge_debt_is_bounded_and_claims_a_slot() -> None:
    limiter = RateLimiter(capacity=16)
    limiter.charge("k", 100, 60.0, 1e9)  # far beyond the limit: capped at two periods ahead
    remaining, reset_s = limiter.peek("k", 100, 60.0)
    assert remaining == 0.0 and reset_s == pytest.approx(120.0, abs=0.01)
    assert limiter.occupancy() == (1, 1)
    limiter.charge("k", 100, 60.0, 50)  # already at the cap: nothing more
    assert limiter.peek("k", 100, 60.0)[1] == pytest.approx(120.0, abs=0.01)
    refused = limiter.check("k", 100, 60.0)
    assert not refused[0] and refused[2] == pytest.approx(60.6, abs=0.01)
    limiter.charge("k", 100, 60.0, 0)  # a zero charge changes nothing, also for unknown keys
    limiter.charge("other", 100, 60.0, 0)
    assert limiter.occupancy() == (1, 1)
    with pytest.raises(InvalidRateError):
        limiter.charge("k", 100, 60.0, -1)
