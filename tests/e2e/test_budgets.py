"""Budgets through the real server (two workers): worst-case holds, insufficient_quota, no overshoot under
concurrency, user budgets and limits, the soft-limit webhook, and /v1/usage.

The ``mock`` model is priced at $1 per token (input and output), so costs are whole token counts.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import openai
import pytest

from tests.support import Gateway

MASTER = "budgets-master-key-0123456789"
SECRET = "hook-secret"  # noqa: S105 (a test value)
ADMIN = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "hi"}]
MAX = 5  # max_tokens of every request: worst case = prompt + 5 tokens = dollars


class Hook(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: records every POST (headers and body)."""

    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        Hook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hook() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def gw(hook: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("budgets")
    config = f"""
upstreams:
  - {{name: mock, provider: mock}}
model_groups:
  - {{name: mock, deployments: [{{upstream: mock, price: {{input: 1000000, output: 1000000}}}}]}}
  - {{name: free, deployments: [{{upstream: mock, model: unpriced-model}}]}}
metering: {{interval_s: 0.05}}
budgets: {{soft_limit_pct: 50, webhook_url: "{hook}", webhook_secret: "{SECRET}"}}
"""
    gateway = Gateway(tmp, config, workers=2, dev=False, env={"FERROGATE_MASTER_KEY": MASTER})
    yield gateway.wait_ready()
    gateway.stop()


def admin(gw: Gateway, method: str, path: str, body: Any = None) -> Any:
    resp = httpx.request(method, f"{gw.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code < 300, resp.text
    return resp.json()


def chat(gw: Gateway, key: str, model: str = "mock", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": HI, "max_tokens": MAX, **extra}
    with httpx.Client(timeout=10) as c:  # a new connection: any worker may take it
        return c.post(f"{gw.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


def new_key(gw: Gateway, team: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    team_row = admin(gw, "POST", "/teams", {"name": f"t{time.monotonic_ns()}", **(team or {})})
    key: dict[str, Any] = admin(gw, "POST", "/keys", {"name": "k", "team_id": team_row["id"], **fields})
    key["team"] = team_row
    return key


@pytest.fixture(scope="module")
def cost(gw: Gateway) -> tuple[int, int]:
    """(worst case, real cost) of one request in dollars, learnt from a key without a budget."""
    usage = chat(gw, new_key(gw)["key"]).json()["usage"]
    assert usage["completion_tokens"] == MAX
    return usage["prompt_tokens"] + MAX, usage["total_tokens"]


def spent(gw: Gateway, key: str) -> float:
    time.sleep(0.3)  # usage records are written every 50 ms
    resp = httpx.get(f"{gw.url}/v1/usage", headers={"authorization": f"Bearer {key}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return float(resp.json()["total"]["cost_usd"])


def test_refused_before_the_upstream_when_the_worst_case_does_not_fit(gw: Gateway, cost: tuple[int, int]) -> None:
    worst, real = cost
    key = new_key(gw, budget=2 * worst + 0.5)
    assert chat(gw, key["key"]).status_code == 200
    assert chat(gw, key["key"]).status_code == 200
    refused = chat(gw, key["key"])
    assert refused.status_code == 429
    err = refused.json()["error"]
    assert (err["type"], err["code"]) == ("insufficient_quota", "insufficient_quota")
    assert "key budget" in err["message"] and "max_tokens" in err["message"]
    assert "retry-after" not in refused.headers
    assert spent(gw, key["key"]) == 2 * real  # the refused request reached no upstream and cost nothing


def test_openai_sdk_sees_insufficient_quota(gw: Gateway, cost: tuple[int, int]) -> None:
    key = new_key(gw, team={"budget": cost[0] - 1, "budget_period": "daily"})
    with (
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0) as client,
        pytest.raises(openai.RateLimitError) as info,
    ):
        client.chat.completions.create(model="mock", messages=HI, max_tokens=MAX)  # type: ignore[arg-type]
    assert info.value.code == "insufficient_quota"
    assert "team budget" in info.value.message


def test_concurrent_requests_never_overshoot(gw: Gateway, cost: tuple[int, int]) -> None:
    """40 requests at once on two workers against a budget that holds 7 worst cases: exactly 7 pass."""
    worst, real = cost
    key = new_key(gw, team={"budget": 7 * worst + 0.5, "budget_period": "monthly"})
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: chat(gw, key["key"]).status_code, range(40)))
    assert statuses.count(200) == 7, statuses
    assert statuses.count(429) == 33
    assert spent(gw, key["key"]) == 7 * real <= 7 * worst + 0.5


def test_holds_are_released_by_the_real_cost(gw: Gateway, cost: tuple[int, int]) -> None:
    """Real costs (prompt + 5) equal worst cases here; a budget of 3.5 worst cases admits 3 in a row."""
    worst, _ = cost
    key = new_key(gw, budget=3 * worst + worst / 2, budget_period="weekly")
    statuses = []
    for _ in range(5):
        statuses.append(chat(gw, key["key"]).status_code)
        time.sleep(0.2)  # the usage record replaces the hold
    assert statuses == [200, 200, 200, 429, 429]


def test_user_budget_and_limits(gw: Gateway, cost: tuple[int, int]) -> None:
    worst, _ = cost
    team = admin(gw, "POST", "/teams", {"name": f"u{time.monotonic_ns()}"})
    user = admin(
        gw, "POST", "/users", {"team_id": team["id"], "name": "ana", "budget": worst + 0.5, "budget_period": "daily"}
    )
    assert (user["budget"], user["budget_period"], user["rpm"]) == (worst + 0.5, "daily", None)
    keys = [admin(gw, "POST", "/keys", {"name": n, "team_id": team["id"], "user_id": user["id"]}) for n in "ab"]
    assert chat(gw, keys[0]["key"]).status_code == 200
    refused = chat(gw, keys[1]["key"])  # another key of the same user: the user's budget is spent
    assert refused.status_code == 429 and "user budget" in refused.json()["error"]["message"]
    usage = httpx.get(f"{gw.url}/v1/usage", headers={"authorization": f"Bearer {keys[1]['key']}"}).json()
    (mine,) = usage["budgets"]
    assert (mine["scope"], mine["owner_id"], mine["period"]) == ("user", user["id"], "daily")
    assert mine["spent_usd"] + mine["reserved_usd"] == worst
    updated = admin(gw, "PATCH", f"/users/{user['id']}", {"rpm": 1, "budget": 1000})
    assert updated["rpm"] == 1
    time.sleep(1.2)  # the auth cache holds an identity for up to 1 s
    statuses = [chat(gw, keys[0]["key"]).status_code for _ in range(3)]
    assert statuses == [200, 429, 429]


@pytest.mark.parametrize(
    ("key_budget", "team_budget", "held"), [(0.5, None, "the key budget"), (None, 9, "the team budget")]
)
def test_unpriced_models_are_refused_on_a_budgeted_chain(
    gw: Gateway, key_budget: float | None, team_budget: float | None, held: str
) -> None:
    key = new_key(gw, team={} if team_budget is None else {"budget": team_budget}, budget=key_budget)
    refused = chat(gw, key["key"], model="free")
    assert refused.status_code == 403
    err = refused.json()["error"]
    assert (err["type"], err["code"], err["param"]) == ("invalid_request_error", "model_not_priced", "model")
    assert "Model 'free' (served as 'unpriced-model') has no price" in err["message"]
    assert held in err["message"] and "budgets.unpriced: allow" in err["message"]
    assert chat(gw, new_key(gw)["key"], model="free").status_code == 200  # no budget on the chain: served


def test_soft_limit_and_exhausted_webhooks(gw: Gateway, cost: tuple[int, int]) -> None:
    worst, _ = cost
    key = new_key(gw, budget=3 * worst + 0.5)
    mine = lambda: [(h, b) for h, b in Hook.received if key["id"].encode() in b]  # noqa: E731
    for _ in range(4):
        chat(gw, key["key"])
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while len(mine()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    events = mine()
    kinds = sorted(json.loads(b)["type"] for _, b in events)
    assert kinds == ["budget.exhausted", "budget.soft_limit"]
    for headers, body in events:
        sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-ferrogate-signature"] == f"sha256={sig}"


def test_the_worst_case_counts_every_choice(gw: Gateway, cost: tuple[int, int]) -> None:
    """``n`` choices may each produce ``max_tokens``: a budget that holds one worst case refuses n=3."""
    worst, _ = cost
    key = new_key(gw, budget=worst + 0.5)
    refused = chat(gw, key["key"], n=3)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
    assert chat(gw, key["key"], n=1).status_code == 200
