"""Each strategy's attempt order over a real router and a process-local circuit table and limiter."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest

from ferrogate._core import RateLimiter
from ferrogate.config.loader import load_config_text
from ferrogate.pipeline.router import Router


def router_for(strategy: str) -> Router:
    text = f"""
upstreams: [{{name: a, provider: mock}}, {{name: b, provider: mock}}, {{name: c, provider: mock}}]
model_groups:
  - name: g
    strategy: {strategy}
    deployments:
      - {{upstream: a, model: m, weight: 1, priority: 2, rpm: 10, price: {{input: 5, output: 5}}}}
      - {{upstream: b, model: m, weight: 8, priority: 1, rpm: 10, price: {{input: 1, output: 1}}}}
      - {{upstream: c, model: m, weight: 1, priority: 3, price: {{input: 2, output: 2}}}}
"""
    return Router(load_config_text(text, "test.yaml", {}))


@pytest.fixture
def close() -> Iterator[list[Router]]:
    made: list[Router] = []
    yield made
    for router in made:
        asyncio.run(router.close())


def names(router: Router, stream: bool = False) -> list[str]:
    return [t.upstream for t in router.resolve("g", "", stream)[1]]


def test_priority_and_cost(close: list[Router]) -> None:
    close.append(priority := router_for("priority"))
    close.append(cost := router_for("cost"))
    assert names(priority) == ["b", "a", "c"]
    assert names(cost) == ["b", "c", "a"]


def test_weighted_draws_the_first_by_weight_and_keeps_the_rest_in_priority_order(close: list[Router]) -> None:
    close.append(router := router_for("weighted"))
    orders = [names(router) for _ in range(2000)]
    firsts = Counter(order[0] for order in orders)
    assert 0.7 < firsts["b"] / 2000 < 0.9 and firsts["a"] > 50 and firsts["c"] > 50  # weights 1:8:1
    assert all(sorted(o) == ["a", "b", "c"] for o in orders)
    assert {tuple(o) for o in orders if o[0] == "c"} == {("c", "b", "a")}


def test_least_in_flight_and_latency_read_the_shared_table(close: list[Router]) -> None:
    close.append(busy := router_for("least_in_flight"))
    group = busy.group("g")
    assert group is not None
    slots = {t.upstream: t.slot for t in group.by_priority}
    for _ in range(2):
        busy.circuits.admit(slots["b"], group.policy)
    busy.circuits.admit(slots["a"], group.policy)
    assert names(busy) == ["c", "a", "b"]
    close.append(fast := router_for("latency"))
    g2 = fast.group("g")
    assert g2 is not None
    s2 = {t.upstream: t.slot for t in g2.by_priority}
    for name, seconds in (("a", 0.05), ("b", 0.3), ("c", 0.1)):
        fast.circuits.admit(s2[name], g2.policy)
        fast.circuits.done(s2[name], g2.policy, True, seconds, -1.0, -1.0, False, 200)
    assert names(fast) == ["a", "c", "b"]
    assert names(fast, stream=True) == ["b", "a", "c"]  # no time-to-first-token known yet: priority order


def test_capacity_orders_by_the_share_of_rpm_left(close: list[Router]) -> None:
    close.append(router := router_for("capacity"))
    limiter = RateLimiter(None, 1024)
    router.peek = limiter.peek
    group = router.group("g")
    assert group is not None
    by = {t.upstream: t for t in group.by_priority}
    for _ in range(6):  # b: 4 of 10 left; a: 10 of 10
        limiter.check(by["b"].limits.rpm_key, 10.0, 60.0, 1.0)  # type: ignore[union-attr]
    assert names(router) == ["a", "b", "c"]  # c has no limits: last
