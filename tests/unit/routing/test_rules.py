"""Routing rules (``routing.rules`` over ``_core.RoutePolicy``): loading ``rules_file`` and inline ``rules``
(relative paths, no rules, comment-only files), errors as ``ConfigError`` naming the source and the line, the
issue's two examples decided from Python, the router's ``order``, and the fact conversions."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferrogate import _core
from ferrogate.config.errors import ConfigError
from ferrogate.config.prices import Price
from ferrogate.config.routing import CircuitSettings, RetrySettings, RoutingSettings
from ferrogate.routing.health import circuit_policy
from ferrogate.routing.rules import (
    INLINE_SOURCE,
    Decision,
    RequestFacts,
    RoutingRules,
    Verdict,
    budget_cents,
    candidate,
    candidates,
    micro_usd,
    validate_text,
)

BUDGET = """\
// when the team's budget left is under 10 USD, prefer self-hosted deployments
@id("budget-prefers-self-hosted")
@priority("100")
permit(principal, action, resource)
when { context.budget_left_cents >= 0 && context.budget_left_cents < 1000 }
when { resource.tags.contains("self-hosted") };
"""
SLA = """\
@id("sla")
forbid(principal, action, resource)
when { context.sla_ms > 0 && resource.latency_ms > context.sla_ms };
"""
FIXTURE = Path(__file__).parents[3] / "rust_core" / "tests" / "data" / "routing_rules.cedar"


def registered(rules: RoutingRules) -> tuple[int, int]:
    """A cloud deployment and a self-hosted one."""
    cloud = rules.deployment(key="openai/gpt", provider="openai", upstream="openai", model="gpt", group="fast")
    local = rules.deployment(
        key="vllm/llama", provider="vllm", upstream="vllm", model="llama", group="fast", tags=["self-hosted"]
    )
    return cloud, local


def test_no_rules_is_none(tmp_path: Path) -> None:
    assert RoutingRules.load(RoutingSettings()) is None
    assert RoutingRules.load(RoutingSettings(rules="  \n")) is None
    (tmp_path / "empty.cedar").write_text("// nothing yet\n")
    assert RoutingRules.load(RoutingSettings(rules_file="empty.cedar"), base_dir=tmp_path) is None


def test_file_and_inline_rules_load_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rules.cedar").write_text(BUDGET)
    settings = RoutingSettings(rules_file="rules.cedar", rules=SLA + "permit(principal, action, resource);")
    monkeypatch.chdir(tmp_path)  # a relative rules_file is relative to the working directory
    rules = RoutingRules.load(settings)
    assert rules is not None
    assert rules.ids == ["budget-prefers-self-hosted", "sla", "policy2"]
    assert rules.sources == ("rules.cedar", INLINE_SOURCE)
    elsewhere = tmp_path / "sub"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = RoutingRules.load(settings, base_dir=tmp_path)
    assert loaded is not None and loaded.ids == rules.ids


def test_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        RoutingRules.load(RoutingSettings(rules_file="missing.cedar"), base_dir=tmp_path)
    assert info.value.source == "missing.cedar"
    assert info.value.problems == [("(file)", "No such file or directory")]


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (BUDGET + "forbid(principal, action, resource)\n  when { resource.latnecy_ms > 500 };\n", "line 8, column 10",
         "attribute `latnecy_ms` on entity type `Deployment` not found (did you mean `latency_ms`?)"),
        ("permit(principal, action, resource)\nwhen { resource.latency_ms > };", "line 2, column 30",
         "unexpected token `}`"),
        ('\n@priority("high")\npermit(principal, action, resource);', "line 2, column 1",
         '@priority must be an integer, got "high"'),
        ('@id("a") permit(principal, action, resource);\n@id("a") permit(principal, action, resource);',
         "line 2, column 1", 'rule id "a" is given twice (first at rules.cedar:1)'),
    ],
)  # fmt: skip
def test_a_bad_rule_names_the_file_and_line(tmp_path: Path, text: str, where: str, what: str) -> None:
    (tmp_path / "rules.cedar").write_text(text)
    with pytest.raises(ConfigError) as info:
        RoutingRules.load(RoutingSettings(rules_file="rules.cedar"), base_dir=tmp_path)
    assert info.value.source == "rules.cedar"
    [(got_where, got_what)] = info.value.problems
    assert got_where == where
    assert got_what.startswith(what) or what in got_what, got_what


def test_bad_inline_rules_name_routing_rules_and_both_sources_are_told_apart(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        RoutingRules.load(RoutingSettings(rules="\npermit(principal, action, resource) when { context.nope };"))
    assert info.value.source == INLINE_SOURCE
    assert info.value.problems[0][0] == "line 2, column 44"
    (tmp_path / "rules.cedar").write_text('@id("x") permit(principal, action, resource);')
    settings = RoutingSettings(rules_file="rules.cedar", rules='@id("x") forbid(principal, action, resource);')
    with pytest.raises(ConfigError) as info:
        RoutingRules.load(settings, base_dir=tmp_path)
    assert info.value.source == INLINE_SOURCE
    assert info.value.problems == [("line 1, column 1", 'rule id "x" is given twice (first at rules.cedar:1)')]


def test_validate_text_for_the_admin_api() -> None:
    assert validate_text(BUDGET + SLA) == ["budget-prefers-self-hosted", "sla"]
    with pytest.raises(ConfigError) as info:
        validate_text("forbid(principal, action, resource) when { resource.circuit == 3 };", "admin")
    assert info.value.source == "admin"
    assert info.value.problems[0][0].startswith("line 1, column ")


@pytest.mark.parametrize(("left_usd", "local_score"), [(5.0, 100), (9.99, 100), (10.0, 0), (250.0, 0), (None, 0)])
def test_under_10_usd_left_self_hosted_is_preferred(left_usd: float | None, local_score: int) -> None:
    rules = RoutingRules.from_text(BUDGET)
    cloud, local = registered(rules)
    request = RequestFacts(team="t1", key="k1", model="fast", budget_left_cents=budget_cents(left_usd))
    decision = rules.decide(request, [candidate(cloud), candidate(local)])
    ids = ("budget-prefers-self-hosted",) if local_score else ()
    assert decision.verdicts == (Verdict(cloud, True, 0, ()), Verdict(local, True, local_score, ids))
    expected = [local, cloud] if local_score else [cloud, local]
    assert decision.order() == expected
    assert rules.order(request, [candidate(cloud), candidate(local)]) == expected


def test_deployments_slower_than_the_sla_are_forbidden() -> None:
    rules = RoutingRules.from_text(SLA)
    cloud, local = registered(rules)
    pair = [candidate(cloud, latency_ms=2500), candidate(local, latency_ms=900)]
    decision = rules.decide(RequestFacts(sla_ms=1000), pair)
    assert decision.verdicts == (Verdict(cloud, False, 0, ("sla",)), Verdict(local, True, 0, ()))
    assert decision.order() == [local]
    assert rules.decide(RequestFacts(sla_ms=0), pair).order() == [cloud, local]


def test_order_matches_decide_on_the_twenty_rules() -> None:
    rules = RoutingRules.from_text(FIXTURE.read_text(), "routing_rules.cedar")
    assert len(rules.ids) == 20
    ids = [
        rules.deployment(key=f"u{i}/m", provider=p, upstream=f"u{i}", model="m", group="fast", tags=t,
                       input_price_micro_usd=micro_usd(price))
        for i, (p, t, price) in enumerate([("openai", [], 2.5), ("vllm", ["self-hosted"], None),
                                           ("anthropic", ["deprecated"], 3.0), ("groq", ["gpu-a100"], 0.05)])
    ]  # fmt: skip
    four = [candidate(d, latency_ms=300 * (d + 1), ttft_ms=100, in_flight=d) for d in ids]
    request = RequestFacts(team="platform", key="k1", sla_ms=1000, budget_left_cents=500, model="fast", stream=True)
    decision = rules.decide(request, four)
    assert [v.eligible for v in decision.verdicts] == [True, True, False, False]  # deprecated; slower than 1 s
    assert decision.verdicts[2].rules == ("deprecated",)
    assert decision.verdicts[3].rules == ("sla",)
    assert rules.order(request, four) == decision.order() == [1, 0]


def test_bad_candidates_are_value_errors() -> None:
    rules = RoutingRules.from_text(SLA)
    cloud, _ = registered(rules)
    with pytest.raises(ValueError, match="unknown deployment id 9"):
        rules.decide(RequestFacts(), [candidate(9)])
    with pytest.raises(ValueError, match='circuit "broken"'):
        rules.decide(RequestFacts(), [candidate(cloud, circuit="broken")])
    with pytest.raises(TypeError, match="a candidate is a tuple"):
        rules.policy.order(RequestFacts(), [(cloud, 1, 2)])  # type: ignore[list-item]


def test_the_core_error_is_a_core_error() -> None:
    with pytest.raises(_core.RoutePolicyError) as info:
        _core.RoutePolicy("permit(principal, action, resource) when { resource.nope };", "x.cedar")
    assert isinstance(info.value, _core.CoreError)
    assert str(info.value).startswith("x.cedar:1:44: ")


def test_decision_order_is_stable() -> None:
    verdicts = (Verdict(0, True, 5, ()), Verdict(1, True, 7, ()), Verdict(2, True, 5, ()), Verdict(3, False, 0, ()))
    assert Decision(verdicts).order() == [1, 0, 2]


@pytest.mark.parametrize(("usd", "cents"), [(None, -1), (0.0, 0), (0.004, 0), (10.0, 1000), (0.29, 29), (-1.0, 0)])
def test_budget_cents(usd: float | None, cents: int) -> None:
    assert budget_cents(usd) == cents


class FakeTarget:
    """The attributes the rules read of a ``routing.plan.Target``."""

    def __init__(self, upstream: str, kind: str, slot: int, tags: tuple[str, ...] = ()) -> None:
        self.key = f"{upstream}/m"
        self.upstream_kind = kind
        self.upstream = upstream
        self.model = "m"
        self.group = "fast"
        self.tags = tags
        self.slot = slot
        self.rule_id = -1


def test_register_and_judge_read_the_table_and_the_real_circuits() -> None:
    circuits = _core.Circuits(None, 16)
    policy = circuit_policy(CircuitSettings(), RetrySettings(), 1.0)
    rules = RoutingRules.from_text(
        SLA + '@id("cheap") @priority("5") permit(principal, action, resource)'
        " when { resource.output_price_micro_usd <= 1000000 };"
    )
    slow = FakeTarget("slow", "openai", circuits.slot("slow/m"))
    local = FakeTarget("local", "vllm", circuits.slot("local/m"), ("self-hosted",))
    for target, price in [(slow, Price(input=2.5, output=10)), (local, None)]:
        target.rule_id = rules.register(target, price)
    assert circuits.admit(slow.slot, policy) == 0
    circuits.done(slow.slot, policy, True, 2.5, 0.3, -1.0, False, 200)
    assert candidates([slow, local], circuits) == [(0, 2500, 300, 0, "closed", 0), (1, -1, -1, 0, "closed", 0)]
    verdicts = rules.judge({"model": "fast", "sla_ms": 1000, "budget_left_usd": 3.0}, [slow, local], circuits)
    assert verdicts == [(slow, False, 0, ["sla"]), (local, True, 5, ["cheap"])]
    assert rules.judge({"model": "fast"}, [slow, local], circuits)[0] == (slow, True, 0, [])
