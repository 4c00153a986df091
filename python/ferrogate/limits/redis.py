"""The cross-instance limiter: the same GCRA arithmetic as the Rust table, as one atomic Lua script in Redis.

Each decision is one ``EVALSHA`` (the script is loaded once per connection pool; redis-py reloads it
after a ``NOSCRIPT``), run atomically by Redis, with Redis ``TIME`` as the clock, so every worker of every
instance sharing the Redis admits no more than the limit. A bucket is one string key
``ferrogate:rl:<key>`` holding its TAT in microseconds since the epoch, expiring when the bucket is full
again (idle buckets cost no memory).

The arithmetic is that of ``rust_core/src/ratelimit/gcra.rs`` in microseconds instead of nanoseconds:
interval ``T = period / limit``, increment ``ceil(cost * T)``, admitted when
``used + increment <= period + min(ceil(limit), floor(T / 2))``.

Example:
    >>> import asyncio
    >>> async def demo() -> bool:
    ...     limiter = RedisLimiter.from_url("redis://127.0.0.1:6379/0")
    ...     try:
    ...         return (await limiter.check("doc:example", 1000, 60.0)).allowed
    ...     finally:
    ...         await limiter.aclose()
    >>> asyncio.run(demo())  # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
from typing import Any

import redis.asyncio as aioredis

from ferrogate._core import InvalidRateError, RateLimiter
from ferrogate.limits.decision import Decision

#: Prefix of every bucket key in Redis.
KEY_PREFIX = "ferrogate:rl:"

#: A charge never puts a bucket's TAT more than this many periods ahead of now (as ``MAX_DEBT_PERIODS`` in
#: ``rust_core/src/ratelimit/gcra.rs``).
MAX_DEBT_PERIODS = 2

#: KEYS[1] = the bucket; ARGV = mode ("check", "refund", "charge", "peek"), limit, period_us, cost.
#: Returns {allowed (0/1), remaining, retry_after_us (-1: never fits), reset_us}; numbers as strings.
#: The key expires (PX) when its bucket is full again, i.e. at its TAT (after a charge, past the debt).
GCRA_LUA = """
local mode = ARGV[1]
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = period / limit
local budget = period + math.min(math.ceil(limit), math.floor(interval / 2))
local tat = tonumber(redis.call('GET', KEYS[1])) or 0
local base = math.max(tat, now)
local used = base - now
local inc = math.ceil(cost * interval)
local function fmt(x) return string.format('%.17g', x) end
local function remaining(u)
  local r = (budget - u) / interval
  if r < 0 then r = 0 elseif r > limit then r = limit end
  return r
end
if mode == 'peek' then
  return {1, fmt(remaining(used)), '0', fmt(used)}
end
if mode == 'refund' then
  if tat > now and inc > 0 then
    local new = math.max(now, tat - inc)
    if new > now then
      redis.call('SET', KEYS[1], fmt(new), 'PX', math.ceil((new - now) / 1000) + 1)
    else
      redis.call('DEL', KEYS[1])
    end
  end
  return {1, '0', '0', '0'}
end
if mode == 'charge' then
  if inc > 0 then
    local new = math.max(tat, math.min(base + inc, now + MAX_DEBT_PERIODS * period))
    if new > tat then
      redis.call('SET', KEYS[1], fmt(new), 'PX', math.ceil((new - now) / 1000) + 1)
    end
  end
  return {1, '0', '0', '0'}
end
if inc <= budget - used then
  local after = used + inc
  if inc > 0 then
    redis.call('SET', KEYS[1], fmt(base + inc), 'PX', math.ceil(after / 1000) + 1)
  end
  return {1, fmt(remaining(after)), '0', fmt(after)}
end
local retry = -1
if inc <= budget then retry = used + inc - budget end
return {0, fmt(remaining(used)), fmt(retry), fmt(used)}
""".replace("MAX_DEBT_PERIODS", str(MAX_DEBT_PERIODS))

#: The longest period accepted, as in the Rust core (about 31 years).
MAX_PERIOD_S = 1e9


def _validate(limit: float, period_s: float, cost: float) -> float:
    """Check the numbers as the Rust core does; return the period in whole microseconds."""
    if not (math.isfinite(limit) and limit > 0):
        raise InvalidRateError(f"invalid rate: limit must be a positive finite number, got {limit}")
    period_us = round(period_s * 1e6) if math.isfinite(period_s) else 0
    if not (1 <= period_us <= MAX_PERIOD_S * 1e6):
        raise InvalidRateError(f"invalid rate: period_s must be between 1e-6 and 1e9 seconds, got {period_s}")
    if not (math.isfinite(cost) and cost >= 0):
        raise InvalidRateError(f"invalid rate: cost must be a finite number >= 0, got {cost}")
    return float(period_us)


class RedisLimiter:
    """:class:`~ferrogate.limits.decision.Limiter` over Redis, exact across instances.

    Args:
        client: A redis-py asyncio client (the caller owns it unless built by :meth:`from_url`).
        prefix: Prepended to every key.
    """

    def __init__(self, client: aioredis.Redis, prefix: str = KEY_PREFIX) -> None:
        self._client = client
        self._owned = False
        #: Always ``None``: every decision is a Redis round trip, awaited (see :class:`Limiter`).
        self.sync_core: RateLimiter | None = None
        self._prefix = prefix
        self._script = client.register_script(GCRA_LUA)

    @classmethod
    def from_url(cls, url: str, prefix: str = KEY_PREFIX) -> RedisLimiter:
        """A limiter with its own connection pool to ``url`` (closed by :meth:`aclose`).

        Args:
            url: A Redis URL such as ``redis://127.0.0.1:6379/0``.
            prefix: Prepended to every key.

        Returns:
            The limiter.
        """
        limiter = cls(aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=2), prefix)
        limiter._owned = True
        return limiter

    async def aclose(self) -> None:
        """Close the connection pool if this limiter created it."""
        if self._owned:
            await self._client.aclose()

    async def _run(self, mode: str, key: str, limit: float, period_s: float, cost: float) -> list[Any]:
        period_us = _validate(limit, period_s, cost)
        result: list[Any] = await self._script(
            keys=[self._prefix + key], args=[mode, repr(limit), repr(period_us), repr(cost)]
        )
        return result

    async def check(self, key: str, limit: float, period_s: float, cost: float = 1.0) -> Decision:
        """Decide ``cost`` units for ``key`` (see :meth:`Limiter.check`); one Redis round trip."""
        allowed, remaining, retry_us, reset_us = await self._run("check", key, limit, period_s, cost)
        retry = float(retry_us)
        return Decision(
            allowed=bool(int(allowed)),
            remaining=float(remaining),
            retry_after_s=math.inf if retry < 0 else retry / 1e6,
            reset_s=float(reset_us) / 1e6,
            limit=limit,
        )

    async def refund(self, key: str, limit: float, period_s: float, cost: float) -> None:
        """Give ``cost`` units back to ``key`` (see :meth:`Limiter.refund`)."""
        await self._run("refund", key, limit, period_s, cost)

    async def charge(self, key: str, limit: float, period_s: float, cost: float) -> None:
        """Take ``cost`` units from ``key`` even into debt (see :meth:`Limiter.charge`)."""
        await self._run("charge", key, limit, period_s, cost)

    async def peek(self, key: str, limit: float, period_s: float) -> tuple[float, float]:
        """``(remaining, reset_s)`` of ``key`` (see :meth:`Limiter.peek`)."""
        _, remaining, _, reset_us = await self._run("peek", key, limit, period_s, 0.0)
        return float(remaining), float(reset_us) / 1e6
