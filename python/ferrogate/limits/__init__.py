"""Rate limits for the *limit* phase: cost-weighted GCRA buckets, exact across workers and instances.

Two implementations of one async interface (:class:`Limiter`):

- :class:`LocalLimiter`: the Rust table of ``ferrogate._core.RateLimiter`` in a shared-memory file, exact
  across the worker processes of one instance (the embedded default, no Redis).
- :class:`RedisLimiter`: the same GCRA arithmetic as one atomic Lua script in Redis, exact across
  instances sharing ``FERROGATE_REDIS_URL``.

Both return a :class:`Decision`. One limiter serves requests per minute (cost 1) and tokens per minute
(cost = tokens): the caller names the bucket in the key (e.g. ``"rpm:key:<id>"``, ``"tpm:team:<id>"``).
A reservation is settled with ``refund`` (unused) or ``charge`` (used beyond it: the bucket may go into
bounded debt). ``sync_core`` is the Rust table of a :class:`LocalLimiter` (``None`` for Redis), which the
request path calls synchronously.

Example:
    >>> import asyncio
    >>> limiter = LocalLimiter(None)
    >>> asyncio.run(limiter.check("rpm:key:1", 10, 60.0)).allowed
    True
"""

from typing import TYPE_CHECKING, Any

from ferrogate.limits.decision import Decision, Limiter
from ferrogate.limits.local import LocalLimiter, default_table_path

if TYPE_CHECKING:
    from ferrogate.limits.redis import RedisLimiter


def __getattr__(name: str) -> Any:
    """``RedisLimiter`` is imported on first use: redis-py (and the OpenTelemetry API it imports) stays out of a
    worker that has no Redis configured (about 10 MB of its memory)."""
    if name == "RedisLimiter":
        from ferrogate.limits.redis import RedisLimiter

        return RedisLimiter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Decision", "Limiter", "LocalLimiter", "RedisLimiter", "default_table_path"]
