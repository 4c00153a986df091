"""GET /metrics of a real two-worker instance: exact counts and token sums after a known workload."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Gateway, free_port

MASTER = "metrics-master-key-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "Say hello."}]
CHAT = "/v1/chat/completions"
PROM_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def config() -> str:
    return f"""
server: {{prices_file: null}}
upstreams:
  - {{name: mock, provider: mock, mock: {{chunks: 3, words: 9}}}}
  - {{name: dead, provider: openai, base_url: "http://127.0.0.1:{free_port()}/v1", timeouts: {{connect_s: 1}}}}
model_groups:
  - {{name: mock, deployments: [{{upstream: mock, price: {{input: 1000000, output: 2000000}}}}]}}
  - {{name: free, deployments: [{{upstream: mock, model: freebie}}]}}
  - {{name: gone, deployments: [{{upstream: dead, model: echo}}]}}
"""


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def admin(gw: Gateway, path: str, body: dict[str, Any]) -> Any:
    resp = httpx.post(f"{gw.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code < 300, resp.text
    return resp.json()


def scrape(gw: Gateway) -> tuple[Samples, str, httpx.Response]:
    with httpx.Client(timeout=10) as client:  # a new connection: any worker may answer
        resp = client.get(f"{gw.url}/metrics")
    assert resp.status_code == 200, resp.text
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples, resp.text, resp


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def client(gw: Gateway, key: str) -> openai.OpenAI:
    """A new client per request (a new connection), so the two workers share the workload."""
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def complete(gw: Gateway, key: str, model: str) -> tuple[int, int]:
    with client(gw, key) as sdk:
        reply = sdk.chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
    assert reply.usage is not None
    return reply.usage.prompt_tokens, reply.usage.completion_tokens


def stream(gw: Gateway, key: str, model: str) -> tuple[int, int]:
    with client(gw, key) as sdk:
        chunks = list(
            sdk.chat.completions.create(
                model=model,
                messages=HI,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    return usage[0].prompt_tokens, usage[0].completion_tokens


def refused(gw: Gateway, key: str, model: str, error: type[openai.APIStatusError]) -> None:
    with client(gw, key) as sdk, pytest.raises(error):
        sdk.chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp: Path = tmp_path_factory.mktemp("metrics")
    gateway = Gateway(tmp, config(), workers=2, dev=False, env={"FERROGATE_MASTER_KEY": MASTER})
    try:
        yield gateway.wait_ready()
    finally:
        gateway.stop()


def test_metrics_after_a_known_workload(gw: Gateway) -> None:
    team = admin(gw, "/teams", {"name": "metrics-team"})
    key = admin(gw, "/keys", {"name": "k", "team_id": team["id"]})
    limited = admin(gw, "/keys", {"name": "one-a-minute", "team_id": team["id"], "rpm": 1})
    t = team["id"]

    served = [complete(gw, key["key"], "mock") for _ in range(3)]
    served += [stream(gw, key["key"], "mock") for _ in range(2)]
    refused(gw, key["key"], "no-such-model", openai.NotFoundError)
    refused(gw, key["key"], "no-such-model", openai.NotFoundError)
    free = complete(gw, key["key"], "free")  # a model without a price
    refused(gw, key["key"], "gone", openai.InternalServerError)  # 502: the upstream is unreachable
    served.append(complete(gw, limited["key"], "mock"))
    refused(gw, limited["key"], "mock", openai.RateLimitError)
    requests = 11

    time.sleep(1.5)  # the workers flush every second; usage records are stored every 0.5 s
    deadline = time.monotonic() + 15
    while True:
        samples, text, resp = scrape(gw)
        stored = get(samples, "ferrogate_usage_records_total", outcome="stored")
        audited = get(samples, "ferrogate_audit_events_total", outcome="stored")
        # every request of a key is metered and audited; the admin changes above are audited too
        done = total(samples, "ferrogate_requests_total") == requests and stored == requests
        if done and audited == requests + 3:  # + the team and the two keys created above
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.2)

    assert resp.headers["content-type"] == PROM_TEXT
    req = "ferrogate_requests_total"
    assert get(samples, req, route=CHAT, model="mock", team=t, status="200") == 6
    assert get(samples, req, route=CHAT, model="mock", team=t, status="429") == 1
    assert get(samples, req, route=CHAT, model="other", team=t, status="404") == 2
    assert get(samples, req, route=CHAT, model="free", team=t, status="200") == 1
    assert get(samples, req, route=CHAT, model="gone", team=t, status="502") == 1

    prompt, completion = sum(p for p, _ in served), sum(c for _, c in served)
    assert prompt > 0 and completion > 0
    assert get(samples, "ferrogate_tokens_total", model="mock", team=t, type="input") == prompt
    assert get(samples, "ferrogate_tokens_total", model="mock", team=t, type="output") == completion
    assert get(samples, "ferrogate_tokens_total", model="free", team=t, type="output") == free[1]
    assert get(samples, "ferrogate_cost_usd_total", model="mock", team=t) == prompt * 1 + completion * 2
    assert get(samples, "ferrogate_cost_usd_total", model="free", team=t) is None
    assert get(samples, "ferrogate_unpriced_requests_total", model="freebie") == 1
    assert get(samples, "ferrogate_unpriced_models", model="freebie") == 1

    assert get(samples, "ferrogate_rate_limit_refusals_total", code="key_rpm_exceeded") == 1
    assert total(samples, "ferrogate_budget_refusals_total") == 0
    assert get(samples, "ferrogate_upstream_errors_total", upstream="dead", reason="upstream_unreachable") == 1

    latency = "ferrogate_request_duration_seconds"
    assert get(samples, f"{latency}_count", model="mock") == 6  # the refusal is not timed
    assert get(samples, f"{latency}_bucket", model="mock", le="+Inf") == 6
    assert get(samples, f"{latency}_count", model="gone") == 1
    assert get(samples, f"{latency}_count", model="other") is None
    assert get(samples, "ferrogate_time_to_first_token_seconds_count", model="mock") == 2  # the streams
    assert get(samples, "ferrogate_upstream_duration_seconds_count", model="mock") == 6

    # any worker answers for the whole instance; no key material in the labels
    for _ in range(4):
        again, _, _ = scrape(gw)
        assert {k: v for k, v in again.items() if k[0] == req} == {k: v for k, v in samples.items() if k[0] == req}
    for secret in (key["key"], key["id"], limited["key"], limited["id"]):
        assert secret not in text


def test_metrics_route_is_get_only(gw: Gateway) -> None:
    resp = httpx.post(f"{gw.url}/metrics", timeout=10)
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET"
    resp = httpx.get(f"{gw.url}/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    assert resp.text.endswith("# EOF\n")
