"""Data-plane authentication with virtual keys: the real openai SDK, real SQLite, real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ferrogate.store import open_store
from tests.support import Gateway

MASTER = "test-master-key-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "hi"}]
CONFIG = """
upstreams: [{name: mock, provider: mock}]
model_groups:
  - {name: mock, deployments: [{upstream: mock}]}
  - {name: mock-large, deployments: [{upstream: mock}]}
  - {name: other, deployments: [{upstream: mock}]}
"""


def admin(gw: Gateway, method: str, path: str, body: Any = None) -> Any:
    resp = httpx.request(method, f"{gw.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code < 300, resp.text
    return resp.json()


def chat(gw: Gateway, **headers: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "mock", "messages": HI}, headers=headers)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("auth")
    env = {"FERROGATE_MASTER_KEY": MASTER, "FERROGATE_AUTH_FREE_FAILURES": "1000"}  # no slow-down here
    gw = Gateway(tmp, CONFIG, workers=2, dev=False, env=env).wait_ready()
    team = admin(gw, "POST", "/teams", {"name": "ml", "allowed_models": ["mock*"]})
    yield gw, team
    gw.stop()


def new_key(gw: Gateway, team: dict[str, Any], **fields: Any) -> dict[str, Any]:
    key: dict[str, Any] = admin(gw, "POST", "/keys", {"name": "k", "team_id": team["id"], **fields})
    return key


def test_the_sdk_works_with_a_virtual_key(keyed: tuple[Gateway, dict[str, Any]]) -> None:
    gw, team = keyed
    key = new_key(gw, team)
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0) as sdk:
        reply = sdk.chat.completions.create(model="mock", messages=HI)  # type: ignore[arg-type]
        assert reply.usage is not None and reply.usage.completion_tokens > 0
        assert [m.id for m in sdk.models.list()] == ["mock", "mock-large"]  # "other" is not in the team's globs


@pytest.mark.parametrize("header", ["authorization", "api-key", "x-api-key"])
def test_key_headers(keyed: tuple[Gateway, dict[str, Any]], header: str) -> None:
    gw, team = keyed
    secret = new_key(gw, team)["key"]
    value = f"Bearer {secret}" if header == "authorization" else secret
    assert chat(gw, **{header: value}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer sk-nope"}, {"authorization": "Bearer fg-" + "x" * 43}, {"x-api-key": "fg-short"}],
)
def test_refusals_are_one_401_that_reveals_nothing(
    keyed: tuple[Gateway, dict[str, Any]], headers: dict[str, str]
) -> None:
    gw, _ = keyed
    resp = chat(gw, **headers)
    assert resp.status_code == 401
    err = resp.json()["error"]
    assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
    assert (
        err["message"].startswith("Missing API key") if not headers else err["message"] == "Incorrect API key provided."
    )


def test_model_outside_the_globs_is_403(keyed: tuple[Gateway, dict[str, Any]]) -> None:
    gw, team = keyed
    narrow = new_key(gw, team, allowed_models=["mock"])
    auth = {"authorization": f"Bearer {narrow['key']}"}
    for model, status in [("mock", 200), ("mock-large", 403), ("other", 403)]:
        resp = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": model, "messages": HI}, headers=auth)
        assert resp.status_code == status, (model, resp.text)
        if status == 403:
            assert resp.json()["error"] | {"message": ""} == {
                "message": "",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_allowed",
            }
    models = httpx.get(f"{gw.url}/v1/models", headers=auth).json()["data"]
    assert [m["id"] for m in models] == ["mock"]


def test_revoked_key_refused_on_every_worker_within_a_second(keyed: tuple[Gateway, dict[str, Any]]) -> None:
    gw, team = keyed
    key = new_key(gw, team)
    auth = {"authorization": f"Bearer {key['key']}"}
    with httpx.Client() as c:  # warm both workers' caches
        assert {
            c.post(f"{gw.url}/v1/chat/completions", json={"model": "mock", "messages": HI}, headers=auth).status_code
            for _ in range(20)
        } == {200}
    admin(gw, "POST", f"/keys/{key['id']}/revoke")
    time.sleep(1.05)
    statuses = set()
    for _ in range(20):  # new connections land on either worker
        statuses.add(chat(gw, authorization=f"Bearer {key['key']}").status_code)
    assert statuses == {401}


def test_expired_key_is_refused(keyed: tuple[Gateway, dict[str, Any]]) -> None:
    gw, team = keyed
    key = new_key(gw, team, expires_at="2001-01-01T00:00:00Z")
    assert chat(gw, authorization=f"Bearer {key['key']}").status_code == 401


def test_repeated_failures_are_slowed_down(tmp_path: Path) -> None:
    """5 failures answer at once; the 6th to 9th wait 50, 100, 200 and 400 ms: 0.75 s in all."""
    gw = Gateway(tmp_path, CONFIG, dev=False, env={"FERROGATE_MASTER_KEY": MASTER}).wait_ready()
    bad = {"authorization": "Bearer fg-" + "y" * 43}
    try:
        with httpx.Client(timeout=10) as c:
            url = f"{gw.url}/v1/models"
            start = time.monotonic()
            for _ in range(5):
                assert c.get(url, headers=bad).status_code == 401
            free = time.monotonic() - start
            for _ in range(4):
                assert c.get(url, headers=bad).status_code == 401
            slowed = time.monotonic() - start - free
    finally:
        gw.stop()
    assert slowed >= 0.75 > free


def test_last_used_is_recorded_and_flushed_on_shutdown(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, CONFIG, dev=False, env={"FERROGATE_MASTER_KEY": MASTER}).wait_ready()
    team = admin(gw, "POST", "/teams", {"name": "t"})
    key = new_key(gw, team)
    assert key["last_used_at"] is None
    assert chat(gw, authorization=f"Bearer {key['key']}").status_code == 200
    assert gw.stop() == 0

    async def read() -> Any:
        store = open_store(f"sqlite:///{tmp_path}/store-{gw.port}.db")
        try:
            return (await store.keys.get(key["id"])).last_used_at
        finally:
            await store.close()

    assert asyncio.run(read()) is not None


def test_revocation_reaches_another_instance_through_redis(tmp_path: Path) -> None:
    """Two instances on one store with a 60 s cache: only the pub/sub message can make B refuse at once."""
    env = {
        "FERROGATE_MASTER_KEY": MASTER,
        "FERROGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
        "FERROGATE_AUTH_CACHE_TTL_S": "60",
    }
    db = f"sqlite:///{tmp_path}/shared.db"
    a = Gateway(tmp_path, CONFIG, dev=False, env=env, database_url=db).wait_ready()
    b = Gateway(tmp_path, CONFIG, dev=False, env=env, database_url=db).wait_ready()
    try:
        team = admin(a, "POST", "/teams", {"name": "shared"})
        key = new_key(a, team)
        auth = f"Bearer {key['key']}"
        assert chat(b, authorization=auth).status_code == 200  # B caches the key for 60 s
        admin(a, "POST", f"/keys/{key['id']}/revoke")
        deadline = time.monotonic() + 1.0
        status = 200
        while time.monotonic() < deadline and status == 200:
            status = chat(b, authorization=auth).status_code
            time.sleep(0.05)
        assert status == 401
    finally:
        a.stop()
        b.stop()
