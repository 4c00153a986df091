"""Pick the upstream HTTP client by measuring: the pass-through with aiohttp, rnet and pyreqwest.

Same pinning as load/bench.py (server on --server-cpu, nginx and wrk on --load-cpu). For each
repetition and client: JSON and SSE at --connections, req/s, p50/p99 and server CPU µs/request.
"static" (no upstream call) shows what bare Granian costs on the machine.

    .venv/bin/python load/compare_clients.py --duration 10 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import bench
import passthrough
import procs
from upstream import Upstream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--clients", nargs="+", choices=passthrough.KINDS, default=[*passthrough.KINDS])
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0, help="as in bench.py")
    args = parser.parse_args()
    procs.ensure_tools()
    procs.set_nice(args.nice)
    logdir = Path(tempfile.mkdtemp(prefix="ferrogate-clients-"))
    runs: list[dict[str, Any]] = []
    with Upstream(procs.free_port(), args.load_cpu) as up:
        assert up.proc is not None
        for rep in range(args.repeat):
            for client in args.clients:
                port = procs.free_port()
                cmd, env = passthrough.command(client, up.base, port)
                proc = bench._start_server(client, cmd, env, port, args.server_cpu, logdir)
                if proc is None:
                    raise SystemExit(f"{client} pass-through did not start:\n{(logdir / f'{client}.log').read_text()}")
                try:
                    base = f"http://127.0.0.1:{port}"
                    target = bench.Target(
                        client, proc.pid, f"{base}/v1/chat/completions", f"{base}/sse/v1/chat/completions", "bench"
                    )
                    for mode in ("json", "sse") if client != "static" else ("json",):
                        warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
                        bench.measure(target, mode, args.connections, warm, up.proc.pid)
                        result = bench.measure(target, mode, args.connections, args, up.proc.pid)
                        result["rep"] = rep
                        runs.append(result)
                        print(bench.report.progress_line(result), file=sys.stderr, flush=True)
                finally:
                    procs.stop(proc)
    print(table(runs, args))
    out = bench.ROOT / "load" / "results" / time.strftime("clients-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": bench.machine(), "args": vars(args), "runs": runs}, indent=2))
    print(f"\nresults: {out}")


def table(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"Pass-through HTTP client, {args.connections} connections, {args.duration:g} s runs, median of {args.repeat}:",
        "",
        "| client | mode | req/s | p50 ms | p99 ms | server CPU µs/req | errors |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for mode in ("json", "sse"):
        for client in args.clients:
            rows = [r for r in runs if r["target"] == client and r["mode"] == mode]
            if rows:
                rps, cpu = median(r["rps"] for r in rows), median(r["cpu_us_per_req"] for r in rows)
                p50, p99 = median(r["p50_us"] for r in rows) / 1000, median(r["p99_us"] for r in rows) / 1000
                errors = sum(r["error_count"] for r in rows)
                lines.append(f"| {client} | {mode} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {cpu:.1f} | {errors} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
