"""Mixed, realistic traffic for the gateway (or the pass-through): locust, bounded in users and time.

70% non-streaming chat, 20% streaming chat read to the final `data: [DONE]`, 10% GET /v1/models.
Each simulated user waits 50-500 ms between requests. Models: BENCH_MODEL (default "bench") and
BENCH_SSE_MODEL (default "bench-sse", the gateway config that load/bench.py writes). Against
load/passthrough.py set BENCH_SSE_PATH=/sse/v1/chat/completions, since it picks the stream by path.

    locust -f load/locustfile.py --headless -u 20 -r 5 -t 30s --host http://127.0.0.1:8080
"""

from __future__ import annotations

import os
import random
from typing import ClassVar

from locust import FastHttpUser, between, task

MODEL = os.environ.get("BENCH_MODEL", "bench")
SSE_MODEL = os.environ.get("BENCH_SSE_MODEL", "bench-sse")
CHAT_PATH = os.environ.get("BENCH_CHAT_PATH", "/v1/chat/completions")
SSE_PATH = os.environ.get("BENCH_SSE_PATH", CHAT_PATH)
QUESTIONS = (
    "hello",
    "Summarise the attached meeting notes in three bullet points.",
    "Write a Python function that checks whether a string is a palindrome.",
    "What is the capital of Australia, and why is it not Sydney?",
)


def _chat(model: str, stream: bool) -> dict[str, object]:
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": random.choice(QUESTIONS)},
        ],
        "max_tokens": 256,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


class ChatUser(FastHttpUser):
    """One API client: mostly chat completions, some streamed, now and then a model listing."""

    wait_time = between(0.05, 0.5)
    headers: ClassVar[dict[str, str]] = {"Authorization": "Bearer " + os.environ.get("BENCH_API_KEY", "x")}

    @task(7)
    def chat(self) -> None:
        with self.client.post(
            CHAT_PATH, json=_chat(MODEL, False), headers=self.headers, name="chat", catch_response=True
        ) as resp:
            if resp.status_code != 200 or '"usage"' not in (resp.text or ""):
                resp.failure(f"status {resp.status_code}: {(resp.text or '')[:200]}")

    @task(2)
    def chat_stream(self) -> None:
        with self.client.post(
            SSE_PATH, json=_chat(SSE_MODEL, True), headers=self.headers, name="chat stream", catch_response=True
        ) as resp:
            text = resp.text or ""  # FastHttpUser reads the whole stream here
            if resp.status_code != 200 or not text.rstrip().endswith("data: [DONE]"):
                resp.failure(f"status {resp.status_code}, stream did not end with [DONE]: {text[-200:]!r}")

    @task(1)
    def models(self) -> None:
        with self.client.get("/v1/models", headers=self.headers, name="models", catch_response=True) as resp:
            if resp.status_code != 200 or '"list"' not in (resp.text or ""):
                resp.failure(f"status {resp.status_code}")
