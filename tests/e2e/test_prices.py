"""Prices through the real server: the packaged table prices OpenAI models, ``server.prices_file`` extends and
overrides it, ``budgets.unpriced: allow`` admits a budgeted request for an unpriced model, and a named prices
file that is missing stops the start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support import Gateway

MASTER = "prices-master-key-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("prices")
    (tmp / "mine.yaml").write_text("models: {my-model: {input: 1000000, output: 2000000}}\n")
    config = f"""
server: {{prices_file: "{tmp / "mine.yaml"}"}}
upstreams:
  - {{name: mock, provider: mock, mock: {{words: 5}}}}
model_groups:
  - {{name: gpt-4o-mini, deployments: [{{upstream: mock}}]}}
  - {{name: mine, deployments: [{{upstream: mock, model: my-model}}]}}
  - {{name: free, deployments: [{{upstream: mock, model: unpriced-model}}]}}
metering: {{interval_s: 0.05}}
budgets: {{unpriced: allow}}
"""
    gateway = Gateway(tmp, config, dev=False, env={"FERROGATE_MASTER_KEY": MASTER})
    yield gateway.wait_ready()
    gateway.stop()


def admin(gw: Gateway, method: str, path: str, body: Any = None) -> Any:
    resp = httpx.request(method, f"{gw.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code < 300, resp.text
    return resp.json()


def usage_by_model(gw: Gateway, team_id: str, requests: int) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:  # records are written every 50 ms
        rows = admin(gw, "GET", f"/usage?team_id={team_id}&group_by=model")["data"]
        if sum(r["requests"] for r in rows) >= requests or time.monotonic() > deadline:
            return {r["group"]: r for r in rows}
        time.sleep(0.1)


def test_budgeted_requests_are_priced_from_the_packaged_table_and_the_file(gw: Gateway) -> None:
    team = admin(gw, "POST", "/teams", {"name": "priced", "budget": 100})
    key = admin(gw, "POST", "/keys", {"name": "k", "team_id": team["id"], "budget": 50})["key"]
    tokens = {}
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0) as sdk:
        for model in ("gpt-4o-mini", "mine", "free"):  # `free` has no price: admitted (unpriced: allow)
            reply = sdk.chat.completions.create(model=model, messages=HI, max_tokens=5)  # type: ignore[arg-type]
            assert reply.usage is not None
            tokens[model] = (reply.usage.prompt_tokens, reply.usage.completion_tokens)
    rows = usage_by_model(gw, team["id"], 3)
    prompt, completion = tokens["gpt-4o-mini"]
    assert rows["gpt-4o-mini"]["cost_usd"] == pytest.approx((prompt * 0.15 + completion * 0.6) / 1e6, rel=1e-9)
    assert rows["gpt-4o-mini"]["unpriced_requests"] == 0
    prompt, completion = tokens["mine"]
    assert rows["mine"]["cost_usd"] == prompt * 1 + completion * 2  # from server.prices_file
    assert (rows["free"]["requests"], rows["free"]["unpriced_requests"], rows["free"]["cost_usd"]) == (1, 1, 0)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "ferrogate", *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )


def test_a_named_prices_file_that_is_missing_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "gw.yaml").write_text("server: {prices_file: no-such-prices.yaml}\n")
    checked = run("config", "check", "gw.yaml", cwd=tmp_path)
    assert checked.returncode == 1
    assert "no-such-prices.yaml" in checked.stderr and "No such file" in checked.stderr
    served = run("serve", "--dev", "--port", "0", "--config", "gw.yaml", cwd=tmp_path)
    assert served.returncode == 1
    assert "no-such-prices.yaml" in served.stderr and "No such file" in served.stderr
