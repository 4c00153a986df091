"""Load generators for the harness: wrk for closed-loop throughput, hey for a fixed offered rate.

Both run pinned to the load CPU and stop by themselves (wrk -d, hey -z, plus a subprocess timeout).

Example:
    >>> run_wrk("http://127.0.0.1:8081/v1/chat/completions", connections=8, seconds=5, cpu=1)
    {'requests': 160000, 'rps': 32000.0, 'p50_us': 230, ...}
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import procs

LUA = Path(__file__).resolve().parent / "wrk" / "post.lua"
CHAT = '{"model":"%s","messages":[{"role":"user","content":"hello"}]%s}'


def request_body(model: str, stream: bool) -> str:
    """The small chat request every run sends."""
    return CHAT % (model, ',"stream":true' if stream else "")


#: The realistic request: a system and a user message (~60 prompt tokens), temperature, max_tokens, user.
REALISTIC = {
    "messages": [
        {
            "role": "system",
            "content": "You are a concise assistant for an engineering team. Answer in plain English, cite the"
            " relevant configuration keys, and never invent values you were not given.",
        },
        {
            "role": "user",
            "content": "Our gateway returns 429 for one team but not for the others; which limits and budgets"
            " should I check first, and in what order?",
        },
    ],
    "temperature": 0.7,
    "max_tokens": 256,
    "user": "bench-user-42",
}


def realistic_body(model: str, stream: bool) -> str:
    """The realistic chat request as JSON text.

    Example:
        >>> '"max_tokens":256' in realistic_body("bench", False)
        True
    """
    return json.dumps({"model": model, **REALISTIC, **({"stream": True} if stream else {})}, separators=(",", ":"))


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    cpu: int,
    model: str = "bench",
    stream: bool = False,
    body: str | None = None,
) -> dict[str, Any]:
    """One wrk run (one thread, POST via wrk/post.lua); returns requests, rps and latency percentiles in µs.

    ``body``: the request body to send (default: the small chat request of ``model`` and ``stream``).
    """
    env = dict(os.environ, BENCH_MODEL=model, BENCH_STREAM="1" if stream else "0")
    if body is not None:
        body_file = Path(tempfile.gettempdir()) / f"ferrogate-bench-body-{os.getpid()}.json"
        body_file.write_text(body)
        env["BENCH_BODY_FILE"] = str(body_file)
    whole = max(1, round(seconds))  # wrk takes whole seconds only
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{whole}s", "--timeout", "5s", "-s", str(LUA), url]
    cmd = procs.pinned(cmd, cpu)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=whole + 30, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result for {url}:\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["error_count"] = sum(result["errors"].values())
    return result


def _grouped_percentile(values: list[float], pct: float, step: float) -> float:
    """Percentile of values rounded to `step`, interpolated inside the rounding bin (grouped-data median).

    hey prints times with 0.1 ms resolution; treating each rounded value as spread evenly over its bin
    recovers sub-bin resolution for medians of thousands of samples.
    """
    ordered = sorted(values)
    rank = pct / 100.0 * len(ordered)
    bins: dict[float, int] = {}
    for v in ordered:
        bins[v] = bins.get(v, 0) + 1
    below = 0
    for value in sorted(bins):
        count = bins[value]
        if below + count >= rank:
            return value - step / 2 + step * (rank - below) / count
        below += count
    return ordered[-1]


def run_hey(
    url: str, *, rate: int, workers: int, seconds: float, cpu: int, model: str = "bench", stream: bool = False
) -> dict[str, Any]:
    """Fixed offered rate with hey (-q per worker x -c workers); latency percentiles in µs."""
    per_worker = max(1, math.ceil(rate / workers))
    cmd = ["hey", "-z", f"{seconds:g}s", "-c", str(workers), "-q", str(per_worker)]
    cmd += ["-m", "POST", "-T", "application/json", "-H", f"Authorization: Bearer {os.environ.get('BENCH_KEY', 'x')}"]
    cmd += ["-d", request_body(model, stream), "-o", "csv", url]
    cmd = procs.pinned(cmd, cpu)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    if not rows:
        raise RuntimeError(f"hey gave no result for {url}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    # Skip the requests that opened a connection: steady-state latency is what is compared.
    steady = [float(r["response-time"]) * 1e6 for r in rows if float(r["DNS+dialup"]) == 0.0]
    non_ok = sum(1 for r in rows if r["status-code"] != "200")
    return {
        "requests": len(rows),
        "rps": len(rows) / seconds,
        "non_200": non_ok,
        "p50_us": _grouped_percentile(steady, 50, 100.0),
        "p90_us": _grouped_percentile(steady, 90, 100.0),
        "p99_us": _grouped_percentile(steady, 99, 100.0),
        "mean_us": sum(steady) / len(steady),
    }
