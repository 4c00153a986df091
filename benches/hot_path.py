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

    async def send(self, request: Any, call: Any) -> Reply:
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
        hasher = KeyHasher(master.encode())
        secret, limited, budgeted = new_key(), new_key(), new_key()
        await store.keys.create(hasher.hash(secret), display_prefix(secret), name="b", team_id=team.id)
        huge = 10**12  # limits and budgets that never refuse: their cost, not their refusals, is measured
        await store.keys.create(
            hasher.hash(limited), display_prefix(limited), name="l", team_id=team.id, rpm=huge, tpm=huge
        )
        await store.keys.create(
            hasher.hash(budgeted), display_prefix(budgeted), name="m", team_id=team.id, rpm=huge, tpm=huge, budget=1e12
        )
        gateways = {}
        for metering in (False, True):
            config = load_config_text(
                f"server: {{spool_dir: '{Path(tmp) / 'spool'}'}}\n"
                f"metering: {{enabled: {str(metering).lower()}}}\n"
                "upstreams: [{name: n, provider: openai, base_url: 'http://127.0.0.1:9/v1'}]\n"
                "model_groups: [{name: bench, deployments: [{upstream: n, price: {input: 1, output: 2}}]}]\n",
                "bench",
            )
            settings = Settings(master, False, url, None, auth_cache_ttl_s=3600)
            gw = gateways[metering] = Gateway(config, store, settings)
            gw.router.group("bench").by_priority[0].provider = _Canned()  # type: ignore[union-attr]
        gateway = gateways[True]
        writer = asyncio.create_task(gateway.recorder.run())  # usage records go to the store, as in a worker
        n = int(os.environ.get("HOT_N", "20000"))
        results = {}
        cases = (
            ("no limits, metering off", secret, gateways[False]),
            ("no limits, metering on", secret, gateway),
            ("key rpm+tpm limits, metering on", limited, gateway),
            ("limits + key budget, metering on", budgeted, gateway),
        )
        for name, key, gateway in cases:
            scope: Any = _Scope({"authorization": f"Bearer {key}", "content-length": str(len(BODY))})
            proto = _Proto()
            await gateway.__rsgi__(scope, proto)  # type: ignore[arg-type]
            assert proto.status == 200, proto.status
            runs = []
            for _ in range(7):
                start = time.process_time()
                for _ in range(n):
                    await gateway.__rsgi__(scope, proto)  # type: ignore[arg-type]
                await gateway.recorder.flush()  # the batched usage and audit writes are part of each request's cost
                await gateway.audit.flush()
                runs.append((time.process_time() - start) / n * 1e6)
            results[name] = statistics.median(runs)
            print(
                f"{name}: median {results[name]:.1f} µs CPU per request (7 batches of {n}); "
                f"runs: {', '.join(f'{r:.1f}' for r in runs)}"
            )
        for gw in gateways.values():
            await gw.recorder.close()
            await gw.audit.close()
        await writer
        await store.close()
    meter = results["no limits, metering on"] - results["no limits, metering off"]
    limit = results["key rpm+tpm limits, metering on"] - results["no limits, metering on"]
    budget = results["limits + key budget, metering on"] - results["key rpm+tpm limits, metering on"]
    print(f"metering adds {meter:.1f} µs per request, the limit phase {limit:.1f} µs: together {meter + limit:.1f} µs")
    print(f"a budget (one store transaction holding the worst case, released by the usage insert) adds {budget:.1f} µs")


if __name__ == "__main__":
    asyncio.run(main())
