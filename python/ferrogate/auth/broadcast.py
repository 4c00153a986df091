"""Cache invalidation across workers and instances.

Every admin change that affects authentication (revoke, rotate, delete, key or team update)
drops the affected entries from this worker's cache at once. With ``FERROGATE_REDIS_URL`` it
is also published on :data:`CHANNEL`, and every worker of every instance drops them within
milliseconds; without Redis the other workers' entries expire within the cache TTL (1 s).

Example:
    >>> inv = Invalidator(lambda key_hash: None, None)
    >>> inv.redis_url is None
    True
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ferrogate.auth")

#: The Redis pub/sub channel; a message is a key hash, or ``*`` for "everything".
CHANNEL = "ferrogate:auth:invalidate"


class Invalidator:
    """Drops cached credentials here and, through Redis, everywhere."""

    def __init__(
        self,
        forget: Callable[[str | None], None],
        redis_url: str | None,
        expire: Callable[[], None] | None = None,
    ) -> None:
        self.forget = forget
        self.redis_url = redis_url
        self.expire = expire  # on a lost listener: entries refreshed, not dropped (None: forget them all)
        self._redis: Any = None

    def _client(self) -> Any:
        if self._redis is None:
            assert self.redis_url is not None
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=2)
        return self._redis

    async def __call__(self, key_hash: str | None) -> None:
        """Invalidate ``key_hash`` (``None``: every entry) locally and on every other worker."""
        self.forget(key_hash)
        if self.redis_url is not None:
            try:
                await self._client().publish(CHANNEL, key_hash or "*")
            except Exception as exc:  # the local cache is already clean; others expire within the TTL
                log.warning("could not publish an auth invalidation to Redis: %s", exc)

    async def listen(self) -> None:
        """Apply invalidations published by other workers; reconnects after Redis outages."""
        if self.redis_url is None:
            return
        lost = False
        while True:
            try:
                pubsub = self._client().pubsub()
                await pubsub.subscribe(CHANNEL)
                lost = False
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        data = message["data"].decode()
                        self.forget(None if data == "*" else data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not lost:  # once per loss: messages may have been missed
                    log.warning("auth invalidation listener lost Redis (%s); retrying every 1 s", exc)
                    if self.expire is not None:
                        self.expire()  # refreshed from the store at next use, stale-if-error still holds
                    else:
                        self.forget(None)
                    lost = True
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        """Close the Redis connection."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
