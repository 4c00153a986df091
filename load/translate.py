"""Translated against untranslated streaming: an Anthropic-upstream stream sent to the client as OpenAI chat chunks,
against the same stream relayed as it came (the issue's figure: translated within 10% of untranslated).

One `ferrogate serve` (one worker pinned to --server-cpu, a virtual key with rpm + tpm limits and usage metering, as
load/bench.py's gateway) serves the priced model group `claude-bench` from the nginx mock's
`POST /anthropic/v1/messages` (load/nginx/anthropic_stream.sse, nginx pinned to --load-cpu). In each repetition,
at each connection count, wrk (on --load-cpu) measures the two routes back to back (their order alternates):

    translated  POST /v1/chat/completions, the realistic chat body, stream: Anthropic events -> OpenAI chunks
    relayed     POST /v1/messages, the same request in Anthropic's form, stream: the events relayed as they are

The deployment keeps the group's model name, so the relayed route forwards the client's body untouched: the
difference is the request translation (chat -> Messages) and the stream's. Ratios are taken within a repetition
and their median is reported; the results go to load/results/translate-<time>.json.

    .venv/bin/python load/translate.py --duration 10 --repeat 5
    .venv/bin/python load/translate.py --duration 2 --repeat 1      # a quick check that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import bench
import loadgen
import procs
import report
from upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent
MODEL = "claude-bench"
MIN_RATIO = 0.90  # translated streams/s at least 90% of relayed
GATEWAY_YAML = """\
upstreams:
  - name: anthropic-bench
    provider: anthropic
    base_url: http://127.0.0.1:{port}/anthropic/v1
    api_key: x
model_groups:
  - name: claude-bench
    deployments: [{{upstream: anthropic-bench, price: {{input: 3.0, output: 15.0}}}}]
