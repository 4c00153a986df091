"""The shared-memory limiter is exact across worker processes: N processes on one key admit the limit."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from ferrogate._core import RateLimiter

from .workers import hammer_local

PROCESSES = 4


def test_processes_on_one_shared_file_admit_exactly_the_limit(tmp_path: Path) -> None:
    # 100 per hour: nothing refills during the ~1 s run (1 unit per 36 s), so exactly 100 may pass.
    path = str(tmp_path / "limits")
    RateLimiter(path, 4096)  # created by the "first worker"; the others open it
    start_at = time.time() + 1.5  # after every spawned child has imported ferrogate
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCESSES) as pool:
        counts = pool.starmap(hammer_local, [(path, 4096, "rpm:key:hot", 100, 3600.0, start_at, 1.0)] * PROCESSES)
    assert sum(counts) == 100, counts
    assert RateLimiter(path, 4096).peek("rpm:key:hot", 100, 3600.0)[0] < 1


def test_per_minute_limit_admits_the_burst_plus_only_what_refilled(tmp_path: Path) -> None:
    # 100 per minute refills one unit every 0.6 s: over the run, at most 100 + elapsed / 0.6 pass.
    path = str(tmp_path / "limits")
    RateLimiter(path, 4096)
    start_at = time.time() + 1.5
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCESSES) as pool:
        counts = pool.starmap(hammer_local, [(path, 4096, "rpm:key:minute", 100, 60.0, start_at, 1.0)] * PROCESSES)
    elapsed = time.time() - start_at
    assert 100 <= sum(counts) <= 100 + int(elapsed / 0.6), (counts, elapsed)
