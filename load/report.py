"""Medians, target ratios and markdown tables for load/bench.py results.

Ratios are taken within one repetition (the machine is noisy; both sides of a ratio share the same
minute) and the median over repetitions is reported.

Example:
    >>> summary = summarise(results)
    >>> print(markdown(results, summary))
"""

from __future__ import annotations

from statistics import median
from typing import Any

# The targets, one worker on one core.
MAX_CPU_RATIO = 1.3  # gateway CPU per JSON request / pass-through's
MIN_JSON_RATIO = 0.75  # gateway JSON req/s / pass-through's (issue 14)
MIN_SSE_RATIO = 0.75  # gateway SSE streams/s / pass-through's (issue 14)
MAX_RSS_MB = 120.0  # every process of a one-worker gateway after the load (issue 14)
MAX_AB_LOSS = 0.15  # gateway (limits + metering) throughput may be at most 15% under gateway-bare's
MAX_ADDED_P50_US = 300.0  # at the fixed rate, gateway minus direct
MAX_ADDED_P99_US = 1000.0


def progress_line(r: dict[str, Any]) -> str:
    return (
        f"rep {r.get('rep', 0)} {r['target']:<11} {r['mode']:<4} c={r['connections']:<3} "
        f"{r['rps']:>9.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:6.2f} ms  "
        f"cpu {r['cpu_us_per_req']:6.1f} us/req  server {r['server_cpu_percent']:3.0f}%  "
        f"nginx {r['upstream_cpu_percent']:3.0f}%  load core {r['load_core_busy']:3.0f}%  errors {r['error_count']}"
    )


def fixed_line(r: dict[str, Any]) -> str:
    return (
        f"rep {r['rep']} {r['target']:<11} fixed {r['rate']} req/s: got {r['rps']:.0f} req/s  "
        f"p50 {r['p50_us'] / 1000:.3f} ms  p99 {r['p99_us'] / 1000:.3f} ms  non-200 {r['non_200']}"
    )


def _by_rep(rows: list[dict[str, Any]], **match: Any) -> dict[int, dict[str, Any]]:
    return {r["rep"]: r for r in rows if all(r.get(k) == v for k, v in match.items())}


def _ratios(rows: list[dict[str, Any]], key: str, num: dict[str, Any], den: dict[str, Any]) -> list[float]:
    top, bottom = _by_rep(rows, **num), _by_rep(rows, **den)
    return [top[rep][key] / bottom[rep][key] for rep in top if rep in bottom and bottom[rep][key]]


