"""One command that measures direct-to-upstream, the pass-through floor and the gateway in one run.

    .venv/bin/python load/bench.py --duration 10 --repeat 3

Starts the nginx mock upstream, load/passthrough.py and `ferrogate serve` (skipped with a message when
it is not installed or does not answer), pins the server under test to --server-cpu and nginx, wrk and
hey to --load-cpu, then for each target x (json, sse) x connections runs wrk and reads the server's
CPU time (all its processes) from /proc before and after. A fixed-rate run (hey) follows for the
added latency. Prints markdown tables, PASS/FAIL against the targets, and writes load/results/*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loadgen
import passthrough
import procs
import report
from upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_YAML = """\
upstreams:
  - name: bench-json
    provider: openai
    base_url: http://127.0.0.1:{port}/v1
    api_key: x
  - name: bench-sse
    provider: openai
    base_url: http://127.0.0.1:{port}/sse/v1
    api_key: x
model_groups:
  - name: bench
    deployments: [{{upstream: bench-json, model: bench, price: {{input: 0.15, output: 0.6}}}}]
  - name: bench-sse
    deployments: [{{upstream: bench-sse, model: bench}}]
"""


@dataclass
class Target:
    """A server under test: where JSON and SSE requests go and which process tree to charge CPU to."""

    name: str
    pid: int
    json_url: str
    sse_url: str
    sse_model: str
    key: str = "x"  # the bearer credential wrk, hey and the probes send (BENCH_KEY)

    def use(self) -> None:
        """Make this target's key the one the load generators send."""
        os.environ["BENCH_KEY"] = self.key


