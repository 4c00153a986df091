"""The flaky fakes themselves, without a gateway: each follows its script, in its provider's wire format."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.fakes.flaky import (
    COMPLETION_TOKENS,
    CONTEXT,
    DIE_AFTER,
    DIE_BEFORE,
    ERROR_BEFORE,
    HANG,
    PROMPT_TOKENS,
    RESET,
    FlakyAnthropic,
    FlakyOpenAI,
    policy,
    status,
    text_of,
)

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def a() -> Iterator[FlakyOpenAI]:
    fake = FlakyOpenAI("a")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def ca() -> Iterator[FlakyAnthropic]:
    fake = FlakyAnthropic("ca")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def fresh(a: FlakyOpenAI, ca: FlakyAnthropic) -> None:
    a.reset()
    ca.reset()


def test_the_openai_fake_follows_its_script(a: FlakyOpenAI) -> None:
    a.script(status(429, retry_after="2", retry_after_ms="1500"), CONTEXT, policy("content_filter"), RESET)
    url = f"{a.base_url}/chat/completions"
    body = {"model": "gpt", "messages": HI}
    with httpx.Client(timeout=5) as client:
        limited = client.post(url, json=body, headers={"X-Ferrogate-Request-Id": "r1"})
        window = client.post(url, json=body)
        filtered = client.post(url, json=body)
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(url, json=body)
        ok = client.post(url, json=body)
    hints = (limited.headers["retry-after"], limited.headers["retry-after-ms"])
    assert (limited.status_code, hints) == (429, ("2", "1500"))
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert (window.status_code, window.json()["error"]["code"]) == (400, "context_length_exceeded")
    assert (filtered.status_code, filtered.json()["error"]["code"]) == (400, "content_filter")
    assert ok.json()["choices"][0]["message"]["content"] == text_of("a") == "served by a"
    assert ok.json()["usage"]["completion_tokens"] == COMPLETION_TOKENS
    assert a.count == 5
    assert (a.header(0, "x-ferrogate-request-id"), a.header(1, "x-ferrogate-request-id")) == ("r1", None)


def test_the_openai_fake_streams_and_fails_mid_stream(a: FlakyOpenAI) -> None:
    a.script(DIE_BEFORE, ERROR_BEFORE, DIE_AFTER)
    url = f"{a.base_url}/chat/completions"
    body = {"model": "gpt", "messages": HI, "stream": True, "stream_options": {"include_usage": True}}

    def frames(client: httpx.Client) -> tuple[list[bytes], bool]:
        got: list[bytes] = []
        try:
            with client.stream("POST", url, json=body) as resp:
                for line in resp.iter_lines():  # one by one: what came before a drop is kept
                    if line.startswith("data: "):
                        got.append(line[6:].encode())
        except httpx.RemoteProtocolError:
            return got, False
        return got, True

    with httpx.Client(timeout=5) as client:
        died, ended = frames(client)
        assert not ended and [orjson.loads(f)["choices"][0]["delta"] for f in died] == [
            {"role": "assistant", "content": ""}
        ]
        errored, ended = frames(client)
        assert ended and len(errored) == 2 and orjson.loads(errored[1])["error"]["type"] == "server_error"
        partial, ended = frames(client)
        assert not ended and [orjson.loads(f)["choices"][0]["delta"].get("content") for f in partial] == [
            "",
            "partial",
            " from a",
        ]
        whole, ended = frames(client)
    assert ended and whole[-1] == b"[DONE]"
    content = [orjson.loads(f)["choices"][0]["delta"].get("content") for f in whole[:-2]]
    assert content == ["", "served", " by", " a", None]
    assert orjson.loads(whole[-2])["usage"]["prompt_tokens"] == PROMPT_TOKENS


def test_a_hang_outlasts_a_short_read_timeout(a: FlakyOpenAI) -> None:
    a.script(HANG)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{a.base_url}/chat/completions", json={"model": "gpt", "messages": HI}, timeout=0.3)
    assert a.count == 1


def test_the_anthropic_fake_speaks_messages(ca: FlakyAnthropic) -> None:
    ca.script(status(529), CONTEXT, default=DIE_AFTER)
    url = f"{ca.base_url}/messages"
    body = {"model": "claude", "max_tokens": 9, "messages": HI}
    with httpx.Client(timeout=5) as client:
        overloaded = client.post(url, json=body)
        window = client.post(url, json=body)
        lines: list[str] = []
        with pytest.raises(httpx.RemoteProtocolError), client.stream("POST", url, json=body | {"stream": True}) as r:
            for line in r.iter_lines():
                lines.append(line)
        ca.script()
        whole = client.post(url, json=body).json()
        with client.stream("POST", url, json=body | {"stream": True}) as r:
            events = [line[7:] for line in r.iter_lines() if line.startswith("event: ")]
    assert overloaded.status_code == 529 and overloaded.json()["error"]["type"] == "overloaded_error"
    assert window.status_code == 400 and window.json()["error"]["message"].startswith("prompt is too long")
    assert lines[0] == "event: message_start"
    texts = [orjson.loads(line[6:])["delta"]["text"] for line in lines if "text_delta" in line]
    assert texts == ["partial", " from ca"] and not any("message_stop" in line for line in lines)
    assert whole["content"][0]["text"] == "served by ca" and whole["usage"]["input_tokens"] == PROMPT_TOKENS
    assert events[:3] == ["message_start", "content_block_start", "ping"] and events[-1] == "message_stop"
    assert ca.count == 5
