"""Same-run cost of the MCP gateway: a tool call through ``/mcp`` against the same call made to the upstream MCP
server directly, and ``tools/list`` of a key over many upstream servers answered from the gateway's cache.

Starts ``--servers`` fake MCP servers (tests/fakes/mcp_servers.py: the official SDK's stateless 2026-07-28 server,
each with ``--tools`` generated tools besides its own dozen) on the load CPU, and ``ferrogate serve`` (one worker)
on the server CPU with every server configured and a team policy that grants everything. Then, on one keep-alive
connection each, alternating call by call so both see the same machine: ``tools/call`` of ``echo`` on server 0
directly and as ``s0__echo`` through the gateway; then ``tools/list`` through the gateway. The client is
``http.client`` (the same few microseconds on both sides of the difference). Prints medians (p50) and p90.

    .venv/bin/python load/mcp.py --calls 2000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import procs

ROOT = Path(__file__).resolve().parent.parent
VERSION = "2026-07-28"
MASTER = "bench-master-key-0123456789"


def _rpc(method: str, params: dict[str, Any], rid: int) -> bytes:
    meta = {
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": {**params, "_meta": meta}}).encode()


class Peer:
    """One keep-alive HTTP connection to an MCP endpoint, speaking 2026-07-28 requests."""

    def __init__(self, port: int, path: str, token: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.path = path
        self.base = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": VERSION,
        }
        if token:
            self.base["authorization"] = f"Bearer {token}"
        self.rid = 0

    def send(self, method: str, params: dict[str, Any], name: str | None = None) -> tuple[float, dict[str, Any]]:
        """One request: (seconds, the decoded answer)."""
        self.rid += 1
        headers = {**self.base, "mcp-method": method}
        if name is not None:
            headers["mcp-name"] = name
        body = _rpc(method, params, self.rid)
        start = time.perf_counter()
        self.conn.request("POST", self.path, body, headers)
        response = self.conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start  # the answer's last byte: decoding it is the client's cost
        if response.status != 200:
            raise RuntimeError(f"{self.path} {method}: HTTP {response.status}: {data[:300]!r}")
        text = data.decode()
        if text.startswith("event:") or text.startswith("data:"):  # an SSE answer: its last data line
            text = [line[5:] for line in text.splitlines() if line.startswith("data:")][-1]
        return elapsed, json.loads(text)


def _start_fake(name: str, tools: int, cpu: int, logdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = procs.free_port()
    cmd = [sys.executable, "-m", "tests.fakes.mcp_servers", "--transport", "http", "--generation", "modern"]
    cmd += ["--port", str(port), "--tools", str(tools), "--name", name]
    log = logdir / f"{name}.log"
    argv = procs.pinned(cmd, cpu)
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    if not procs.wait_port(port, proc, timeout=30):
        procs.stop(proc)
        raise RuntimeError(f"fake MCP server {name} did not start: {log.read_text()[-2000:]}")
    return proc, port


def _manage(exe: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=60, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _admin(port: int, method: str, path: str, body: dict[str, Any]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        method, path, json.dumps(body), {"authorization": f"Bearer {MASTER}", "content-type": "application/json"}
    )
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")


def _wait_ready(port: int, token: str, servers: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/mcp/v1/servers", headers={"authorization": f"Bearer {token}"})
        response = conn.getresponse()
        data = json.loads(response.read() or b"{}")
        ready = [s for s in data.get("data", []) if s.get("state") == "ready"]
        if response.status == 200 and len(ready) == servers:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the gateway's MCP servers are not all ready: {data}")


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1e3,
        "p90_ms": ordered[int(len(ordered) * 0.9)] * 1e3,
        "n": float(len(ordered)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="tool calls per side (direct, gateway)")
    parser.add_argument("--lists", type=int, default=500, help="tools/list requests through the gateway")
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--tools", type=int, default=50, help="generated tools per server (besides its own)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--ferrogate", default=str(Path(sys.executable).parent / "ferrogate"))
    args = parser.parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="ferrogate-mcp-bench-"))
    started: list[subprocess.Popen[bytes]] = []
    try:
        ports = []
        for i in range(args.servers):
            proc, port = _start_fake(f"s{i}", args.tools, args.load_cpu, logdir)
            started.append(proc)
            ports.append(port)
        lines = ["mcp:", "  servers:"]
        lines += [f"    - {{id: s{i}, transport: http, url: 'http://127.0.0.1:{p}/mcp'}}" for i, p in enumerate(ports)]
        config = logdir / "gateway.yaml"
        config.write_text("\n".join(lines) + "\n")
        env = dict(os.environ, FERROGATE_MASTER_KEY=MASTER, FERROGATE_DATABASE_URL=f"sqlite:///{logdir / 'gw.db'}")
        team = _manage(args.ferrogate, env, "teams", "create", "--name", "bench")
        key = _manage(args.ferrogate, env, "keys", "create", "--name", "bench", "--team", team["id"])
        port = procs.free_port()
        cmd = [args.ferrogate, "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        gateway = procs.start([*cmd, "--workers", "1"], cpu=args.server_cpu, log_path=logdir / "gateway.log", env=env)
        started.append(gateway)
        if not procs.wait_port(port, gateway, timeout=30):
            raise RuntimeError((logdir / "gateway.log").read_text()[-3000:])
        _admin(port, "POST", f"/admin/v1/mcp/policies/{team['id']}", {"allow": ["*"]})
        _wait_ready(port, key["key"], args.servers)
        direct = Peer(ports[0], "/mcp")
        through = Peer(port, "/mcp", key["key"])
        echo = {"name": "echo", "arguments": {"text": "hello"}}
        namespaced = {"name": "s0__echo", "arguments": {"text": "hello"}}
        for _ in range(200):  # warm-up: connections, caches, compiled schemas
            direct.send("tools/call", echo, "echo")
            through.send("tools/call", namespaced, "s0__echo")
        times_direct: list[float] = []
        times_gateway: list[float] = []
        for _ in range(args.calls):
            t, answer = direct.send("tools/call", echo, "echo")
            times_direct.append(t)
            t, answer = through.send("tools/call", namespaced, "s0__echo")
            if answer.get("result", {}).get("isError"):
                raise RuntimeError(f"the gateway's call failed: {answer}")
            times_gateway.append(t)
        listed = 0
        times_list: list[float] = []
        for _ in range(args.lists):
            t, answer = through.send("tools/list", {})
            times_list.append(t)
            listed = len(answer["result"]["tools"])
        d, g, lst = _stats(times_direct), _stats(times_gateway), _stats(times_list)
        print("| measure | p50 | p90 |\n|---|--:|--:|")
        print(f"| tools/call direct to the upstream | {d['p50_ms']:.3f} ms | {d['p90_ms']:.3f} ms |")
        print(f"| tools/call through the gateway | {g['p50_ms']:.3f} ms | {g['p90_ms']:.3f} ms |")
        added = g["p50_ms"] - d["p50_ms"]
        print(f"| added by the gateway (p50 difference) | {added:.3f} ms | |")
        print(
            f"| tools/list, {args.servers} servers, {listed} tools, from cache | {lst['p50_ms']:.3f} ms | "
            f"{lst['p90_ms']:.3f} ms |"
        )
        verdict_call = "PASS" if added < 1.0 else "FAIL"
        verdict_list = "PASS" if lst["p50_ms"] < 2.0 else "FAIL"
        print(f"\n{verdict_call}: a tool call adds {added:.3f} ms p50 (target < 1 ms)")
        print(f"{verdict_list}: tools/list of {listed} tools answers in {lst['p50_ms']:.3f} ms p50 (target < 2 ms)")
        out = ROOT / "load" / "results" / f"mcp-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"direct": d, "gateway": g, "list": lst, "tools": listed, "args": vars(args)}))
    finally:
        for proc in reversed(started):
            procs.stop(proc)


if __name__ == "__main__":
    main()
