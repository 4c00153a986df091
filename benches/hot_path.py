"""Benchmark: the CPU the gateway's own logic adds to one chat request, in process.

The whole data-plane path of ``Gateway.__rsgi__`` runs (request id, dispatch, receive with
orjson and field checks, authenticate against a real SQLite store through the cache,
authorize, route, respond, account) with two stand-ins: Granian's scope/protocol objects
(plain Python classes) and the upstream call (a provider answering nginx's canned chat
completion at once). What is left out is what the pass-through floor pays too: HTTP parsing
in Granian and the upstream client. Compare the printed median with the pass-through's CPU
per request in BENCHMARKS.md.

    .venv/bin/python benches/hot_path.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ferrogate.auth.keys import KeyHasher, display_prefix, new_key
from ferrogate.config import load_config_text
from ferrogate.providers.base import Reply
from ferrogate.server.app import Gateway
from ferrogate.server.settings import Settings
from ferrogate.store import open_store

CANNED = (Path(__file__).resolve().parents[1] / "load" / "nginx" / "chat_completion.json").read_bytes()
BODY = b'{"model":"bench","messages":[{"role":"user","content":"hello"}]}'


class _Headers(dict[str, str]):
    pass


class _Scope:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = _Headers(headers)
        self.path = "/v1/chat/completions"
        self.method = "POST"
        self.client = "127.0.0.1:40000"
        self.query_string = ""


class _Proto:
    status = 0

    async def __call__(self) -> bytes:
        return BODY

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status


class _Canned:
    name = "canned"

    async def chat(self, ctx: Any) -> Reply:
        return Reply(200, "application/json", body=CANNED)

    async def close(self) -> None:
        pass


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'hot.db'}"
        master = "bench-master-key-0123456789"
        store = open_store(url)
        await store.migrate()
        team = await store.teams.create("bench")
        secret = new_key()
        hasher = KeyHasher(master.encode())
        await store.keys.create(hasher.hash(secret), display_prefix(secret), name="b", team_id=team.id)
        config = load_config_text(
            "upstreams: [{name: n, provider: openai, base_url: 'http://127.0.0.1:9/v1'}]\n"
            "model_groups: [{name: bench, deployments: [{upstream: n}]}]\n",
            "bench",
        )
        settings = Settings(master, False, url, None, auth_cache_ttl_s=3600)
        gateway = Gateway(config, store, settings)
        gateway.router._routes["bench"] = (_Canned(), "bench")  # type: ignore[assignment]
        scope: Any = _Scope({"authorization": f"Bearer {secret}", "content-length": str(len(BODY))})
        proto = _Proto()
        await gateway.__rsgi__(scope, proto)  # type: ignore[arg-type]
        assert proto.status == 200, proto.status
        n = int(os.environ.get("HOT_N", "20000"))
        runs = []
        for _ in range(7):
            start = time.process_time()
            for _ in range(n):
                await gateway.__rsgi__(scope, proto)  # type: ignore[arg-type]
            runs.append((time.process_time() - start) / n * 1e6)
        await store.close()
    print(
        f"gateway logic per request: median {statistics.median(runs):.1f} µs CPU (7 batches of {n}); "
        f"runs: {', '.join(f'{r:.1f}' for r in runs)}; pid {os.getpid()}"
    )


if __name__ == "__main__":
    asyncio.run(main())
