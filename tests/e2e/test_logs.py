"""Structured logs of a real server: one JSON line per request with ids and usage, and no key material."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.support import Gateway

MASTER = "logs-master-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("logs")
    gateway = Gateway(tmp, None, workers=2, dev=False, env={"FERROGATE_MASTER_KEY": MASTER})
    yield gateway.wait_ready()
    gateway.stop()


def admin(gw: Gateway, path: str, body: Any) -> Any:
    resp = httpx.post(f"{gw.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code < 300, resp.text
    return resp.json()


def request_lines(gw: Gateway) -> list[dict[str, Any]]:
    out = []
    for raw in gw.log().splitlines():
        if raw.startswith("{"):
            line = orjson.loads(raw)
            if line.get("logger") == "ferrogate.request":
                out.append(line)
    return out


def test_one_line_per_request_without_secrets(gw: Gateway) -> None:
    team = admin(gw, "/teams", {"name": "logs"})
    keys = [admin(gw, "/keys", {"name": n, "team_id": team["id"]}) for n in ("a", "b")]
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=keys[0]["key"], max_retries=0) as client:
        client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": "hi"}], extra_headers={"traceparent": TRACE}
        )
        stream = client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}], stream=True)
        for _ in stream:
            pass
    with (
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key=keys[1]["key"] + "x", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}])
    deadline = time.monotonic() + 5  # lines are flushed every 0.5 s
    while len(request_lines(gw)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = request_lines(gw)
    assert len(lines) == 3
    ok, streamed, refused = sorted(lines, key=lambda x: (x["status"] != 200, x["stream"]))
    assert (ok["key_id"], ok["team_id"], ok["model"], ok["status"]) == (keys[0]["id"], team["id"], "mock", 200)
    assert ok["trace_id"] == TRACE.split("-")[1]
    assert ok["prompt_tokens"] > 0 and ok["completion_tokens"] > 0 and ok["latency_ms"] > 0
    assert streamed["stream"] is True and streamed["completion_tokens"] > 0
    assert (refused["status"], refused["error"], refused["key_id"]) == (401, "invalid_api_key", None)
    text = gw.log()
    for secret in (MASTER, *(k["key"] for k in keys)):
        assert secret not in text
        assert secret[:20] not in text
