"""Benchmark: what authentication adds per request on a cache hit (target: under 20 µs).

Runs the real Authenticator against a real SQLite store holding one key, with a stand-in for
Granian's RSGI scope (only ``headers.get`` and ``client`` are read). Prints the median
per-call time of several batches, for the hit path and, for scale, the miss path (store
lookup).

    .venv/bin/python benches/auth_cache.py
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ferrogate.auth.authenticator import Authenticator
from ferrogate.auth.keys import KeyHasher, display_prefix, new_key
from ferrogate.store import open_store


class _Scope:
    """The two attributes of an RSGI scope the authenticate phase reads."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.client = "127.0.0.1:5000"


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        await store.migrate()
        hasher = KeyHasher(b"bench-master-key-0123456789")
        team = await store.teams.create("bench")
        secret = new_key()
        await store.keys.create(hasher.hash(secret), display_prefix(secret), name="b", team_id=team.id)
        auth = Authenticator(store, hasher, ttl_s=3600)
        scope: Any = _Scope({"authorization": f"Bearer {secret}"})
        await auth.identify(scope)  # fill the cache
        n = 50_000
        hits = []
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(n):
                await auth.identify(scope)
            hits.append((time.perf_counter() - start) / n * 1e6)
        misses = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(200):
                auth.forget(None)
                await auth.identify(scope)
            misses.append((time.perf_counter() - start) / 200 * 1e6)
        await store.close()
    print(f"cache hit:  median {statistics.median(hits):.2f} µs per request (7 batches of {n})")
    print(f"cache miss: median {statistics.median(misses):.1f} µs per request (SQLite lookup of key and team)")


if __name__ == "__main__":
    asyncio.run(main())
