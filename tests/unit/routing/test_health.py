"""Deployment health (``routing.health`` over ``_core.Circuits``): the breaker through Python, the admin snapshot
and metrics gauges, trip messages, two instances sharing a trip through real Redis, and two processes sharing one
table file.

Redis is ``FERROGATE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``); each test uses its own channel.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ferrogate._core import CircuitError, CircuitPolicy, Circuits, RateLimiter
from ferrogate.config.routing import CircuitSettings, RetrySettings
from ferrogate.routing.health import (
    CHANNEL,
    Health,
    attempt_outcome,
    circuit_policy,
    deployment_key,
    open_table,
    table_path,
)
from tests.integration.limits.conftest import URL as REDIS_URL
from tests.integration.limits.conftest import require_redis

KEY = "openai/gpt-4o"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def policy(**circuit: Any) -> CircuitPolicy:
    """The policy of ``CircuitSettings(**circuit)``; the retry budget counted over an hour (no window edge)."""
    return circuit_policy(CircuitSettings(**circuit), RetrySettings(budget_window_s=3600), 0.2)


def fail(circuits: Circuits, slot: int, p: CircuitPolicy, status: int = 503, retry_after_s: float = 0.0) -> bool:
    """One failed attempt (admitted first); whether it tripped the breaker."""
    assert circuits.admit(slot, p) == 0
    return circuits.done(slot, p, False, 0.2, -1.0, retry_after_s, False, status)


def test_a_breaker_trips_and_the_snapshot_shows_it() -> None:
    health = Health(Circuits(None, 64), None)
    slots = health.track([("openai", "gpt-4o"), ("azure", "gpt-4o")])
    slot = slots[KEY]
    p = policy(consecutive=3, cooldown_s=7.0)
    c = health.circuits
    assert c.done(slot, p, True, 0.5, 0.1, 0.0, False, 200) is False  # done without admit: in flight stays 0
    assert [fail(c, slot, p) for _ in range(3)] == [False, False, True]
    assert c.admit(slot, p) == -1
    health.note_error(KEY, "upstream_unavailable: " + "x" * 1000)
    snap = health.snapshot([KEY, "azure/gpt-4o"])
    assert snap[0] == {
        "key": KEY,
        "state": "open",
        "error_rate": 0.75,
        "requests": 4,
        "consecutive_failures": 3,
        "open_for_s": pytest.approx(7.0, abs=0.1),
        "trips_in_a_row": 1,
        "in_flight": 0,
        "ttft_ewma_ms": 100.0,
        "latency_ewma_ms": 500.0,
        "last_status": 503,
        "last_failure_age_s": pytest.approx(0.0, abs=0.5),
        "last_error": "upstream_unavailable: " + "x" * 478,
    }
    assert snap[1]["state"] == "closed" and snap[1]["latency_ewma_ms"] is None and snap[1]["last_status"] is None
    assert sorted(health.gauges()) == [(("azure", "gpt-4o"), 0), (("openai", "gpt-4o"), 1)]
    # a reload that drops a deployment drops its gauge
    health.track([("azure", "gpt-4o")])
    assert health.gauges() == [(("azure", "gpt-4o"), 0)]


def test_retry_after_sets_the_cooldown_and_the_budget_bounds_retries() -> None:
    c = Circuits(None, 16)
    slot = c.slot(KEY)
    p = policy(consecutive=1, cooldown_s=5.0, cooldown_max_s=60.0)
    assert fail(c, slot, p, status=429, retry_after_s=42.0)
    assert c.view(slot)[4] == pytest.approx(42.0, abs=0.1)
    # budget: 10 retries at least (budget_min), then 20% of the requests
    other = c.slot("b/m")
    assert sum(c.retry_allowed(other, p) for _ in range(50)) == 10
    for _ in range(100):
        assert c.admit(other, p) == 0
        c.done(other, p, True, 0.1, -1.0, 0.0, False, 200)
    assert sum(c.retry_allowed(other, p) for _ in range(50)) == 10  # 20 of 100, 10 already taken


def test_facts_give_a_groups_ordering_inputs_in_one_call() -> None:
    c = Circuits(None, 16)
    a, b = c.slot("a/m"), c.slot("b/m")
    p = policy()
    assert c.admit(a, p) == 0
    c.trip(b, 30.0)
    assert c.facts([a, b]) == [(0, 1, 0.0, -1.0, -1.0), (1, 0, 0.0, -1.0, -1.0)]
    assert (c.state(a), c.state(b)) == (0, 1)
    with pytest.raises(CircuitError, match="out of range"):
        c.facts([a, 16])


@pytest.mark.parametrize(
    ("field", "value"),
    [("window_s", 0.0), ("error_rate", 2.0), ("cooldown_max_s", 1.0), ("probes", 0), ("latency_alpha", 0.0)],
)
def test_a_bad_policy_names_the_setting(field: str, value: float) -> None:
    settings: dict[str, Any] = {
        "enabled": True,
        "window_s": 30.0,
        "min_requests": 10,
        "error_rate": 0.5,
        "consecutive": 5,
        "cooldown_s": 5.0,
        "cooldown_max_s": 300.0,
        "probes": 1,
        "latency_alpha": 0.2,
        "retry_budget_pct": 20.0,
        "retry_budget_min": 10,
        "retry_budget_window_s": 10.0,
    }
    with pytest.raises(CircuitError, match=field):
        CircuitPolicy(**(settings | {field: value}))


def test_the_table_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "circuits"
    assert open_table(path, 64).path == str(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(CircuitError, match="capacity 64 slots, asked for 128"):
        open_table(path, 128)
    limits = tmp_path / "limits"
    RateLimiter(limits, 64)
    with pytest.raises(CircuitError, match="not a ferrogate circuit table"):
        open_table(limits, 64)
    assert table_path("9000").name.endswith("-9000")
    full = Circuits(None, 2)
    assert sorted([full.slot("a/m"), full.slot("b/m")]) == [0, 1]
    with pytest.raises(CircuitError, match="full"):
        full.slot("c/m")


def test_trip_messages_apply_unless_own_or_malformed() -> None:
    health = Health(Circuits(None, 16), None, instance="here")
    assert not health.apply(f'{{"key": "{KEY}", "open_for_s": 9, "from": "here"}}')
    assert health.snapshot([KEY])[0]["state"] == "closed"
    for bad in [b"not json", b'{"open_for_s": 1}', b'{"key": 5, "open_for_s": 1}', b"[1]", b'{"key": "k"}']:
        assert not health.apply(bad)
    assert health.apply(f'{{"key": "{KEY}", "open_for_s": 9, "from": "there"}}'.encode())
    assert health.snapshot([KEY])[0]["open_for_s"] == pytest.approx(9.0, abs=0.1)
    assert [attempt_outcome(False, s) for s in (0, 1, 429, 500)] == ["unreachable", "timeout", "rate_limited", "error"]
    assert deployment_key("vllm", "meta/llama") == "vllm/meta/llama"


async def until(check: Callable[[], bool], bound_s: float) -> None:
    """Wait (polling) until ``check()`` holds, at most ``bound_s``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < bound_s, f"not within {bound_s} s"
        await asyncio.sleep(0.005)


