"""Failover of streamed answers, through the real openai and anthropic SDKs and on the wire (docs/routing.md).

The gateway holds a stream's opening frames back (OpenAI: the role-only delta; Anthropic: message_start,
content_block_start, ping) until its first content: an upstream that fails, dies, stalls or sends an error event
before that is failed over invisibly, and the client sees one clean stream (HTTP 200, one opening, no error
event) from the deployment that answered. After the first content, a failure ends the stream with an error
event in the client's protocol, and nothing is retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.e2e.failover_support import HI, Fleet, group, new_key, running_fleet, served, serving, stored_usage
from tests.fakes.flaky import (
    COMPLETION_TOKENS,
    DIE_AFTER,
    DIE_BEFORE,
    ERROR_BEFORE,
    HANG,
    PROMPT_TOKENS,
    RESET,
    STALL_BEFORE,
    Act,
    status,
)
from tests.support import Gateway

GROUPS = [
    group("pair", "a/gpt", "b/gpt"),
    group("refused", "dead/gpt", "b/gpt"),
    group("claude-pair", "ca/claude", "cb/claude"),
    group("mixed", "a/gpt", "ca/claude"),
]
#: Faults before the first content, each failed over invisibly.
BEFORE = [status(500), status(429), RESET, HANG, DIE_BEFORE, STALL_BEFORE, ERROR_BEFORE]
BEFORE_IDS = ["500", "429", "reset", "timeout", "die", "stall", "error-event"]


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    yield from running_fleet(("a", "b"), ("ca", "cb"))


@pytest.fixture(autouse=True)
def fresh(fleet: Fleet) -> None:
    """Every fake answers OK and has received nothing, at the start of each test."""
    for fake in fleet.values():
        fake.reset()


@pytest.fixture(scope="module")
def gw(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serving(tmp_path_factory.mktemp("failover-stream"), fleet, GROUPS)


@pytest.fixture(scope="module")
def secret(gw: Gateway) -> str:
    found: str = new_key(gw)["key"]
    return found


@pytest.fixture(scope="module")
def oai(gw: Gateway, secret: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=secret, max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def ant(gw: Gateway, secret: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=secret, max_retries=0) as client:
        yield client


def openai_stream(gw: Gateway, secret: str, model: str) -> tuple[httpx.Response, list[Any], str]:
    """A chat stream on the wire: the response, its data frames (parsed, or ``"[DONE]"``) and its whole text."""
    body = {"model": model, "messages": HI, "stream": True}
    auth = {"authorization": f"Bearer {secret}"}
    with httpx.Client(timeout=10) as client, client.stream("POST", f"{gw.url}/v1/chat/completions", json=body,
                                                           headers=auth) as resp:  # fmt: skip
        text = resp.read().decode()
    data = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    frames = [d if d == "[DONE]" else orjson.loads(d) for d in data]
    return resp, frames, text


def anthropic_stream(gw: Gateway, secret: str, model: str) -> tuple[httpx.Response, list[tuple[str, Any]]]:
    """A Messages stream on the wire: the response and its ``(event, data)`` pairs."""
    body = {"model": model, "max_tokens": 64, "messages": HI, "stream": True}
    auth = {"x-api-key": secret, "anthropic-version": "2023-06-01"}
    with httpx.Client(timeout=10) as client, client.stream("POST", f"{gw.url}/v1/messages", json=body,
                                                           headers=auth) as resp:  # fmt: skip
        lines = resp.read().decode().splitlines()
    events, name = [], ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, orjson.loads(line[6:])))
    return resp, events


def chunks_text(frames: list[Any]) -> str:
    return "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f != "[DONE]" and f.get("choices"))


def clean_openai(frames: list[Any]) -> str:
    """The text of a clean chat stream, asserting it is one: one role delta, no error frame, ``[DONE]`` last."""
    assert frames and frames[-1] == "[DONE]", frames
    chunks = frames[:-1]
    assert [c for c in chunks if "error" in c] == []
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert [d["role"] for d in deltas if "role" in d] == ["assistant"]
    return chunks_text(chunks)


def events_text(events: list[tuple[str, Any]]) -> str:
    return "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta" and "text" in d["delta"])


def clean_anthropic(events: list[tuple[str, Any]]) -> str:
    """The text of a clean Messages stream, asserting it is one: one message_start, no error, message_stop last."""
    names = [n for n, _ in events]
    assert names.count("message_start") == 1 and names.count("content_block_start") == 1, names
    assert "error" not in names and names[-1] == "message_stop", names
    return events_text(events)


def sdk_text(oai: openai.OpenAI, model: str) -> str:
    stream = oai.chat.completions.create(model=model, messages=HI, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def sdk_message_text(ant: anthropic.Anthropic, model: str) -> str:
    with ant.messages.stream(model=model, max_tokens=64, messages=HI) as stream:
        text = "".join(stream.text_stream)
        assert stream.get_final_message().stop_reason == "end_turn"
    return text


# --- OpenAI chat streams --------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", BEFORE, ids=BEFORE_IDS)
def test_a_chat_stream_fails_over_before_its_first_content(gw: Gateway, secret: str, fleet: Fleet, fault: Act) -> None:
    fleet["a"].script(fault)
    resp, frames, _ = openai_stream(gw, secret, "pair")
    assert resp.status_code == 200
    assert served(resp.headers) == (2, "b/gpt")
    assert clean_openai(frames) == "served by b"
    assert (fleet["a"].count, fleet["b"].count) == (1, 1)


def test_a_refused_connection_fails_a_stream_over(gw: Gateway, secret: str, fleet: Fleet) -> None:
    resp, frames, _ = openai_stream(gw, secret, "refused")
    assert (resp.status_code, served(resp.headers), clean_openai(frames)) == (200, (2, "b/gpt"), "served by b")


@pytest.mark.parametrize("fault", [DIE_BEFORE, ERROR_BEFORE], ids=["die", "error-event"])
def test_the_openai_sdk_sees_one_clean_stream(oai: openai.OpenAI, fleet: Fleet, fault: Act) -> None:
    fleet["a"].script(fault)
    assert sdk_text(oai, "pair") == "served by b"
    assert (fleet["a"].count, fleet["b"].count) == (1, 1)


def test_a_chat_stream_dying_after_content_ends_with_an_error_frame(gw: Gateway, secret: str, fleet: Fleet) -> None:
    fleet["a"].script(DIE_AFTER)
    resp, frames, _ = openai_stream(gw, secret, "pair")
    assert resp.status_code == 200
    assert served(resp.headers) == (1, "a/gpt")
    assert chunks_text(frames[:-1]) == "partial from a"
    assert set(frames[-1]) == {"error"} and frames[-1]["error"]["message"]
    assert "[DONE]" not in frames
    assert (fleet["a"].count, fleet["b"].count) == (1, 0)  # content went out: no failover


def test_the_openai_sdk_raises_after_the_content_it_got(oai: openai.OpenAI, fleet: Fleet) -> None:
    fleet["a"].script(DIE_AFTER)
    got: list[str] = []
    stream = oai.chat.completions.create(model="pair", messages=HI, stream=True)
    with pytest.raises(openai.APIError):
        for chunk in stream:
            got += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    assert "".join(got) == "partial from a"
    assert fleet["b"].count == 0


def test_every_attempt_failing_before_content_sends_no_content(
    gw: Gateway, secret: str, oai: openai.OpenAI, fleet: Fleet
) -> None:
    fleet["a"].script(default=DIE_BEFORE)
    fleet["b"].script(default=ERROR_BEFORE)
    resp, frames, text = openai_stream(gw, secret, "pair")
    if resp.status_code == 200:  # the head went out with the error event: it carries no content either
        assert chunks_text(frames) == "" and "error" in frames[-1]
    else:
        assert resp.status_code >= 500 and orjson.loads(text)["error"]["message"]
    assert int(resp.headers["x-ferrogate-attempts"]) == 3
    with pytest.raises(openai.APIError):
        sdk_text(oai, "pair")
    assert (fleet["a"].count, fleet["b"].count) == (4, 2)


def test_every_stream_attempt_carries_the_request_id(gw: Gateway, secret: str, fleet: Fleet) -> None:
    fleet["a"].script(ERROR_BEFORE)
    resp, _, _ = openai_stream(gw, secret, "pair")
    rid = resp.headers["x-request-id"]
    assert fleet["a"].header(0, "x-ferrogate-request-id") == fleet["b"].header(0, "x-ferrogate-request-id") == rid


def test_a_failed_over_stream_is_metered_once_with_the_answers_usage(gw: Gateway, fleet: Fleet) -> None:
    key = new_key(gw)
    fleet["a"].script(ERROR_BEFORE)
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0) as sdk:
        chunks = list(
            sdk.chat.completions.create(model="pair", messages=HI, stream=True, stream_options={"include_usage": True})
        )
    usage = [(c.usage.prompt_tokens, c.usage.completion_tokens) for c in chunks if c.usage is not None]
    assert usage == [(PROMPT_TOKENS, COMPLETION_TOKENS)]  # b's, once
    total, trail = stored_usage(gw, key)
    assert (total["requests"], total["prompt_tokens"], total["completion_tokens"]) == (1, *usage[0])
    assert [(r["data"]["upstream"], r["data"]["status"]) for r in trail] == [("b", 200)]


# --- Anthropic Messages streams -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [status(529), status(500), RESET, DIE_BEFORE, STALL_BEFORE, ERROR_BEFORE],
    ids=["529", "500", "reset", "die", "stall", "error-event"],
)
def test_a_messages_stream_fails_over_before_its_first_content(
    gw: Gateway, secret: str, fleet: Fleet, fault: Act
) -> None:
    fleet["ca"].script(fault)
    resp, events = anthropic_stream(gw, secret, "claude-pair")
    assert resp.status_code == 200
    assert served(resp.headers) == (2, "cb/claude")
    assert clean_anthropic(events) == "served by cb"
    assert (fleet["ca"].count, fleet["cb"].count) == (1, 1)


def test_the_anthropic_sdk_sees_one_clean_stream(ant: anthropic.Anthropic, fleet: Fleet) -> None:
    fleet["ca"].script(ERROR_BEFORE)
    assert sdk_message_text(ant, "claude-pair") == "served by cb"
    assert (fleet["ca"].count, fleet["cb"].count) == (1, 1)


def test_a_messages_stream_dying_after_content_ends_with_an_error_event(gw: Gateway, secret: str, fleet: Fleet) -> None:
    fleet["ca"].script(DIE_AFTER)
    resp, events = anthropic_stream(gw, secret, "claude-pair")
    names = [n for n, _ in events]
    assert resp.status_code == 200
    assert events_text(events) == "partial from ca"
    assert names[-1] == "error" and events[-1][1]["type"] == "error" and events[-1][1]["error"]["message"]
    assert "message_stop" not in names
    assert (fleet["ca"].count, fleet["cb"].count) == (1, 0)


def test_the_anthropic_sdk_raises_after_the_content_it_got(ant: anthropic.Anthropic, fleet: Fleet) -> None:
    fleet["ca"].script(DIE_AFTER)
    got: list[str] = []
    with pytest.raises(anthropic.APIError), ant.messages.stream(model="claude-pair", max_tokens=64, messages=HI) as s:
        for text in s.text_stream:
            got.append(text)
    assert "".join(got) == "partial from ca"
    assert fleet["cb"].count == 0


# --- across protocols -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "model", "failing", "answer"),
    [
        ("anthropic", "pair", "a", "served by b"),  # Messages over OpenAI upstreams
        ("openai", "claude-pair", "ca", "served by cb"),  # chat over Anthropic upstreams
        ("openai", "mixed", "a", "served by ca"),  # from an OpenAI deployment to an Anthropic one
        ("anthropic", "mixed", "a", "served by ca"),
    ],
)
def test_a_stream_fails_over_across_protocols(
    oai: openai.OpenAI, ant: anthropic.Anthropic, fleet: Fleet, client: str, model: str, failing: str, answer: str
) -> None:
    fleet[failing].script(DIE_BEFORE)
    text = sdk_text(oai, model) if client == "openai" else sdk_message_text(ant, model)
    assert text == answer
    assert fleet[failing].count == 1
