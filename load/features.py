"""Same-run A/B of the gateway's features: what limits, metering, metrics, the request log and the audit
trail each cost, on one core, against one nginx upstream (JSON chat completions through wrk).

Every variant is a `ferrogate serve` with one worker pinned to --server-cpu and a real virtual key; they are
measured in turn, --repeat times, and the medians of req/s and server CPU per request are compared with
the previous variant and with the first (the foundation path: key auth, no limits, nothing recorded).

    .venv/bin/python load/features.py --duration 6 --repeat 3
    .venv/bin/python load/features.py --duration 6 --repeat 7 --last 3   # only the audit step, more repetitions
    .venv/bin/python load/features.py --duration 5 --repeat 9 --last 3   # the journal's A/B (--small: the toy body)
    .venv/bin/python load/features.py --duration 5 --repeat 9 --last 2   # the guardrails' A/B (default policy)
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

OFF = "metrics: {enabled: false}\nlogging: {requests: false}\naudit: {requests: false}\n"
#: (name, key has rpm+tpm limits, usage metering, extra configuration): each adds one feature to the one before
VARIANTS = [
    ("foundation", False, False, OFF),
    ("+limits+metering", True, True, OFF),
    ("+metrics", True, True, "logging: {requests: false}\naudit: {requests: false}\n"),
    ("+request log", True, True, "audit: {requests: false}\n"),
    ("+audit", True, True, "server: {journal: false}\nguardrails: {enabled: false}\n"),
    ("+journal", True, True, "guardrails: {enabled: false}\n"),
    ("+guardrails (everything)", True, True, ""),
]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    last = len(VARIANTS)
    if "--last" in argv:  # only the last N variants (the first of them is the baseline of the ratios)
        at = argv.index("--last")
        last = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    variants = VARIANTS[-last:]
    args = bench.parse_args(argv)
    procs.ensure_tools()
    logdir = Path(tempfile.mkdtemp(prefix="ferrogate-features-"))
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in variants}
    with Upstream(procs.free_port(), args.load_cpu, args.sse_writes) as up:
        assert up.proc is not None
        started = []
        try:
            for i, (name, limits, metering, extra) in enumerate(variants):
                proc, target, problem = bench.start_gateway(
                    args, up.port, logdir, f"v{i}", limits=limits, metering=metering, extra_yaml=extra
                )
                if proc is None or target is None:
                    raise SystemExit(f"{name}: {problem}")
                started.append((name, proc, target))
            for rep in range(args.repeat):
                for name, _, target in started:
                    target.use()
                    loadgen.run_wrk(target.json_url, connections=32, seconds=args.warmup, cpu=args.load_cpu)
                    row = bench.measure(target, "json", 32, args, up.proc.pid)
                    results[name].append((row["rps"], row["cpu_us_per_req"]))
                    print(f"rep {rep} {name:24} {row['rps']:8.0f} req/s {row['cpu_us_per_req']:7.1f} µs/req",
                          file=sys.stderr, flush=True)  # fmt: skip
        finally:
            for _, proc, _ in started:
                procs.stop(proc)
    print("| variant | req/s | CPU µs/req | req/s vs previous | req/s vs first |")
    print("|---|--:|--:|--:|--:|")
    first = prev = None
    before = ""
    per_rep: list[str] = []
    for name, *_ in variants:
        rps = statistics.median(r for r, _ in results[name])
        cpu = statistics.median(c for _, c in results[name])
        first = first or rps
        vs_prev = "-" if prev is None else f"{rps / prev:.2f}"
        print(f"| {name} | {rps:.0f} | {cpu:.1f} | {vs_prev} | {rps / first:.2f} |")
        if prev is not None:  # each repetition measures the variants back to back: their ratios pair up
            pairs = [a[0] / b[0] for a, b in zip(results[name], results[before], strict=True)]
            per_rep.append(f"{name} vs previous, per repetition: {' '.join(f'{p:.2f}' for p in pairs)}")
        before = name
        prev = rps
    print("\n" + "\n".join(per_rep))
    print(f"\n{len(variants)} variants x {args.repeat} repetitions of {args.duration:g} s, JSON, 32 connections")


if __name__ == "__main__":
    main()