@pytest.mark.anyio
async def test_a_trip_reaches_another_instance_through_redis() -> None:
    require_redis()
    import redis.asyncio as aioredis

    channel = f"{CHANNEL}:test:{secrets.token_hex(4)}"
    one = Health(Circuits(None, 64), REDIS_URL, channel=channel)
    two = Health(Circuits(None, 64), REDIS_URL, channel=channel)
    assert one.instance != two.instance
    listeners = [asyncio.create_task(h.listen()) for h in (one, two)]
    probe = aioredis.from_url(REDIS_URL)
    try:

        async def subscribed() -> int:
            return int((await probe.pubsub_numsub(channel))[0][1])

        start = time.monotonic()
        while await subscribed() < 2:
            assert time.monotonic() - start < 5, "listeners did not subscribe"
            await asyncio.sleep(0.01)
        p = policy(consecutive=2, cooldown_s=30.0)
        slot = one.slot(KEY)
        assert [fail(one.circuits, slot, p) for _ in range(2)] == [False, True]
        one.tripped(KEY)
        await until(lambda: two.snapshot([KEY])[0]["state"] == "open", 1.0)
        remaining = two.snapshot([KEY])[0]["open_for_s"]
        assert 29.0 < remaining <= 30.0
        # the sender skipped its own message: its breaker is untouched (one trip in a row, not two)
        assert one.snapshot([KEY])[0]["trips_in_a_row"] == 1
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        await probe.aclose()
        await one.close()
        await two.close()


def _worker(path: str, tripped: Any, trip_other: Any, seen: Any) -> None:
    """Another worker process: trips ``KEY`` on the shared table, then reports what it sees of ``b/m``."""
    c = Circuits(path, 64)
    p = policy(consecutive=1)
    slot = c.slot(KEY)
    assert c.admit(slot, p) == 0
    tripped.put(c.done(slot, p, False, 0.1, -1.0, 0.0, False, 500))
    if trip_other.wait(30):
        seen.put(c.view(c.slot("b/m"))[0])


def test_two_processes_on_one_file_see_a_trip_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "circuits")
    circuits = Circuits(path, 64)
    ctx = multiprocessing.get_context("spawn")
    tripped, seen, trip_other = ctx.Queue(), ctx.Queue(), ctx.Event()
    worker = ctx.Process(target=_worker, args=(path, tripped, trip_other, seen))
    worker.start()
    try:
        assert tripped.get(timeout=60) is True
        # no waiting: the other process's trip is in this process's mapping already
        assert circuits.view(circuits.slot(KEY))[0] == 1
        assert circuits.admit(circuits.slot(KEY), policy()) == -1
        circuits.trip(circuits.slot("b/m"), 10.0)
        trip_other.set()
        assert seen.get(timeout=60) == 1
    finally:
        worker.join(timeout=30)
        if worker.is_alive():
            worker.kill()
    assert worker.exitcode == 0
    assert os.path.getsize(path) == 64 + 64 * 320
