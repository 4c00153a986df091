"""Same-run A/B of routing: a one-deployment group, a two-deployment group, and a failover (the first deployment
answers 503, the second serves), on one core against one nginx upstream, on the realistic request.

Throughput: wrk at 32 connections, medians of --repeat runs, one `ferrogate serve` (one worker) per variant.
Failover cost: at 1 connection the mean latency of each variant and of the failing upstream alone (nginx's 503,
direct); the failover's extra time beyond the failed attempt's own is ``failover - one - (direct 503)``.

    .venv/bin/python load/routing.py --duration 5 --repeat 5
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import bench
import loadgen
import procs
from upstream import Upstream

UPSTREAMS = """\
upstreams:
  - {{name: bench-json, provider: openai, base_url: 'http://127.0.0.1:{port}/v1', api_key: x}}
  - {{name: bench-json-2, provider: openai, base_url: 'http://127.0.0.1:{port}/v1', api_key: x}}
  - {{name: bench-fail, provider: openai, base_url: 'http://127.0.0.1:{port}/fail/v1', api_key: x}}
  - {{name: bench-sse, provider: openai, base_url: 'http://127.0.0.1:{port}/sse/v1', api_key: x}}
routing: {{circuit: {{enabled: false}}, retries: {{budget_pct: 100, budget_min: 100000}}}}
"""
PRICE = "price: {{input: 0.15, output: 0.6}}"
SSE = "  - {{name: bench-sse, deployments: [{{upstream: bench-sse, model: bench}}]}}\n"
#: (name, the bench group's deployments)
VARIANTS = [
    ("one deployment", f"[{{{{upstream: bench-json, model: bench, {PRICE}}}}}]"),
    (
        "two deployments",
        f"[{{{{upstream: bench-json, model: bench, {PRICE}}}}}, {{{{upstream: bench-json-2, model: bench, {PRICE}}}}}]",
    ),
    (
        "failover (503, then the second)",
        f"[{{{{upstream: bench-fail, model: bench, {PRICE}}}}}, {{{{upstream: bench-json, model: bench, {PRICE}}}}}]",
    ),
]


def config(deployments: str) -> str:
    return UPSTREAMS + "model_groups:\n" + f"  - {{{{name: bench, deployments: {deployments}}}}}\n" + SSE


def main(argv: list[str] | None = None) -> None:
    args = bench.parse_args(sys.argv[1:] if argv is None else argv)
    procs.ensure_tools()
    logdir = Path(tempfile.mkdtemp(prefix="ferrogate-routing-"))
    rps: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
    latency: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
    direct_fail: list[float] = []
    with Upstream(procs.free_port(), args.load_cpu, args.sse_writes) as up:
        assert up.proc is not None
        started = []
        try:
            for i, (name, deps) in enumerate(VARIANTS):
                proc, target, problem = bench.start_gateway(args, up.port, logdir, f"v{i}", config_yaml=config(deps))
                if proc is None or target is None:
                    raise SystemExit(f"{name}: {problem}")
                started.append((name, proc, target))
            fail_url = f"http://127.0.0.1:{up.port}/fail/v1/chat/completions"
            body = loadgen.realistic_body("bench", False)
            for rep in range(args.repeat):
                for name, _, target in started:
                    target.use()
                    loadgen.run_wrk(target.json_url, connections=32, seconds=args.warmup, cpu=args.load_cpu, body=body)
                    row = bench.measure(target, "json", 32, args, up.proc.pid)
                    one = loadgen.run_wrk(target.json_url, connections=1, seconds=args.duration, cpu=args.load_cpu,
                                          body=body)  # fmt: skip
                    rps[name].append(row["rps"])
                    latency[name].append(1e6 / one["rps"])  # µs per request, one at a time
                    print(f"rep {rep} {name:32} {row['rps']:8.0f} req/s  {1e6 / one['rps']:7.1f} µs/req at 1 conn",
                          file=sys.stderr, flush=True)  # fmt: skip
                alone = loadgen.run_wrk(fail_url, connections=1, seconds=args.duration, cpu=args.load_cpu, body=body)
                direct_fail.append(1e6 / alone["rps"])
        finally:
            for _, proc, _ in started:
                procs.stop(proc)
    first = statistics.median(rps[VARIANTS[0][0]])
    base_latency = statistics.median(latency[VARIANTS[0][0]])
    fail_alone = statistics.median(direct_fail)
    print("| variant | req/s (32 conn) | vs one deployment | µs/req at 1 conn | extra µs vs one deployment |")
    print("|---|--:|--:|--:|--:|")
    for name, _ in VARIANTS:
        r, lat = statistics.median(rps[name]), statistics.median(latency[name])
        print(f"| {name} | {r:,.0f} | {r / first:.3f} | {lat:,.1f} | {lat - base_latency:+,.1f} |")
    failover = statistics.median(latency[VARIANTS[2][0]])
    extra = failover - base_latency - fail_alone
    print(f"\nthe failing upstream alone (nginx 503, direct, 1 conn): {fail_alone:,.1f} µs/req")
    print(f"failover beyond the failed attempt's own time: {extra:,.1f} µs (target: <= 1,000 µs)")
    print(f"(medians of {args.repeat} runs of {args.duration:.0f} s; server on cpu {args.server_cpu})")


if __name__ == "__main__":
    main()