def _probe(url: str, model: str, stream: bool) -> str | None:
    """POST one chat request; None if it answered 200 with the expected body, else what went wrong."""
    body = loadgen.request_body(model, stream).encode()
    headers = {"Authorization": f"Bearer {os.environ.get('BENCH_KEY', 'x')}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - fixed 127.0.0.1 URL
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - fixed 127.0.0.1 URL
            text = resp.read().decode(errors="replace")
    except Exception as exc:
        return f"{url}: {exc!r}"
    expected = "data: [DONE]" if stream else '"chat.completion"'
    return None if expected in text else f"{url}: unexpected body {text[:300]!r}"


def _start_server(name: str, cmd: list[str], env: dict[str, str] | None, port: int, cpu: int, logdir: Path) -> Any:
    proc = procs.start(cmd, cpu=cpu, log_path=logdir / f"{name}.log", env=env)
    if not procs.wait_port(port, proc, timeout=30):
        procs.stop(proc)
        return None
    time.sleep(0.5)  # let Granian finish spawning its worker
    return proc


def start_gateway(
    args: argparse.Namespace,
    upstream_port: int,
    logdir: Path,
    name: str = "gateway",
    *,
    limits: bool = True,
    metering: bool = True,
    extra_yaml: str = "",
    config_yaml: str | None = None,
) -> tuple[Any, Target | None, str]:
    """Start `ferrogate serve` on the server CPU; (proc, target, '') or (None, None, reason to skip).

    The default gateway runs the whole pipeline of a limited key: key rpm + tpm buckets (limits that never
    refuse: their cost is measured, not their refusals) and usage metering. ``bare`` (``--ab``): a key without
    limits and metering off, the same run's baseline for the cost of limits + metering. ``limits`` and
    ``metering`` switch the two separately; ``extra_yaml`` is appended to the configuration (e.g. the
    ``metrics``, ``audit`` or ``logging`` switches, see load/features.py); ``config_yaml`` replaces
    :data:`GATEWAY_YAML` (formatted with ``port`` the same way; load/routing.py).
    """
    exe = Path(args.ferrogate)
    if not exe.exists():
        return None, None, f"{exe} not found (gateway not installed yet)"
    logdir = logdir / name
    logdir.mkdir(exist_ok=True)
    config = logdir / "gateway.yaml"
    base = (config_yaml or GATEWAY_YAML).format(port=upstream_port)
    config.write_text(base + ("" if metering else "metering: {enabled: false}\n") + extra_yaml)
    port = procs.free_port()
    cmd = [str(exe), "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += args.gateway_arg
    # The full pipeline: a real virtual key checked on every request (no --dev), on a fresh SQLite store.
    env = dict(
        os.environ,
        FERROGATE_MASTER_KEY="bench-master-key-0123456789",
        FERROGATE_DATABASE_URL=f"sqlite:///{logdir / 'gateway.db'}",
    )
    manage = [str(exe)]
    team = subprocess.run(
        [*manage, "teams", "create", "--name", "bench"], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    team_id = json.loads(team.stdout)["id"]
    limit_args = ["--rpm", str(10**9), "--tpm", str(10**12)] if limits else []
    key = subprocess.run(
        [*manage, "keys", "create", "--name", "bench", "--team", team_id, *limit_args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    what = f"{'key rpm+tpm limits' if limits else 'no limits'}, metering {'on' if metering else 'off'}"
    print(f"{name}: {' '.join(cmd[1:])} (a virtual key; {what})", file=sys.stderr)
    proc = _start_server(name, cmd, env, port, args.server_cpu, logdir)
    if proc is None:
        log = (logdir / f"{name}.log").read_text(errors="replace")[-3000:]
        return None, None, f"{name} did not start:\n{log}"
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    target = Target(name, proc.pid, url, url, "bench-sse", key=json.loads(key.stdout)["key"])
    target.use()
    problem = _probe(url, "bench", False) or _probe(url, "bench-sse", True)
    if problem:
        procs.stop(proc)
        return None, None, f"gateway answered wrongly: {problem}"
    return proc, target, ""


def measure(target: Target, mode: str, conns: int, args: argparse.Namespace, nginx_pid: int) -> dict[str, Any]:
    """One wrk run against a target with the server's CPU time and both cores' utilisation around it."""
    stream = mode == "sse"
    url = target.sse_url if stream else target.json_url
    model = target.sse_model if stream else "bench"
    cpu0, up0, cores0 = procs.cpu_seconds(target.pid), procs.cpu_seconds(nginx_pid), procs.core_busy()
    body = None if getattr(args, "small", False) else loadgen.realistic_body(model, stream)
    result = loadgen.run_wrk(
        url, connections=conns, seconds=args.duration, cpu=args.load_cpu, model=model, stream=stream, body=body
    )
    cpu1, up1, cores1 = procs.cpu_seconds(target.pid), procs.cpu_seconds(nginx_pid), procs.core_busy()
    busy = procs.busy_percent(cores0, cores1)
    result.update(
        target=target.name,
        mode=mode,
        connections=conns,
        cpu_us_per_req=(cpu1 - cpu0) * 1e6 / max(result["requests"], 1),
        server_cpu_percent=100.0 * (cpu1 - cpu0) / (result["duration_us"] / 1e6),
        upstream_cpu_percent=100.0 * (up1 - up0) / (result["duration_us"] / 1e6),
        server_core_busy=busy.get(args.server_cpu, 0.0),
        load_core_busy=busy.get(args.load_cpu, 0.0),
    )
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    procs.ensure_tools()
    logdir = Path(tempfile.mkdtemp(prefix="ferrogate-bench-"))
    servers: list[Any] = []
    skipped = ""
    runs: list[dict[str, Any]] = []
    fixed: list[dict[str, Any]] = []
    memory: dict[str, Any] = {}
    procs.set_nice(args.nice)
    with Upstream(procs.free_port(), args.load_cpu, args.sse_writes) as up:
        assert up.proc is not None
        targets = [
            Target(
                "direct", up.proc.pid, f"{up.base}/v1/chat/completions", f"{up.base}/sse/v1/chat/completions", "bench"
            )
        ]
        try:
            pt_port = procs.free_port()
            cmd, env = passthrough.command(args.client, up.base, pt_port)
            pt = _start_server("passthrough", cmd, env, pt_port, args.server_cpu, logdir)
            if pt is None:
                raise SystemExit(f"pass-through did not start:\n{(logdir / 'passthrough.log').read_text()[-3000:]}")
            servers.append(pt)
            base = f"http://127.0.0.1:{pt_port}"
            targets.append(
                Target("passthrough", pt.pid, f"{base}/v1/chat/completions", f"{base}/sse/v1/chat/completions", "bench")
            )
            if args.skip_gateway:
                skipped = "--skip-gateway given"
            else:
                gw, gw_target, skipped = start_gateway(args, up.port, logdir)
                if gw is not None:
                    servers.append(gw)
                    targets.append(gw_target)
                if args.ab and not skipped:
                    bare, bare_target, skipped = start_gateway(
                        args, up.port, logdir, "gateway-bare", limits=False, metering=False
                    )
                    if bare is not None:
                        servers.append(bare)
                        targets.append(bare_target)
            if skipped:
                print(f"SKIPPING the gateway: {skipped}", file=sys.stderr)
            for target in targets:
                target.use()
                for mode in args.modes:
                    problem = _probe(
                        target.sse_url if mode == "sse" else target.json_url,
                        target.sse_model if mode == "sse" else "bench",
                        mode == "sse",
                    )
                    if problem:
                        raise SystemExit(f"{target.name} {mode} probe failed: {problem}")
            for rep in range(args.repeat):
                for target in targets:
                    target.use()
                    for mode in args.modes:
                        # Warm up pools and caches before the measured runs of this target and mode.
                        url = target.sse_url if mode == "sse" else target.json_url
                        model = target.sse_model if mode == "sse" else "bench"
                        loadgen.run_wrk(
                            url,
                            connections=max(args.connections),
                            seconds=args.warmup,
                            cpu=args.load_cpu,
                            model=model,
                            stream=mode == "sse",
                        )
                        for conns in args.connections:
                            result = measure(target, mode, conns, args, up.proc.pid)
                            result["rep"] = rep
                            runs.append(result)
                            print(report.progress_line(result), file=sys.stderr, flush=True)
                for target in targets:
                    target.use()
                    hey = loadgen.run_hey(
                        target.json_url,
                        rate=args.rate,
                        workers=args.rate_workers,
                        seconds=args.duration,
                        cpu=args.load_cpu,
                    )
                    hey.update(target=target.name, rep=rep, rate=args.rate)
                    fixed.append(hey)
                    print(report.fixed_line(hey), file=sys.stderr, flush=True)
            # Memory after the load, as the issue asks it beside the throughput: every process of each server
            memory = {t.name: procs.memory(t.pid) for t in targets if t.name != "direct"}
        finally:
            for proc in reversed(servers):
                procs.stop(proc)
    return {
        "memory": memory,
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": vars(args),
        "gateway_skipped": skipped,
        "runs": runs,
        "fixed_rate": fixed,
        "logs": str(logdir),
    }


def machine() -> dict[str, Any]:
    """nproc, CPU model and kernel (no host names or paths)."""
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "unknown",
    )
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(), "python": platform.python_version()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target and mode")
    parser.add_argument(
        "--small",
        action="store_true",
        help="send the small request (one 'hello' message) instead of the realistic one (system + user, "
        "temperature, max_tokens, user; the default)",
    )
    parser.add_argument("--realistic", action="store_true", help=argparse.SUPPRESS)  # the default; kept for scripts
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--modes", nargs="+", choices=["json", "sse"], default=["json", "sse"])
    parser.add_argument("--rate", type=int, default=1000, help="fixed offered rate (req/s) for hey")
    parser.add_argument("--rate-workers", type=int, default=10, help="hey -c; -q is rate / workers")
    parser.add_argument(
        "--client",
        choices=["auto", *passthrough.CLIENTS],
        default="auto",
        help="pass-through HTTP client; auto = the one python/ferrogate/providers/http.py imports",
    )
    parser.add_argument("--gateway-arg", action="append", default=[], help="extra argument for ferrogate serve")
    parser.add_argument("--ferrogate", default=str(Path(sys.executable).parent / "ferrogate"))
    parser.add_argument("--skip-gateway", action="store_true")
    parser.add_argument(
        "--ab", action="store_true", help="also run gateway-bare (no limits, metering off) for the same-run A/B"
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU for the server under test")
    parser.add_argument("--load-cpu", type=int, default=1, help="CPU for nginx, wrk and hey")
    parser.add_argument(
        "--nice",
        type=int,
        default=-10 if os.geteuid() == 0 else 0,
        help="niceness of every process started, default -10 as root: other work on the machine yields to the bench",
    )
    parser.add_argument(
        "--sse-writes", choices=["event", "single"], default="event", help="nginx: flush per SSE event, or one write"
    )
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default load/results/bench-<time>.json)")
    return parser.parse_args(argv)


def gateway_client() -> str:
    """The HTTP client the gateway imports, so the pass-through floor uses the same one (aiohttp if unsure)."""
    source = ROOT / "python" / "ferrogate" / "providers" / "http.py"
    text = source.read_text() if source.exists() else ""
    found = [c for c in passthrough.CLIENTS if re.search(rf"^\s*(import|from) {c}\b", text, re.MULTILINE)]
    return found[0] if len(found) == 1 else "aiohttp"


def main() -> None:
    args = parse_args()
    if args.client == "auto":
        args.client = gateway_client()
    results = run(args)
    out = args.out or ROOT / "load" / "results" / time.strftime("bench-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = report.summarise(results)
    results["summary"] = summary
    out.write_text(json.dumps(results, indent=2, default=str))
    print(report.markdown(results, summary))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
