"""The router with routing rules: its one-call order agrees with the rules' own order over candidates, a forbid
removes a deployment, priorities re-order, no eligible deployment is a 403, and the dry run says why."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ferrogate.config.loader import load_config_text
from ferrogate.errors import GatewayError
from ferrogate.pipeline.router import Router
from ferrogate.routing.plan import Target
from ferrogate.routing.rules import RequestFacts, RoutingRules, candidates

CONFIG = """
upstreams: [{name: cloud, provider: mock}, {name: local, provider: mock}, {name: slow, provider: mock}]
model_groups:
  - name: g
    deployments:
      - {upstream: cloud, model: m, price: {input: 5, output: 15}}
      - {upstream: local, model: m, tags: [self-hosted]}
      - {upstream: slow, model: m}
routing:
  rules: |
    @id("cheap-when-low") @priority("10")
    permit(principal, action, resource) when {
      context.budget_left_cents >= 0 && context.budget_left_cents < 1000 && resource.tags.contains("self-hosted")
    };
    @id("no-slow") forbid(principal, action, resource) when { resource.upstream == "slow" };
    @id("blocked-team") forbid(principal, action, resource) when { principal.team == "blocked" };
"""


@pytest.fixture
def router() -> Iterator[Router]:
    found = Router(load_config_text(CONFIG, "test.yaml", {}), load_rules=RoutingRules.load)
    yield found
    asyncio.run(found.close())


def upstreams(router: Router, **facts: object) -> list[str]:
    _, targets = router.resolve("g", "", False, RequestFacts(model="g", **facts))  # type: ignore[arg-type]
    return [t.upstream for t in targets]


def by_the_rules(router: Router, targets: list[Target], facts: RequestFacts) -> list[Target]:
    """``targets`` (in a strategy's order) as the rules order them over candidates: the reference path (the dry
    run's), independent of the router's one call."""
    rules = router.table.rules
    assert rules is not None
    by_id = {t.rule_id: t for t in targets}
    return [by_id[i] for i in rules.order(facts, candidates(targets, router.circuits))]


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({}, ["cloud", "local"]),
        ({"budget_left_cents": 5000}, ["cloud", "local"]),
        ({"budget_left_cents": 500}, ["local", "cloud"]),
    ],
)
def test_rules_filter_and_order(router: Router, facts: dict[str, object], expected: list[str]) -> None:
    assert upstreams(router, **facts) == expected


def test_the_one_call_order_agrees_with_the_rules_order_over_candidates(router: Router) -> None:
    _, targets = router.resolve("g", "", stream=False)
    for cents in (-1, 0, 500, 999, 1000, 10**6):
        facts = RequestFacts(model="g", budget_left_cents=cents)
        expected = [t.key for t in by_the_rules(router, targets, facts)]
        assert [t.key for t in router.resolve("g", "", False, facts)[1]] == expected


def test_no_eligible_deployment_is_a_403(router: Router) -> None:
    with pytest.raises(GatewayError) as info:
        upstreams(router, team="blocked")
    assert (info.value.status, info.value.code or info.value.info.code) == (403, "no_deployment_allowed")


def test_the_dry_run_names_the_rules_that_decided(router: Router) -> None:
    answer = router.explain({"model": "g", "budget_left_usd": 5.0})
    assert answer["chosen"] == "local/m"
    by_key = {c["deployment"]: c for c in answer["candidates"]}
    assert (by_key["local/m"]["score"], by_key["local/m"]["rules"]) == (10, ["cheap-when-low"])
    assert (by_key["slow/m"]["eligible"], by_key["slow/m"]["rules"]) == (False, ["no-slow"])
    assert [c["deployment"] for c in answer["candidates"]][:2] == ["local/m", "cloud/m"]


@pytest.mark.parametrize("strategy", ["priority", "weighted", "least_in_flight", "latency", "cost", "capacity"])
@pytest.mark.parametrize("stream", [False, True])
def test_the_group_call_orders_as_the_strategy_then_the_rules(strategy: str, stream: bool) -> None:
    """``resolve`` with facts (one core call: the strategy's order and the rules) gives what the strategy's own
    order followed by the rules gives, with the circuits' in-flight counts and EWMAs all different."""
    import random

    from ferrogate.routing.plan import order

    deployments = ", ".join(
        f"{{upstream: u{i}, model: m, weight: {i + 1}, priority: {i % 3}, price: {{input: {9 - i}, output: 1}}"
        f"{', tags: [self-hosted]' if i % 2 else ''}}}"
        for i in range(6)
    )
    ups = ", ".join(f"{{name: u{i}, provider: mock}}" for i in range(6))
    rules = (
        '@id("cheap") @priority("5") permit(principal, action, resource) when { context.budget_left_cents >= 0 && '
        'context.budget_left_cents < 1000 && resource.tags.contains("self-hosted") };\n'
        '@id("no-u3") forbid(principal, action, resource) when { resource.upstream == "u3" };'
    )
    text = (
        f"upstreams: [{ups}]\nmodel_groups:\n  - {{name: g, strategy: {strategy}, deployments: [{deployments}]}}\n"
        f"routing:\n  rules: '{rules}'\n"
    )
    router = Router(load_config_text(text, "test.yaml", {}), load_rules=RoutingRules.load)
    try:
        group = router.table.groups["g"]
        for i, target in enumerate(group.by_priority):  # distinct health per deployment, unknown for one
            if i != 2:
                assert router.circuits.admit(target.slot, group.policy) >= 0
                router.circuits.done(target.slot, group.policy, True, 0.01 * (7 - i), 0.002 * (i + 1), -1.0, False, 200)
            for _ in range(i % 3):  # left in flight
                assert router.circuits.admit(target.slot, group.policy) >= 0
        for cents in (-1, 500, 5000):
            facts = RequestFacts(model="g", budget_left_cents=cents, stream=stream)
            random.seed(cents)
            _, got = router.resolve("g", "", stream, facts)
            random.seed(cents)
            remaining = router._remaining if strategy == "capacity" else None
            expected = by_the_rules(router, order(group, 0, stream, router.circuits, remaining), facts)
            assert [t.key for t in got] == [t.key for t in expected]
            assert "u3/m" not in [t.key for t in got]
    finally:
        asyncio.run(router.close())


def test_a_fallback_group_is_ordered_by_the_rules_too() -> None:
    """After its group fails, a request goes to the fallback groups as the rules allow: a fallback whose every
    deployment the rules forbid is skipped, not served."""
    from ferrogate.limits import LocalLimiter
    from ferrogate.pipeline.context import RequestContext
    from ferrogate.pipeline.failover import RETRY, begin

    text = """
upstreams: [{name: a, provider: mock}, {name: b, provider: mock}, {name: c, provider: mock}]
model_groups:
  - {name: primary, deployments: [{upstream: a, model: m}], retries: {attempts: 1}, fallbacks: [secondary, tertiary]}
  - {name: secondary, deployments: [{upstream: b, model: m}]}
  - {name: tertiary, deployments: [{upstream: c, model: m}]}
routing:
  rules: '@id("no-b") forbid(principal, action, resource) when { resource.upstream == "b" };'
"""
    router = Router(load_config_text(text, "test.yaml", {}), load_rules=RoutingRules.load)
    limiter = LocalLimiter(None, 64)

    async def after_a_failure() -> str:
        ctx = RequestContext("r")
        ctx.model = "primary"
        assert begin(router, ctx, limiter, [], RequestFacts(model="primary")) is None
        plan = ctx.plan
        assert plan is not None and plan.current is not None and plan.current.upstream == "a"
        plan.begin()
        plan.finish(False, 500)
        assert await plan.next_after(ctx, limiter, [], RETRY, -1.0)
        assert plan.current is not None
        return plan.current.upstream

    try:
        assert asyncio.run(after_a_failure()) == "c"
    finally:
        asyncio.run(router.close())
