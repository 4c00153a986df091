"""Stores for the metering suite: each test runs on a SQLite file and on PostgreSQL.

The fixtures come from tests/integration/backends.py; this file names the suite's scratch PostgreSQL
database and its own sample data.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from ferrogate.store.usage import UsageRecord
from tests.integration.backends import (  # noqa: F401 (fixtures and helpers the suite uses)
    T0,
    anyio_backend,
    db_url,
    open_url,
    store,
    wipe,
)
from tests.integration.store.conftest import scratch_database


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    yield from scratch_database("fg_metering_test")


def usage(n: int, **fields: object) -> UsageRecord:
    """Record number ``n``: distinct, exactly summable token counts and a binary-exact cost."""
    values: dict[str, object] = {
        "request_id": f"req_{n:06d}",
        "created_at": T0 + timedelta(seconds=n),
        "model": "gpt-4o",
        "status": 200,
        "key_id": "key_a",
        "team_id": "team_a",
        "prompt_tokens": n,
        "completion_tokens": 2 * n,
        "cached_tokens": n % 3,
        "reasoning_tokens": n % 5,
        "cost_usd": n / 1024,
        "latency_ms": 12.5,
    }
    values.update(fields)
    return UsageRecord(**values)  # type: ignore[arg-type]
