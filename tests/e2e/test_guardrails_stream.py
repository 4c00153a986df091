"""Streamed answers masked by the guardrails, through the real server with the official SDKs as clients.

The fake upstreams' ``leak`` models stream a made-up token (:data:`tests.fakes.openai_upstream.LEAK`, rule
``acme-token``) cut across several chunks, in the answer text and in a tool call's argument deltas. With
``guardrails.responses`` on, the Rust relay masks it as it streams, whatever the pair of protocols (OpenAI chat to
itself, Anthropic to OpenAI chat, OpenAI chat to Anthropic, Anthropic to itself, OpenAI chat to Responses, and a
native Responses upstream, masked in place): the client sees ``[REDACTED:acme-token]`` and never the token, nor a
piece of it; each finding is counted in ``ferrogate_guardrail_findings_total`` and listed in the request's audit
record at ``answer:stream``. For a team whose policy turns answers off, the stream passes unchanged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import LEAK, FakeUpstream
from tests.support import Gateway, admin

MASTER = "guardrails-stream-master-key-0123"
REDACTED = "[REDACTED:acme-token]"
HI: Any = [{"role": "user", "content": "hi"}]
LOOKUP: Any = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a reference up.",
        "parameters": {"type": "object", "properties": {"ref": {"type": "string"}}},
    },
}
LOOKUP_ANTHROPIC: Any = {
    "name": "lookup",
    "description": "Look a reference up.",
    "input_schema": LOOKUP["function"]["parameters"],
}
#: The fakes' answers with the token masked.
OPENAI_TEXT = f"Hello from the fake upstream. {REDACTED} done."
ANTHROPIC_TEXT = f"Your key is {REDACTED}, keep it."
MASKED_ARGS = {"ref": REDACTED}


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, claude: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = f"""
guardrails:
  responses: true
  rules:
    - {{id: acme-token, regex: 'acme_[a-z0-9]{{16}}', keywords: [acme_], action: redact}}
upstreams:
  - name: claude
    provider: anthropic
    base_url: {claude.base_url}/v1
    api_key: sk-ant-fake
  - name: fake
    provider: openai
    base_url: http://127.0.0.1:{upstream.port}/v1
    api_key: sk-fake-upstream-key
  - name: fake-native
    provider: openai
    base_url: http://127.0.0.1:{upstream.port}/v1
    responses: true
model_groups:
  - name: native-leak
    deployments: [{{upstream: fake-native, model: leak}}]
  - name: gpt-leak
    deployments: [{{upstream: fake, model: leak}}]
  - name: claude-leak
    deployments: [{{upstream: claude, model: claude-leak}}]
