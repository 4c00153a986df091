"""A/B of two ferrogate installations in one run: the same upstream, load and pinning, alternated per repetition.

Each ``--ferrogate`` executable is started as bench.py's gateway (a limited key, everything on); each repetition
measures every one of them, JSON and SSE, at each connection count, in turn, so slow drift of a noisy machine
falls on both. Reports medians of req/s, server CPU per request and the ratio B/A.

Example:
    python load/ab.py --a .venv/bin/ferrogate --b /path/to/other/ferrogate --duration 5 --repeat 3
    python load/ab.py --a .venv/bin/ferrogate --a-arg=--loop=asyncio --b .venv/bin/ferrogate --b-arg=--loop=uvloop
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench
import procs
from upstream import Upstream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="the first ferrogate executable (the baseline)")
    parser.add_argument("--b", required=True, help="the second ferrogate executable")
    parser.add_argument("--a-arg", action="append", default=[], help="extra argument for A's ferrogate serve")
    parser.add_argument("--b-arg", action="append", default=[], help="extra argument for B's ferrogate serve")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--modes", nargs="+", choices=["json", "sse"], default=["json", "sse"])
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--nice", type=int, default=-10)
    args = parser.parse_args()
    procs.ensure_tools()
    procs.set_nice(args.nice)
    logdir = Path(tempfile.mkdtemp(prefix="ferrogate-ab-"))
    rows: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    servers = []
    with Upstream(procs.free_port(), args.load_cpu, "event") as up:
        assert up.proc is not None
        try:
            targets = []
            for name, exe, extra in (("A", args.a, args.a_arg), ("B", args.b, args.b_arg)):
                opts = argparse.Namespace(ferrogate=exe, gateway_arg=extra, server_cpu=args.server_cpu)
                proc, target, skipped = bench.start_gateway(opts, up.port, logdir, f"gateway-{name}")
                if proc is None or target is None:
                    raise SystemExit(f"{name} did not start: {skipped}")
                servers.append(proc)
                target.name = name
                targets.append(target)
            for _ in range(args.repeat):
                for target in targets:
                    target.use()
                    for mode in args.modes:
                        for conns in args.connections:
                            ns = argparse.Namespace(
                                duration=args.duration, load_cpu=args.load_cpu, server_cpu=args.server_cpu, small=False
                            )
                            result = bench.measure(target, mode, conns, ns, up.proc.pid)
                            rows.setdefault((target.name, mode, conns), []).append(result)
                            print(f"{target.name} {mode} c={conns}: {result['rps']:.0f} req/s", file=sys.stderr)
        finally:
            for proc in servers:
                procs.stop(proc)
    print("| mode | conns | A req/s | B req/s | B/A | A CPU µs/req | B CPU µs/req |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for mode in args.modes:
        for conns in args.connections:
            a, b = rows[("A", mode, conns)], rows[("B", mode, conns)]
            ratio = statistics.median(y["rps"] / x["rps"] for x, y in zip(a, b, strict=True))
            med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
            print(
                f"| {mode} | {conns} | {med(a, 'rps'):.0f} | {med(b, 'rps'):.0f} | {ratio:.3f} |"
                f" {med(a, 'cpu_us_per_req'):.1f} | {med(b, 'cpu_us_per_req'):.1f} |"
            )


if __name__ == "__main__":
    main()
