"""The floor: a Granian RSGI pass-through with one pooled upstream client and no gateway logic.

It reads the request body, POSTs (or GETs) it to the same path on the upstream with one keep-alive,
TCP_NODELAY client per process, and answers with the upstream status and body: whole for JSON, chunk
by chunk as it arrives (protocol.response_stream) when the upstream answers text/event-stream.

The HTTP client is picked with PASSTHROUGH_CLIENT (aiohttp, rnet or pyreqwest), the upstream with
PASSTHROUGH_UPSTREAM.

Example:
    python load/passthrough.py --client pyreqwest --upstream http://127.0.0.1:8081 --port 8090
    # same as: PASSTHROUGH_CLIENT=pyreqwest PASSTHROUGH_UPSTREAM=http://127.0.0.1:8081 \\
    #          granian --interface rsgi --working-dir load --port 8090 passthrough:app
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

CLIENTS = ("aiohttp", "rnet", "pyreqwest")
KINDS = (*CLIENTS, "static")  # static: no upstream call at all, bare Granian for calibration
SSE = "text/event-stream"


class _Aiohttp:
    def __init__(self) -> None:
        import aiohttp

        # Keep-alive pool without a connection cap; aiohttp sets TCP_NODELAY on its sockets itself.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def forward(self, protocol: Any, method: str, url: str, headers: dict[str, str], body: bytes) -> None:
        async with self.session.request(method, url, data=body or None, headers=headers) as resp:
            ctype = resp.headers.get("content-type", "application/json")
            if ctype.startswith(SSE):
                transport = protocol.response_stream(resp.status, [("content-type", ctype)])
                async for chunk in resp.content.iter_any():
                    await transport.send_bytes(chunk)
            else:
                protocol.response_bytes(resp.status, [("content-type", ctype)], await resp.read())


class _Rnet:
    def __init__(self) -> None:
        import rnet

        self.client = rnet.Client(
            tcp_nodelay=True, http1_only=True, allow_redirects=False, pool_max_idle_per_host=1024, no_proxy=True
        )

    async def forward(self, protocol: Any, method: str, url: str, headers: dict[str, str], body: bytes) -> None:
        send = self.client.post if method == "POST" else self.client.get
        resp = await (send(url, headers=headers, body=body) if body else send(url, headers=headers))
        async with resp:
            raw = resp.headers["content-type"]
            ctype = raw.decode() if raw else "application/json"
            if ctype.startswith(SSE):
                transport = protocol.response_stream(resp.status, [("content-type", ctype)])
                async for chunk in resp.stream():
                    await transport.send_bytes(chunk)
            else:
                protocol.response_bytes(resp.status, [("content-type", ctype)], await resp.bytes())


class _Pyreqwest:
    def __init__(self) -> None:
        from pyreqwest.client import ClientBuilder

        self.client = ClientBuilder().http1_only().tcp_nodelay(True).follow_redirects(False).no_proxy().build()

    async def forward(self, protocol: Any, method: str, url: str, headers: dict[str, str], body: bytes) -> None:
        builder = self.client.request(method, url).headers(headers)
        if body:
            builder = builder.body_bytes(body)
        # no read-ahead: by default pyreqwest holds a stream back until 64 KiB have arrived
        async with builder.streamed_read_buffer_limit(0).build_streamed() as resp:
            ctype = resp.get_header("content-type") or "application/json"
            if ctype.startswith(SSE):
                transport = protocol.response_stream(resp.status, [("content-type", ctype)])
                reader = resp.body_reader
                while (chunk := await reader.read_chunk()) is not None:
                    await transport.send_bytes(bytes(chunk))
            else:
                protocol.response_bytes(resp.status, [("content-type", ctype)], bytes(await resp.bytes()))


class _Static:
    """No upstream: answer a fixed body, to calibrate what bare Granian costs on this machine."""

    def __init__(self) -> None:
        self.body = (Path(__file__).resolve().parent / "nginx" / "chat_completion.json").read_bytes()

    async def forward(self, protocol: Any, method: str, url: str, headers: dict[str, str], body: bytes) -> None:
        protocol.response_bytes(200, [("content-type", "application/json")], self.body)


class PassThrough:
    """RSGI app: forward every request to the upstream, nothing else."""

    def __init__(self, client: str, upstream: str) -> None:
        if client not in KINDS:
            raise SystemExit(f"PASSTHROUGH_CLIENT must be one of {', '.join(KINDS)}, not {client!r}")
        self.kind = client
        self.upstream = upstream.rstrip("/")
        self.client: Any = None  # built on the first request, inside the worker's running loop

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if self.client is None:
            self.client = {"aiohttp": _Aiohttp, "rnet": _Rnet, "pyreqwest": _Pyreqwest, "static": _Static}[self.kind]()
        body = await protocol()
        headers = {"content-type": scope.headers.get("content-type") or "application/json"}
        auth = scope.headers.get("authorization")
        if auth:
            headers["authorization"] = auth
        url = self.upstream + scope.path
        if scope.query_string:
            url += "?" + scope.query_string
        await self.client.forward(protocol, scope.method, url, headers, body)


app = PassThrough(
    os.environ.get("PASSTHROUGH_CLIENT", "pyreqwest"), os.environ.get("PASSTHROUGH_UPSTREAM", "http://127.0.0.1:8081")
)


def command(client: str, upstream: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The granian command line and environment that serve this pass-through on one worker."""
    env = dict(os.environ, PASSTHROUGH_CLIENT=client, PASSTHROUGH_UPSTREAM=upstream)
    cmd = [sys.executable, "-m", "granian", "--interface", "rsgi", "--workers", "1", "--runtime-threads", "1"]
    cmd += ["--no-access-log", "--log-level", "warning", "--no-ws", "--http", "1"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--working-dir", str(Path(__file__).resolve().parent)]
    return [*cmd, "passthrough:app"], env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client", choices=KINDS, default="pyreqwest")
    parser.add_argument("--upstream", default="http://127.0.0.1:8081")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    cmd, env = command(args.client, args.upstream, args.port)
    os.execve(cmd[0], cmd, env)  # noqa: S606 - replace this process with granian, same PID


if __name__ == "__main__":
    main()
