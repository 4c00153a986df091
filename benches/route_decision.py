"""Benchmark: the routing decision per request (target: under 5 µs with 10 deployments and 20 rules, in process).

What the route phase does for one request and the forward phase after the answer: resolve the group, order its
deployments by the strategy, apply the routing rules (``--rules``: 20 Cedar policies), take the first whose circuit
admits the request, and give the attempt's outcome to its circuit (``Plan.finish``); with rules, building the
request's facts too. The Router is the real one over a process-local circuit table; the request context is a real
one, built before the timed loop. Prints the median per-request time of several batches for each strategy,
without and with the rules.

    taskset -c 1 .venv/bin/python benches/route_decision.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from ferrogate.config.loader import load_config_text
from ferrogate.limits import LocalLimiter
from ferrogate.pipeline.context import RequestContext
from ferrogate.pipeline.failover import begin
from ferrogate.pipeline.router import Router
from ferrogate.routing.rules import RequestFacts

STRATEGIES = ("priority", "weighted", "least_in_flight", "latency", "cost")


def rules_text(n: int) -> str:
    """``n`` routing rules of the kinds docs/routing.md shows: SLA, budget, circuit, tags, classification."""
    kinds = [
        '@id("sla{i}") forbid(principal, action, resource) when {{ context.sla_ms > 0 && resource.ttft_ms > '
        "context.sla_ms + {i} }};",
        '@id("cheap{i}") @priority("{i}") permit(principal, action, resource) when {{ context.budget_left_cents >= 0'
        ' && context.budget_left_cents < 1000 && resource.tags.contains("self-hosted") }};',
        '@id("team{i}") forbid(principal, action, resource) when {{ principal.team == "blocked{i}" && '
        'resource.provider == "anthropic" }};',
        '@id("tag{i}") @priority("1") permit(principal, action, resource) when {{ resource.tags.contains("t{i}") }};',
    ]
    return "\n".join(kinds[i % len(kinds)].format(i=i) for i in range(n))


def config_text(strategy: str, deployments: int, rules: int) -> str:
    ups = "\n".join(f"  - {{name: u{i}, provider: mock}}" for i in range(deployments))
    deps = ", ".join(
        f"{{upstream: u{i}, model: m{i}, weight: {i + 1}, priority: {i % 3}, tags: [t{i}"
        f"{', self-hosted' if i % 2 else ''}], price: {{input: {i + 1}, output: {2 * i + 1}}}}}"
        for i in range(deployments)
    )
    text = f"upstreams:\n{ups}\nmodel_groups:\n  - {{name: g, strategy: {strategy}, deployments: [{deps}]}}\n"
    if rules:
        body = rules_text(rules).replace("'", "''")
        text += f"routing:\n  rules: '{body}'\n"
    return text


def measure(router: Router, limiter: LocalLimiter, n: int) -> float:
    """Median µs per request over 7 batches of ``n``. With rules, each request's facts are built in the loop (the
    route phase builds them per request); the request context is built once, before it."""
    headers: list[tuple[str, str]] = []
    rules = router.table.rules is not None
    times = []
    for _ in range(7):
        ctx = RequestContext("r")  # one, reused: every request has a context, routed or not
        ctx.model = "g"
        start = time.perf_counter()
        for _ in range(n):
            # what the route phase passes with rules: the request's facts (positional, as phases._rule_facts)
            facts = RequestFacts("team_1", "key_1", "", "", 800, 500, "g", False, "openai") if rules else None
            assert begin(router, ctx, limiter, headers, facts) is None
            plan = ctx.plan
            plan.begin()
            plan.finish(True, 200)
        times.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=10)
    parser.add_argument("--rules", type=int, default=20)
    parser.add_argument("-n", type=int, default=20_000)
    args = parser.parse_args()
    limiter = LocalLimiter(None, 1024)
    print(f"| strategy | {args.deployments} deployments, no rules | with {args.rules} rules |")
    print("|---|--:|--:|")
    for strategy in STRATEGIES:
        row = []
        for rules in (0, args.rules) if args.rules else (0,):
            config = load_config_text(config_text(strategy, args.deployments, rules), "bench.yaml", {})
            router = Router(config, load_rules=_rules_loader() if rules else None)
            row.append(measure(router, limiter, args.n))
            asyncio.run(router.close())
        print(f"| {strategy} | " + " | ".join(f"{t:.2f} µs" for t in row) + " |")


def _rules_loader() -> object:
    from ferrogate.routing.rules import RoutingRules

    return RoutingRules.load


if __name__ == "__main__":
    main()
