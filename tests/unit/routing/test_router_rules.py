"""The router with routing rules: its one-call order agrees with the rules' own order over candidates, a forbid
removes a deployment, priorities re-order, no eligible deployment is a 403, and the dry run says why."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ferrogate.config.loader import load_config_text
from ferrogate.errors import GatewayError
from ferrogate.pipeline.router import Router
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
    _, targets = router.resolve("g", "", stream=False)
    return [t.upstream for t in router.apply_rules("g", targets, RequestFacts(model="g", **facts))]  # type: ignore[arg-type]


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
    rules = router.table.rules
    assert rules is not None
    for cents in (-1, 0, 500, 999, 1000, 10**6):
        facts = RequestFacts(model="g", budget_left_cents=cents)
        by_id = {t.rule_id: t for t in targets}
        expected = [by_id[i].key for i in rules.order(facts, candidates(targets, router.circuits))]
        assert [t.key for t in router.apply_rules("g", targets, facts)] == expected


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