"""
    tmp: Path = tmp_path_factory.mktemp("guardrails-stream")
    gateway = Gateway(tmp, config, dev=False, env={"FERROGATE_MASTER_KEY": MASTER}).wait_ready()
    yield gateway
    gateway.stop()


def new_key(gw: Gateway) -> dict[str, Any]:
    team = admin(gw, "POST", "/teams", {"name": f"stream-{time.monotonic_ns()}"})
    key: dict[str, Any] = admin(gw, "POST", "/keys", {"name": "k", "team_id": team["id"]})
    key["team"] = team
    return key


@pytest.fixture(scope="module")
def key(gw: Gateway) -> dict[str, Any]:
    return new_key(gw)


@pytest.fixture(scope="module")
def oai(key: dict[str, Any], gw: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def ant(key: dict[str, Any], gw: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=key["key"], max_retries=0) as client:
        yield client


def no_leak(raw: bytes | str) -> None:
    """Neither the token nor any piece of it the fakes cut it into (nor a longer run of it) went out."""
    text = raw if isinstance(raw, str) else raw.decode()
    for piece in (LEAK, LEAK[3:11], LEAK[11:], LEAK[5:10], "leakleak"):
        assert piece not in text, text


def chat_stream(client: openai.OpenAI, model: str, **extra: Any) -> tuple[str, list[tuple[str, str]]]:
    """The text and the tool calls ``(name, arguments)`` an openai SDK client reassembles from a chat stream."""
    text = ""
    calls: list[list[str]] = []
    for chunk in client.chat.completions.create(model=model, messages=HI, stream=True, **extra):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or []:
            if call.index >= len(calls):
                calls.append(["", ""])
            if call.function is not None:
                calls[call.index][0] += call.function.name or ""
                calls[call.index][1] += call.function.arguments or ""
    return text, [(name, args) for name, args in calls]


def messages_stream(client: anthropic.Anthropic, model: str, **extra: Any) -> anthropic.types.Message:
    """The message an anthropic SDK client assembles from a stream."""
    with client.messages.stream(model=model, max_tokens=200, messages=HI, **extra) as stream:
        return stream.get_final_message()


@pytest.mark.parametrize(("model", "want"), [("gpt-leak", OPENAI_TEXT), ("claude-leak", ANTHROPIC_TEXT)])
def test_openai_chat_streams_are_masked(oai: openai.OpenAI, model: str, want: str) -> None:
    assert chat_stream(oai, model) == (want, [])
    text, calls = chat_stream(oai, model, tools=[LOOKUP])
    assert [(name, json.loads(args)) for name, args in calls] == [("lookup", MASKED_ARGS)]
    assert text == want


@pytest.mark.parametrize("model", ["gpt-leak", "claude-leak"])
def test_raw_stream_bytes_never_hold_the_token(gw: Gateway, key: dict[str, Any], model: str) -> None:
    body = {"model": model, "messages": HI, "stream": True, "tools": [LOOKUP]}
    auth = {"Authorization": f"Bearer {key['key']}"}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, headers=auth, timeout=10) as resp:
        assert resp.status_code == 200
        raw = b"".join(resp.iter_raw())
    no_leak(raw)
    assert raw.count(REDACTED.encode()) == 2  # the text's and the argument's
    assert raw.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize(("model", "want"), [("claude-leak", ANTHROPIC_TEXT), ("gpt-leak", OPENAI_TEXT)])
def test_anthropic_messages_streams_are_masked(ant: anthropic.Anthropic, model: str, want: str) -> None:
    message = messages_stream(ant, model)
    assert [b.text for b in message.content if b.type == "text"] == [want]
    no_leak(message.model_dump_json())
    message = messages_stream(ant, model, tools=[LOOKUP_ANTHROPIC])
    assert "".join(b.text for b in message.content if b.type == "text") == want
    assert [(b.name, b.input) for b in message.content if b.type == "tool_use"] == [("lookup", MASKED_ARGS)]
    assert message.stop_reason == "tool_use"
    no_leak(message.model_dump_json())


def test_responses_streams_are_masked(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-leak", input="hi", tools=[LOOKUP["function"] | {"type": "function"}]) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == OPENAI_TEXT
    assert final.output_text == OPENAI_TEXT
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("lookup", MASKED_ARGS)]
    no_leak(final.model_dump_json())


def test_native_responses_streams_are_masked_in_place(gw: Gateway, key: dict[str, Any], oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="native-leak", input="hi") as s:
        events = list(s)
        final = s.get_final_response()
    want = f"model=leak {OPENAI_TEXT}"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == want
    assert [e.text for e in events if e.type == "response.output_text.done"] == [want]
    assert final.output_text == want
    assert [e.sequence_number for e in events] == list(range(len(events)))  # the upstream's events, all of them
    no_leak(final.model_dump_json())
    body = {"model": "native-leak", "input": "hi", "stream": True}
    auth = {"Authorization": f"Bearer {key['key']}"}
    with httpx.stream("POST", f"{gw.url}/v1/responses", json=body, headers=auth, timeout=10) as resp:
        raw = b"".join(resp.iter_raw())
    no_leak(raw)
    assert raw.count(REDACTED.encode()) == 5  # the delta, output_text.done, content_part.done, item, response


def test_findings_are_counted_and_audited_without_the_token(
    gw: Gateway, key: dict[str, Any], oai: openai.OpenAI
) -> None:
    assert chat_stream(oai, "gpt-leak")[0] == OPENAI_TEXT
    series = 'ferrogate_guardrail_findings_total{action="redact",category="custom",rule="acme-token"}'
    deadline = time.monotonic() + 10
    while True:  # metrics are flushed every second
        metrics = httpx.get(f"{gw.url}/metrics").text
        if series in metrics or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert series in metrics
    assert LEAK not in metrics
    finding = {"rule": "acme-token", "category": "custom", "action": "redact", "path": "answer:stream"}
    deadline = time.monotonic() + 10
    while True:  # audit records are written in batches
        records = admin(gw, "GET", f"/audit?team_id={key['team']['id']}&kind=request&limit=200")["data"]
        if any(finding in (r["data"].get("guardrails") or []) for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert any(finding in (r["data"].get("guardrails") or []) for r in records), records
    no_leak(json.dumps(records))
    no_leak(gw.log())


def test_a_team_without_answer_scanning_gets_the_stream_unchanged(gw: Gateway, ant: anthropic.Anthropic) -> None:
    key = new_key(gw)
    admin(gw, "PUT", f"/teams/{key['team']['id']}/guardrails", {"responses": False})
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0) as client:
        deadline = time.monotonic() + 5
        while True:  # a policy change applies within a second
            text, _ = chat_stream(client, "gpt-leak")
            if LEAK in text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert text == f"Hello from the fake upstream. {LEAK} done."
        assert chat_stream(client, "claude-leak") == (f"Your key is {LEAK}, keep it.", [])
    with anthropic.Anthropic(base_url=gw.url, api_key=key["key"], max_retries=0) as other:
        message = messages_stream(other, "claude-leak")
    assert [b.text for b in message.content if b.type == "text"] == [f"Your key is {LEAK}, keep it."]
    # the first key's team still has answers scanned
    assert [b.text for b in messages_stream(ant, "claude-leak").content if b.type == "text"] == [ANTHROPIC_TEXT]