def _diffs(rows: list[dict[str, Any]], key: str, target: str, base_target: str = "direct") -> list[float]:
    top, base = _by_rep(rows, target=target), _by_rep(rows, target=base_target)
    return [top[rep][key] - base[rep][key] for rep in top if rep in base]


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Medians per (target, mode, connections), fixed-rate medians, and the target checks."""
    runs, fixed = results["runs"], results["fixed_rate"]
    table = []
    keys = sorted({(r["target"], r["mode"], r["connections"]) for r in runs}, key=lambda k: (k[1], k[2]))
    order = {"direct": 0, "passthrough": 1, "gateway-bare": 2, "gateway": 3}
    keys.sort(key=lambda k: (k[1], k[2], order.get(k[0], 9)))
    for target, mode, conns in keys:
        rows = [r for r in runs if (r["target"], r["mode"], r["connections"]) == (target, mode, conns)]
        row: dict[str, Any] = {"target": target, "mode": mode, "connections": conns, "n": len(rows)}
        for field in ("rps", "p50_us", "p99_us", "cpu_us_per_req", "server_cpu_percent", "upstream_cpu_percent"):
            row[field] = median(r[field] for r in rows)
        row["load_core_busy"] = max(r["load_core_busy"] for r in rows)
        row["errors"] = sum(r["error_count"] for r in rows)
        table.append(row)

    fixed_table = []
    for target in sorted({r["target"] for r in fixed}, key=lambda t: order.get(t, 9)):
        rows = [r for r in fixed if r["target"] == target]
        row = {"target": target, "n": len(rows), "non_200": sum(r["non_200"] for r in rows)}
        for field in ("rps", "p50_us", "p99_us", "mean_us"):
            row[field] = median(r[field] for r in rows)
        if target != "direct":
            for field in ("p50_us", "p99_us"):
                diffs = _diffs(fixed, field, target)
                row[f"added_{field}"] = median(diffs) if diffs else None
                if target == "gateway":  # the gateway's own logic: over the pass-through floor
                    over = _diffs(fixed, field, target, "passthrough")
                    row[f"over_passthrough_{field}"] = median(over) if over else None
        fixed_table.append(row)

    ratios: dict[str, Any] = {}
    conns_list = sorted({r["connections"] for r in runs})
    for conns in conns_list:
        for who in ("gateway", "passthrough"):
            base = "passthrough" if who == "gateway" else "direct"
            cpu = _ratios(runs, "cpu_us_per_req", {"target": who, "mode": "json", "connections": conns},
                          {"target": base, "mode": "json", "connections": conns})  # fmt: skip
            sse = _ratios(runs, "rps", {"target": who, "mode": "sse", "connections": conns},
                          {"target": base, "mode": "sse", "connections": conns})  # fmt: skip
            rps = _ratios(runs, "rps", {"target": who, "mode": "json", "connections": conns},
                          {"target": base, "mode": "json", "connections": conns})  # fmt: skip
            ratios[f"{who}_vs_{base}_json_cpu_c{conns}"] = median(cpu) if cpu else None
            ratios[f"{who}_vs_{base}_json_rps_c{conns}"] = median(rps) if rps else None
            ratios[f"{who}_vs_{base}_sse_rps_c{conns}"] = median(sse) if sse else None

    checks = []
    for conns in conns_list:
        cpu = ratios[f"gateway_vs_passthrough_json_cpu_c{conns}"]
        sse = ratios[f"gateway_vs_passthrough_sse_rps_c{conns}"]
        rps = ratios[f"gateway_vs_passthrough_json_rps_c{conns}"]
        checks.append(
            _check(
                f"JSON req/s gateway / pass-through, c={conns}",
                rps,
                f">= {MIN_JSON_RATIO}",
                rps is not None and rps >= MIN_JSON_RATIO,
            )
        )
        checks.append(
            _check(
                f"JSON CPU/req gateway / pass-through, c={conns}",
                cpu,
                f"<= {MAX_CPU_RATIO}",
                cpu is not None and cpu <= MAX_CPU_RATIO,
            )
        )
        checks.append(
            _check(
                f"SSE streams/s gateway / pass-through, c={conns}",
                sse,
                f">= {MIN_SSE_RATIO}",
                sse is not None and sse >= MIN_SSE_RATIO,
            )
        )
    for conns in conns_list if any(r["target"] == "gateway-bare" for r in runs) else []:
        for mode in ("json", "sse"):  # --ab: the cost of limits + metering, same run, same server CPU
            ab = _ratios(runs, "rps", {"target": "gateway", "mode": mode, "connections": conns},
                         {"target": "gateway-bare", "mode": mode, "connections": conns})  # fmt: skip
            value = median(ab) if ab else None
            ratios[f"gateway_vs_bare_{mode}_rps_c{conns}"] = value
            checks.append(
                _check(
                    f"{mode.upper()} req/s with limits+metering / without, c={conns}",
                    value,
                    f">= {1 - MAX_AB_LOSS:.2f}",
                    value is not None and value >= 1 - MAX_AB_LOSS,
                )
            )
    gw = next((r for r in fixed_table if r["target"] == "gateway"), {})
    for field, limit in (("p50_us", MAX_ADDED_P50_US), ("p99_us", MAX_ADDED_P99_US)):
        added = gw.get(f"added_{field}")
        name = f"added {field[:3]} at {results['args']['rate']} req/s (gateway - direct), ms"
        value = None if added is None else added / 1000
        checks.append(_check(name, value, f"< {limit / 1000:g}", added is not None and added < limit))
    for field in ("p50_us", "p99_us"):  # informational: the same, measured from the pass-through floor
        over = gw.get(f"over_passthrough_{field}")
        value = None if over is None else over / 1000
        name = f"(info) {field[:3]} gateway - pass-through at {results['args']['rate']} req/s, ms"
        checks.append({"name": name, "value": value, "limit": "-", "verdict": "info"})
    gw_memory = results.get("memory", {}).get("gateway")
    if gw_memory:  # every process of the instance (Granian's main and its worker), after the load
        rss = gw_memory["rss_mb"]
        name = "gateway RSS after the load, all processes, MB"
        checks.append(_check(name, rss, f"<= {MAX_RSS_MB}", rss <= MAX_RSS_MB))
    return {"table": table, "fixed": fixed_table, "ratios": ratios, "checks": checks}


def _check(name: str, value: float | None, limit: str, ok: bool) -> dict[str, Any]:
    verdict = "n/a" if value is None else ("PASS" if ok else "FAIL")
    return {"name": name, "value": value, "limit": limit, "verdict": verdict}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ms(us: float | None) -> str:
    return _fmt(None if us is None else us / 1000, 3)


def markdown(results: dict[str, Any], summary: dict[str, Any]) -> str:
    """The tables BENCHMARKS.md quotes."""
    m, a = results["machine"], results["args"]
    out = [
        f"Machine: {m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}. "
        f"Server on CPU {a['server_cpu']}, nginx + load generator on CPU {a['load_cpu']}. "
        f"Pass-through client: {a['client']}. {a['duration']:g} s per run, median of {a['repeat']}. "
        f"nice {a.get('nice', 0)}, nginx SSE writes: {a.get('sse_writes', 'event')}.",
    ]
    if results["gateway_skipped"]:
        lines = [ln for ln in results["gateway_skipped"].splitlines() if ln.strip()]
        out.append(f"\nGateway skipped: {' / '.join(dict.fromkeys(lines[:1] + lines[-1:]))}")
    out += [
        "",
        "| target | mode | conns | req/s | p50 ms | p99 ms | server CPU µs/req | server CPU % | nginx CPU % "
        "| load core max busy % | errors |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in summary["table"]:
        out.append(
            f"| {r['target']} | {r['mode']} | {r['connections']} | {r['rps']:.0f} | {r['p50_us'] / 1000:.2f} "
            f"| {r['p99_us'] / 1000:.2f} | {r['cpu_us_per_req']:.1f} | {r['server_cpu_percent']:.0f} "
            f"| {r['upstream_cpu_percent']:.0f} | {r['load_core_busy']:.0f} | {r['errors']} |"
        )
    out += [
        "",
        f"Fixed offered rate {a['rate']} req/s (hey -c {a['rate_workers']}), JSON; added = target - direct, "
        "over floor = gateway - pass-through (medians of per-repetition differences):",
        "",
        "| target | got req/s | p50 ms | p99 ms | mean ms | added p50 ms | added p99 ms "
        "| over floor p50 ms | over floor p99 ms | non-200 |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in summary["fixed"]:
        a50, a99 = r.get("added_p50_us"), r.get("added_p99_us")
        out.append(
            f"| {r['target']} | {r['rps']:.0f} | {r['p50_us'] / 1000:.3f} | {r['p99_us'] / 1000:.3f} "
            f"| {r['mean_us'] / 1000:.3f} | {_fmt(None if a50 is None else a50 / 1000, 3)} "
            f"| {_fmt(None if a99 is None else a99 / 1000, 3)} | {_ms(r.get('over_passthrough_p50_us'))} "
            f"| {_ms(r.get('over_passthrough_p99_us'))} | {r['non_200']} |"
        )
    out += ["", "| ratio (median of per-repetition ratios) | value |", "|---|--:|"]
    out += [f"| {k} | {_fmt(v)} |" for k, v in summary["ratios"].items()]
    if results.get("memory"):
        out += ["", "Memory after the load (MB, 10^6 bytes; PSS divides shared pages among the processes):", ""]
        out += ["| target | process | RSS | PSS |", "|---|---|--:|--:|"]
        for name, mem in results["memory"].items():
            for proc in mem["processes"]:
                out.append(f"| {name} | {proc['cmd'][:40]} | {proc['rss_mb']:.1f} | {proc['pss_mb']:.1f} |")
            out.append(f"| {name} | **all** | **{mem['rss_mb']:.1f}** | **{mem['pss_mb']:.1f}** |")
    out += ["", "| target check | value | limit | verdict |", "|---|--:|---|---|"]
    out += [f"| {c['name']} | {_fmt(c['value'], 3)} | {c['limit']} | {c['verdict']} |" for c in summary["checks"]]
    return "\n".join(out)
