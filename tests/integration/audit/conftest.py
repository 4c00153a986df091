"""Stores for the audit suite: each test runs on a SQLite file and on PostgreSQL (as the metering suite does).

The fixtures come from tests/integration/backends.py; this file names the suite's scratch PostgreSQL
database and its own sample data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest

from ferrogate.store.audit import AuditEvent, RequestFacts
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
    yield from scratch_database("fg_audit_test")


def cli_url(url: str) -> str:
    """The ``FERROGATE_DATABASE_URL`` of a :func:`db_url` (``sqlite:////absolute/path`` for a file)."""
    return f"sqlite:///{url.removeprefix('sqlite:')}" if url.startswith("sqlite:") else url


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m ferrogate ARGS`` against the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROGATE_")}
    env["FERROGATE_DATABASE_URL"] = cli_url(url)
    return subprocess.run(
        [sys.executable, "-m", "ferrogate", *args], env=env, capture_output=True, text=True, timeout=30
    )


def event(n: int, **fields: object) -> AuditEvent:
    """Event number ``n``: an admin change by one of three actors in one of two teams."""
    values: dict[str, object] = {
        "event_id": f"evt_{n:06d}",
        "created_at": T0 + timedelta(seconds=n),
        "kind": "admin",
        "actor": ("master", "key_a", "key_b")[n % 3],
        "action": ("team.update", "key.create")[n % 2],
        "target": f"obj_{n}",
        "team_id": ("team_a", "team_b")[n % 2],
        "data": {"before": {"n": n - 1}, "after": {"n": n, "cost": n / 1024, "tags": ["é", None, True]}},
    }
    values.update(fields)
    return AuditEvent(**values)  # type: ignore[arg-type]


def request(n: int, **fields: object) -> AuditEvent:
    """Request number ``n``: a data-plane event (stored in a block) by one of three keys in one of two teams."""
    values: dict[str, object] = {
        "event_id": f"req_{n:06d}",
        "created_at": T0 + timedelta(seconds=n),
        "kind": "request",
        "actor": ("key_a", "key_b", "key_c")[n % 3],
        "action": "chat.completions",
        "target": ("gpt-4o", None)[n % 2],
        "team_id": ("team_a", "team_b", None)[n % 3],
        "data": {"status": 200, "prompt_tokens": n, "cost_usd": n / 3e6, "latency_ms": n * 1.25, "note": 'ü\n"'},
    }
    values.update(fields)
    return AuditEvent(**values)  # type: ignore[arg-type]


def facts(n: int) -> RequestFacts:
    """Request number ``n`` as the account phase queues it (its data encoded by the Rust core)."""
    return RequestFacts(
        (
            f"req_{n:06d}",
            T0 + timedelta(seconds=n),
            ("key_a", "key_b", "key_c")[n % 3],
            "chat.completions",
            ("gpt-4o", None)[n % 2],
            ("team_a", "team_b", None)[n % 3],
            None,
            f"{n:032x}",
            None,
            "openai",
            "gpt-4o-2024-08-06",
            (200, 429)[n % 2],
            (None, "rate_limit_exceeded")[n % 2],
            n % 5 == 0,
            n,
            2 * n,
            0,
            0,
            False,
            n / 3e6,
            n * 1.25,
        )
    )


def mixed(n: int) -> AuditEvent | RequestFacts:
    """Item ``n`` of a writer's queue: an admin change every third, a request's facts otherwise."""
    return event(n) if n % 3 == 0 else facts(n)
