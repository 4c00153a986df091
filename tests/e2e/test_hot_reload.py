"""Hot reload under load: a gateway with two workers answers a bounded load (threads of httpx clients, whole answers
and streams) while its configuration file is rewritten several times (a group's deployment model changed, a group
added, the upstream itself changed so its provider is replaced) and a group is replaced through the admin API. Not
one request may fail, every stream must end whole, and afterwards every worker answers by the last configuration.

The fake upstream answers ``model=<the model it was sent>``: an answer names the deployment that served it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import WORDS, FakeUpstream
from tests.support import Gateway, admin

MASTER_KEY = "hot-reload-master-key-0123456789"
THREADS = 6  # two of them streaming (each stream lasts 1.5 s: several are in flight across every reload)
MAX_REQUESTS = 20_000  # the load's bound (it stops earlier, once the last change is seen)
STEPS = 4
BETWEEN = 150  # requests answered between two changes


def config(port: int, step: int) -> str:
    """Step ``step`` of the file: alpha's model and read timeout move, one more group each step."""
    added = "".join(
        f"  - name: gamma-{n}\n    deployments: [{{upstream: fake, model: gamma-{n}}}]\n" for n in range(step)
    )
    return f"""
upstreams:
  - name: fake
    provider: openai
    base_url: http://127.0.0.1:{port}/v1
    timeouts: {{read_s: {30 + step}}}
model_groups:
  - name: alpha
    deployments: [{{upstream: fake, model: alpha-{step}}}]
  - name: beta
    deployments: [{{upstream: fake, model: beta-file}}]
  - name: streamy
    deployments: [{{upstream: fake, model: slow-stream}}]
{added}"""


def rewrite(path: Path, text: str) -> None:
    """Replace the file as an editor does: write aside, then rename over it."""
    aside = path.with_suffix(".new")
    aside.write_text(text)
    aside.replace(path)


def served_by(client: httpx.Client, model: str) -> str:
    resp = client.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200, resp.text
    content: str = resp.json()["choices"][0]["message"]["content"]
    return content.removeprefix("model=")


def everywhere(client: httpx.Client, model: str, expected: str, bound_s: float = 15.0) -> None:
    """Wait until 12 answers in a row (both workers, many times over) come from ``expected``."""
    deadline, streak = time.monotonic() + bound_s, 0
    while streak < 12:
        assert time.monotonic() < deadline, f"{model} not served by {expected} within {bound_s} s"
        resp = client.post(
            "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "x"}]}
        )
        ok = resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == f"model={expected}"
        streak = streak + 1 if ok else 0


class Load:
    """``THREADS`` clients sending whole answers (alpha, beta) and streams (streamy) until stopped or bounded."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.sent = 0
        self.failures: list[str] = []
        self.streams = 0
        self._lock = threading.Lock()

    def _take(self) -> int | None:
        with self._lock:
            if self.stop.is_set() or self.sent >= MAX_REQUESTS:
                return None
            self.sent += 1
            return self.sent

    def _fail(self, what: str) -> None:
        with self._lock:
            self.failures.append(what)

    def run(self, streams: bool) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while (n := self._take()) is not None:
                try:
                    self._one(client, n, streams)
                except httpx.HTTPError as exc:
                    self._fail(f"request {n}: {type(exc).__name__}: {exc}")

    def wait_for(self, more: int, bound_s: float = 30.0) -> None:
        """Wait until ``more`` requests more were sent (so the next change lands under load)."""
        target, deadline = self.sent + more, time.monotonic() + bound_s
        while self.sent < target:
            assert time.monotonic() < deadline and not self.failures, (self.sent, self.failures[:3])
            time.sleep(0.02)

    def _one(self, client: httpx.Client, n: int, streams: bool) -> None:
        if streams:
            body = {"model": "streamy", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
            with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                text = "".join(resp.iter_text())
            content = "".join(WORDS[:5])
            whole = resp.status_code == 200 and text.rstrip().endswith("data: [DONE]")
            if not whole or sum(w in text for w in WORDS[:5]) != 5:
                self._fail(f"stream {n}: {resp.status_code} {text[-200:]!r} (wanted {content!r})")
            with self._lock:
                self.streams += 1
            return
        model = "alpha" if n % 2 else "beta"
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        resp = client.post("/v1/chat/completions", json=body)
        if resp.status_code != 200 or not resp.json()["choices"][0]["message"]["content"].startswith("model="):
            self._fail(f"{model} {n}: {resp.status_code} {resp.text[:200]}")


@pytest.fixture
def gateway(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, config(upstream.port, 0), workers=2, env={"FERROGATE_MASTER_KEY": MASTER_KEY})
    gw.wait_ready()
    yield gw
    gw.stop()


def test_hot_reload_under_load_drops_nothing(gateway: Gateway, upstream: FakeUpstream, tmp_path: Path) -> None:
    path = tmp_path / f"config-{gateway.port}.yaml"
    load = Load(gateway.url)
    with httpx.Client(base_url=gateway.url, timeout=30) as client, ThreadPoolExecutor(THREADS) as pool:
        everywhere(client, "alpha", "alpha-0")
        running = [pool.submit(load.run, i < 2) for i in range(THREADS)]
        try:
            for step in range(1, STEPS + 1):
                load.wait_for(BETWEEN)
                rewrite(path, config(upstream.port, step))
                everywhere(client, "alpha", f"alpha-{step}")
                everywhere(client, f"gamma-{step - 1}", f"gamma-{step - 1}")
                if step == 2:  # an admin change in the middle: stored, applied here, polled by the other worker
                    group = {"name": "beta", "deployments": [{"upstream": "fake", "model": "beta-admin"}]}
                    load.wait_for(BETWEEN)
                    admin(gateway, "PUT", "/llm/model_groups/beta", group)
                    everywhere(client, "beta", "beta-admin")
        finally:
            load.wait_for(BETWEEN)
            load.stop.set()
            for future in running:
                future.result(timeout=60)
        assert load.failures == [], load.failures[:5]
        assert load.sent >= (STEPS + 2) * BETWEEN and load.streams >= 4, (load.sent, load.streams)
        # the last configuration everywhere: the file's last step, with the admin's beta on top of it
        everywhere(client, "alpha", f"alpha-{STEPS}")
        everywhere(client, "beta", "beta-admin")
        assert {served_by(client, f"gamma-{n}") for n in range(STEPS)} == {f"gamma-{n}" for n in range(STEPS)}
        assert admin(gateway, "GET", "/llm/status")["last_error"] is None
