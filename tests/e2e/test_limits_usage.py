"""Rate limits and usage metering through the real server: exact across workers and instances."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferrogate.store import open_store
from tests.fakes.openai_upstream import WORDS, FakeUpstream
from tests.support import Gateway

MASTER = "limits-master-key-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "hi"}]


def config(upstream: FakeUpstream) -> str:
    return f"""
upstreams:
  - {{name: mock, provider: mock}}
  - {{name: fake, provider: openai, base_url: "http://127.0.0.1:{upstream.port}/v1"}}
model_groups:
  - {{name: mock, deployments: [{{upstream: mock}}]}}
  - {{name: fake-echo, deployments: [{{upstream: fake, model: echo, price: {{input: 1000000, output: 2000000}}}}]}}
  - {{name: fake-no-usage, deployments: [{{upstream: fake, model: no-usage}}]}}
"""


def admin(gw: Gateway, method: str, path: str, body: Any = None) -> Any:
    resp = httpx.request(method, f"{gw.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code < 300, resp.text
    return resp.json()


def chat(gw: Gateway, key: str, model: str = "mock", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": HI, **extra}
    with httpx.Client(timeout=10) as c:  # a new connection: any worker may take it
        return c.post(f"{gw.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("limits")
    gateway = Gateway(tmp, config(upstream), workers=2, dev=False, env={"FERROGATE_MASTER_KEY": MASTER})
    yield gateway.wait_ready()
    gateway.stop()


def new_key(gw: Gateway, **fields: Any) -> dict[str, Any]:
    team = admin(gw, "POST", "/teams", {"name": f"t{time.monotonic_ns()}", **fields.pop("team", {})})
    key: dict[str, Any] = admin(gw, "POST", "/keys", {"name": "k", "team_id": team["id"], **fields})
    key["team"] = team
    return key


def test_rpm_is_exact_across_two_workers(gw: Gateway) -> None:
    key = new_key(gw, rpm=7)
    statuses = [chat(gw, key["key"]).status_code for _ in range(15)]
    assert statuses.count(200) == 7
    assert statuses.count(429) == 8


def test_refusal_shape_and_headers(gw: Gateway) -> None:
    key = new_key(gw, rpm=2)
    first = chat(gw, key["key"])
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    chat(gw, key["key"])
    refused = chat(gw, key["key"])
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    err = refused.json()["error"]
    assert err["code"] == "key_rpm_exceeded" and err["type"] == "requests"


def test_team_limit_covers_all_its_keys(gw: Gateway) -> None:
    first = new_key(gw, team={"rpm": 3})
    second = admin(gw, "POST", "/keys", {"name": "k2", "team_id": first["team"]["id"]})
    statuses = [chat(gw, k).status_code for k in (first["key"], second["key"]) * 3]
    assert statuses.count(200) == 3
    refused = chat(gw, second["key"])
    assert refused.json()["error"]["code"] == "team_rpm_exceeded"


def test_tpm_reserves_max_tokens_and_settles_to_real_usage(gw: Gateway) -> None:
    key = new_key(gw, tpm=200)
    too_big = chat(gw, key["key"], max_tokens=500)  # prompt + 500 can never fit in 200
    assert too_big.status_code == 429
    assert too_big.json()["error"]["code"] == "key_tpm_exceeded"
    ok = chat(gw, key["key"], max_tokens=150)
    assert ok.status_code == 200
    used = ok.json()["usage"]["total_tokens"]
    assert used < 150
    # the reservation (prompt + 150) was settled to the real usage: a second 150 fits again
    again = chat(gw, key["key"], max_tokens=150)
    assert again.status_code == 200, again.text
    remaining = int(again.headers["x-ratelimit-remaining-tokens"])
    assert remaining <= 200 - used - 150


def test_usage_is_metered_streamed_and_counted(gw: Gateway, upstream: FakeUpstream) -> None:
    key = new_key(gw)
    secret = key["key"]
    assert chat(gw, secret, model="fake-echo").status_code == 200  # upstream usage 11 + 6, priced
    with httpx.Client(timeout=10) as c:  # streamed, client did not ask for usage: metered anyway
        body = {"model": "fake-echo", "messages": HI, "stream": True}
        with c.stream(
            "POST", f"{gw.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"}
        ) as r:
            assert "usage" not in "".join(r.iter_text())
        body = {"model": "fake-no-usage", "messages": HI, "stream": True}  # counted by the core
        with c.stream(
            "POST", f"{gw.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"}
        ) as r:
            r.read()
    auth = {"authorization": f"Bearer {secret}"}
    deadline = time.monotonic() + 5
    while True:  # records are written in batches (0.5 s)
        report = httpx.get(f"{gw.url}/v1/usage", headers=auth).json()
        if report["total"]["requests"] == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    by_model = {m["model"]: m for m in report["by_model"]}
    assert report["total"]["requests"] == 3
    assert by_model["fake-echo"]["requests"] == 2
    assert by_model["fake-echo"]["prompt_tokens"] == 22  # the upstream's own count, twice
    assert by_model["fake-echo"]["completion_tokens"] == 2 * len(WORDS)
    assert by_model["fake-echo"]["cost_usd"] == pytest.approx(2 * (11 * 1.0 + 6 * 2.0))
    assert by_model["fake-no-usage"]["completion_tokens"] > 0
    assert by_model["fake-no-usage"]["unpriced_requests"] == 1
    assert report == httpx.get(f"{gw.url}/v1/teams/me/usage", headers=auth).json()
    grouped = admin(gw, "GET", f"/usage?team_id={key['team']['id']}&group_by=model")
    assert {r["group"]: r["requests"] for r in grouped["data"]} == {"fake-echo": 2, "fake-no-usage": 1}


def test_shutdown_flushes_usage(tmp_path: Path, upstream: FakeUpstream) -> None:
    gateway = Gateway(tmp_path, config(upstream), dev=False, env={"FERROGATE_MASTER_KEY": MASTER}).wait_ready()
    key = new_key(gateway)
    for _ in range(5):
        assert chat(gateway, key["key"]).status_code == 200
    assert gateway.stop() == 0

    async def count() -> int:
        store = open_store(f"sqlite:///{tmp_path}/store-{gateway.port}.db")
        try:
            return (await store.usage.summary(key_id=key["id"])).items[0].requests
        finally:
            await store.close()

    assert asyncio.run(count()) == 5


def test_two_instances_with_two_workers_share_limits_through_redis(tmp_path: Path, upstream: FakeUpstream) -> None:
    env = {"FERROGATE_MASTER_KEY": MASTER, "FERROGATE_REDIS_URL": "redis://127.0.0.1:6379/0"}
    db = f"sqlite:///{tmp_path}/shared.db"
    a = Gateway(tmp_path, config(upstream), workers=2, dev=False, env=env, database_url=db).wait_ready()
    b = Gateway(tmp_path, config(upstream), workers=2, dev=False, env=env, database_url=db).wait_ready()
    try:
        key = new_key(a, rpm=9)

        async def hammer() -> list[int]:
            async with httpx.AsyncClient(timeout=10) as c:
                body = {"model": "mock", "messages": HI}
                auth = {"authorization": f"Bearer {key['key']}"}
                calls = [c.post(f"{gw.url}/v1/chat/completions", json=body, headers=auth) for gw in (a, b) * 12]
                return [r.status_code for r in await asyncio.gather(*calls)]

        statuses = asyncio.run(hammer())
    finally:
        a.stop()
        b.stop()
    assert statuses.count(200) == 9
    assert statuses.count(429) == 15
