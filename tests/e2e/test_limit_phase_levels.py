"""User and deployment rate limits through the real server (two workers sharing one table)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import Gateway

MASTER = "levels-master-key-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
CONFIG = """
upstreams:
  - {name: mock, provider: mock, mock: {words: 2}}  # short answers: usage far below max_tokens
model_groups:
  - {name: mock, deployments: [{upstream: mock}]}
  - {name: capped, deployments: [{upstream: mock, rpm: 2}]}
  - {name: capped-tokens, deployments: [{upstream: mock, tpm: 50}]}
"""


def admin(gw: Gateway, method: str, path: str, body: Any = None) -> Any:
    resp = httpx.request(method, f"{gw.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code < 300, resp.text
    return resp.json()


def chat(gw: Gateway, key: str, model: str = "mock", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    with httpx.Client(timeout=10) as c:  # a new connection: any worker may take it
        return c.post(f"{gw.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("levels")
    gateway = Gateway(tmp, CONFIG, workers=2, dev=False, env={"FERROGATE_MASTER_KEY": MASTER})
    yield gateway.wait_ready()
    gateway.stop()


def new_key(gw: Gateway, **fields: Any) -> str:
    team = admin(gw, "POST", "/teams", {"name": f"t{time.monotonic_ns()}"})
    key: str = admin(gw, "POST", "/keys", {"name": "k", "team_id": team["id"], **fields})["key"]
    return key


def test_deployment_rpm_refuses_the_third_request(gw: Gateway) -> None:
    first, second = new_key(gw), new_key(gw)  # two keys of two teams: the deployment's limit covers both
    ok = [chat(gw, first, "capped"), chat(gw, second, "capped")]
    assert [r.status_code for r in ok] == [200, 200]
    assert ok[0].headers["x-ratelimit-limit-requests"] == "2"
    assert ok[0].headers["x-ratelimit-remaining-requests"] == "1"
    assert ok[1].headers["x-ratelimit-remaining-requests"] == "0"
    refused = chat(gw, first, "capped")
    assert refused.status_code == 429
    err = refused.json()["error"]
    assert err["code"] == "deployment_rpm_exceeded" and err["type"] == "requests"
    assert "model group 'capped'" in err["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert chat(gw, first).status_code == 200  # other groups are not affected
    assert "x-ratelimit-limit-requests" not in chat(gw, first).headers  # and carry no limit headers


def test_deployment_tpm_is_settled_to_real_usage(gw: Gateway) -> None:
    key = new_key(gw)
    too_big = chat(gw, key, "capped-tokens", max_tokens=100)
    assert too_big.status_code == 429 and too_big.json()["error"]["code"] == "deployment_tpm_exceeded"
    for _ in range(3):  # each reserves prompt + 20 of 50, and is settled to the few tokens it used
        ok = chat(gw, key, "capped-tokens", max_tokens=20)
        assert ok.status_code == 200, ok.text
        assert ok.headers["x-ratelimit-limit-tokens"] == "50"


def test_user_rpm_covers_all_the_users_keys(gw: Gateway) -> None:
    team = admin(gw, "POST", "/teams", {"name": f"t{time.monotonic_ns()}"})
    user = admin(gw, "POST", "/users", {"name": "u", "team_id": team["id"], "rpm": 2})
    keys = [
        admin(gw, "POST", "/keys", {"name": f"k{i}", "team_id": team["id"], "user_id": user["id"]})["key"]
        for i in range(2)
    ]
    assert [chat(gw, k).status_code for k in keys] == [200, 200]
    refused = chat(gw, keys[0])
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "user_rpm_exceeded"
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