"""


def messages_body(model: str) -> str:
    """The realistic request (loadgen.REALISTIC) in the Messages API's form, streamed.

    Example:
        >>> json.loads(messages_body("claude-bench"))["metadata"]
        {'user_id': 'bench-user-42'}
    """
    chat: dict[str, Any] = loadgen.REALISTIC
    system, user = chat["messages"]
    body = {
        "model": model,
        "system": system["content"],
        "messages": [{"role": "user", "content": user["content"]}],
        "max_tokens": chat["max_tokens"],
        "temperature": chat["temperature"],
        "metadata": {"user_id": chat["user"]},
        "stream": True,
    }
    return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True)
class Route:
    """One side of the comparison: the gateway path, the body, extra headers (BENCH_HEADERS) and what an
    answer must hold."""

    name: str
    path: str
    body: str
    headers: str
    expect: tuple[str, ...]


ROUTES = (
    Route(
        "translated",
        "/v1/chat/completions",
        loadgen.realistic_body(MODEL, True),
        "",
        ('"object":"chat.completion.chunk"', '"content":"Hello"', "data: [DONE]"),
    ),
    Route(
        "relayed",
        "/v1/messages",
        messages_body(MODEL),
        "anthropic-version: 2023-06-01",
        ('"type":"text_delta","text":"Hello"', "event: message_stop"),
    ),
)


def probe(base: str, route: Route, key: str) -> str | None:
    """POST one request of the route; None if it answered 200 with a complete stream, else what went wrong."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for line in route.headers.splitlines():
        name, value = line.split(": ", 1)
        headers[name] = value
    req = urllib.request.Request(base + route.path, data=route.body.encode(), headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - fixed 127.0.0.1 URL
            text = resp.read().decode(errors="replace")
    except Exception as exc:
        return f"{route.path}: {exc!r}"
    missing = [e for e in route.expect if e not in text]
    return f"{route.path}: no {missing} in {text[:400]!r}" if missing else None


def start_gateway(args: argparse.Namespace, upstream_port: int, logdir: Path) -> tuple[Any, str, str]:
    """`ferrogate serve` on the server CPU with a limited virtual key on a fresh SQLite store, as bench.py's
    gateway; returns (process, base URL, key)."""
    exe = Path(args.ferrogate)
    if not exe.exists():
        raise SystemExit(f"{exe} not found (gateway not installed yet)")
    config = logdir / "gateway.yaml"
    config.write_text(GATEWAY_YAML.format(port=upstream_port))
    env = dict(
        os.environ,
        FERROGATE_MASTER_KEY="bench-master-key-0123456789",
        FERROGATE_DATABASE_URL=f"sqlite:///{logdir / 'gateway.db'}",
    )

    def manage(*argv: str) -> dict[str, Any]:
        done = subprocess.run([str(exe), *argv], capture_output=True, text=True, env=env, timeout=60, check=True)
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    team = manage("teams", "create", "--name", "bench")
    key = manage("keys", "create", "--name", "bench", "--team", team["id"], "--rpm", str(10**9), "--tpm", str(10**12))
    port = procs.free_port()
    cmd = [str(exe), "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += args.gateway_arg
    print(f"gateway: {' '.join(cmd[1:])} (a virtual key; key rpm+tpm limits, metering on)", file=sys.stderr)
    proc = procs.start(cmd, cpu=args.server_cpu, log_path=logdir / "gateway.log", env=env)
    if not procs.wait_port(port, proc, timeout=30):
        procs.stop(proc)
        raise SystemExit(f"gateway did not start:\n{(logdir / 'gateway.log').read_text(errors='replace')[-3000:]}")
    time.sleep(0.5)  # let Granian finish spawning its worker
    return proc, f"http://127.0.0.1:{port}", str(key["key"])


def measure(route: Route, base: str, conns: int, args: argparse.Namespace, pids: tuple[int, int]) -> dict[str, Any]:
    """One wrk run of a route with the gateway's and nginx's CPU time and both cores' utilisation around it."""
    gateway, nginx = pids
    os.environ["BENCH_HEADERS"] = route.headers
    cpu0, up0, cores0 = procs.cpu_seconds(gateway), procs.cpu_seconds(nginx), procs.core_busy()
    result = loadgen.run_wrk(
        base + route.path, connections=conns, seconds=args.duration, cpu=args.load_cpu, model=MODEL, body=route.body
    )
    cpu1, up1, cores1 = procs.cpu_seconds(gateway), procs.cpu_seconds(nginx), procs.core_busy()
    busy = procs.busy_percent(cores0, cores1)
    seconds = result["duration_us"] / 1e6
    result.update(
        target=route.name,
        mode="sse",
        connections=conns,
        cpu_us_per_req=(cpu1 - cpu0) * 1e6 / max(result["requests"], 1),
        server_cpu_percent=100.0 * (cpu1 - cpu0) / seconds,
        upstream_cpu_percent=100.0 * (up1 - up0) / seconds,
        server_core_busy=busy.get(args.server_cpu, 0.0),
        load_core_busy=busy.get(args.load_cpu, 0.0),
    )
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    procs.ensure_tools()
    procs.set_nice(args.nice)
    logdir = Path(tempfile.mkdtemp(prefix="ferrogate-translate-"))
    runs: list[dict[str, Any]] = []
    with Upstream(procs.free_port(), args.load_cpu, args.sse_writes) as up:
        assert up.proc is not None
        proc, base, key = start_gateway(args, up.port, logdir)
        try:
            os.environ["BENCH_KEY"] = key
            for route in ROUTES:
                problem = probe(base, route, key)
                if problem:
                    raise SystemExit(f"{route.name} probe failed: {problem}")
            for rep in range(args.repeat):
                order = ROUTES if rep % 2 == 0 else ROUTES[::-1]
                for route in order:  # warm up pools and caches before the measured runs
                    os.environ["BENCH_HEADERS"] = route.headers
                    url, conns = base + route.path, max(args.connections)
                    loadgen.run_wrk(url, connections=conns, seconds=args.warmup, cpu=args.load_cpu, body=route.body)
                for conns in args.connections:
                    for route in order:
                        result = measure(route, base, conns, args, (proc.pid, up.proc.pid))
                        result["rep"] = rep
                        runs.append(result)
                        print(report.progress_line(result), file=sys.stderr, flush=True)
        finally:
            procs.stop(proc)
    return {
        "machine": bench.machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": vars(args),
        "runs": runs,
        "logs": str(logdir),
    }


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per connection count: medians of streams/s and CPU per stream of each route, and the medians of the
    per-repetition ratios translated / relayed."""
    by = {(r["target"], r["connections"], r["rep"]): r for r in runs}
    table = []
    for conns in sorted({r["connections"] for r in runs}):
        row: dict[str, Any] = {"connections": conns}
        for route in ROUTES:
            rows = [r for r in runs if (r["target"], r["connections"]) == (route.name, conns)]
            row[f"{route.name}_rps"] = median(r["rps"] for r in rows)
            row[f"{route.name}_cpu_us"] = median(r["cpu_us_per_req"] for r in rows)
            row[f"{route.name}_errors"] = sum(r["error_count"] for r in rows)
        pairs = [
            (a, by[("relayed", conns, rep)])
            for (name, c, rep), a in by.items()
            if name == "translated" and c == conns and ("relayed", conns, rep) in by
        ]
        row["rps_ratio"] = median(a["rps"] / b["rps"] for a, b in pairs) if pairs else None
        row["cpu_ratio"] = median(a["cpu_us_per_req"] / b["cpu_us_per_req"] for a, b in pairs) if pairs else None
        ok = row["rps_ratio"] is not None and row["rps_ratio"] >= MIN_RATIO
        row["verdict"] = "n/a" if row["rps_ratio"] is None else ("PASS" if ok else "FAIL")
        table.append(row)
    return table


def markdown(results: dict[str, Any], table: list[dict[str, Any]]) -> str:
    """The table docs/benchmarks.md describes."""
    m, a = results["machine"], results["args"]
    out = [
        f"Machine: {m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}. "
        f"Gateway on CPU {a['server_cpu']}, nginx + wrk on CPU {a['load_cpu']}. {a['duration']:g} s per run, "
        f"median of {a['repeat']}. nice {a['nice']}, nginx SSE writes: {a['sse_writes']}.",
        "",
        "| conns | translated streams/s | relayed streams/s | translated / relayed | translated CPU µs/stream "
        f"| relayed CPU µs/stream | CPU translated / relayed | errors | >= {MIN_RATIO:.2f} |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in table:
        ratio = "-" if r["rps_ratio"] is None else f"{r['rps_ratio']:.3f}"
        cpu = "-" if r["cpu_ratio"] is None else f"{r['cpu_ratio']:.3f}"
        out.append(
            f"| {r['connections']} | {r['translated_rps']:.0f} | {r['relayed_rps']:.0f} | {ratio} "
            f"| {r['translated_cpu_us']:.1f} | {r['relayed_cpu_us']:.1f} | {cpu} "
            f"| {r['translated_errors'] + r['relayed_errors']} | {r['verdict']} |"
        )
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per route and repetition")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--gateway-arg", action="append", default=[], help="extra argument for ferrogate serve")
    parser.add_argument("--ferrogate", default=str(Path(sys.executable).parent / "ferrogate"))
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU for the gateway")
    parser.add_argument("--load-cpu", type=int, default=1, help="CPU for nginx and wrk")
    parser.add_argument(
        "--nice",
        type=int,
        default=-10 if os.geteuid() == 0 else 0,
        help="niceness of every process started, default -10 as root: other work on the machine yields to the bench",
    )
    parser.add_argument(
        "--sse-writes", choices=["event", "single"], default="event", help="nginx: flush per SSE event, or one write"
    )
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default load/results/translate-<t>.json)")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    results = run(args)
    table = summarise(results["runs"])
    results["summary"] = table
    out = args.out or ROOT / "load" / "results" / time.strftime("translate-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(markdown(results, table))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
