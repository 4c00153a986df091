"""Shared by the limiter suites: the test Redis and a skip when it does not answer."""

from __future__ import annotations

import os

import pytest
import redis

#: A database of the local Redis reserved for tests (keys carry a random prefix).
URL = os.environ.get("FERROGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require_redis() -> None:
    """Skip the calling test (with the reason) when Redis at :data:`URL` does not answer."""
    client = redis.Redis.from_url(URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis unreachable at {URL}: {exc}")
    finally:
        client.close()
