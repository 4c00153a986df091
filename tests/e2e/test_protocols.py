"""Every ingress over every upstream protocol, with the official SDKs as clients.

The openai SDK against an Anthropic upstream (chat translated to the Messages API and back, streams through the
Rust relay), the anthropic SDK against OpenAI-format upstreams and the mock through ``/v1/messages``, the
Responses API over chat-only, native and Anthropic upstreams, embeddings; errors in the client's protocol; and
the same limits, metering and audit on every route.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.anthropic_upstream import JSON_INPUT, TOOL_INPUT, FakeAnthropic
from tests.fakes.openai_upstream import WORDS, FakeUpstream
from tests.support import Gateway

MASTER = "protocols-master-key-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
MESSAGES: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}},
    },
}
WEATHER_ANTHROPIC: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": WEATHER["function"]["parameters"],
}


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, claude: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    behaviours = ["echo", "tool", "json", "thinking", "cache", "overloaded", "rate-limited", "bad", "500"]
    behaviours += ["error-mid-stream", "die-mid-stream"]
    price = "{input: 3, output: 15}"  # USD per million tokens
    groups = "\n".join(
        f"  - name: claude-{b}\n    deployments: [{{upstream: claude, model: claude-{b}, price: {price}}}]"
        for b in behaviours
    )
    config = f"""
upstreams:
  - name: claude
    provider: anthropic
    base_url: {claude.base_url}/v1
    api_key: sk-ant-fake
    timeouts: {{connect_s: 2, read_s: 5, total_s: 30}}
  - name: fake
    provider: openai
    base_url: http://127.0.0.1:{upstream.port}/v1
    api_key: sk-fake-upstream-key
  - name: fake-native
    provider: openai
    base_url: http://127.0.0.1:{upstream.port}/v1
    responses: true
  - name: mock
    provider: mock
    mock: {{chunks: 4, words: 12}}
model_groups:
  - name: mock
    deployments: [{{upstream: mock}}]
  - name: gpt-echo
    deployments: [{{upstream: fake, model: echo}}]
  - name: gpt-fail-429
    deployments: [{{upstream: fake, model: fail-429}}]
  - name: gpt-native
    deployments: [{{upstream: fake-native, model: echo}}]
  - name: embed
    deployments: [{{upstream: fake, model: embed}}]
{groups}
"""
    tmp: Path = tmp_path_factory.mktemp("protocols")
    gateway = Gateway(tmp, config, dev=False, env={"FERROGATE_MASTER_KEY": MASTER}).wait_ready()
    yield gateway
    gateway.stop()


def admin(gw: Gateway, method: str, path: str, body: Any = None) -> Any:
    resp = httpx.request(method, f"{gw.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code < 300, resp.text
    return resp.json()


def new_key(gw: Gateway, **limits: Any) -> dict[str, Any]:
    team = admin(gw, "POST", "/teams", {"name": f"t{time.monotonic_ns()}"})
    key: dict[str, Any] = admin(gw, "POST", "/keys", {"name": "k", "team_id": team["id"], **limits})
    key["team"] = team
    return key


@pytest.fixture(scope="module")
def secret(gw: Gateway) -> str:
    """A key with request and token limits (high enough for the module): every test goes through the limits."""
    found: str = new_key(gw, rpm=100_000, tpm=100_000_000)["key"]
    return found


@pytest.fixture(scope="module")
def oai(gw: Gateway, secret: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=secret, max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def ant(gw: Gateway, secret: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=secret, max_retries=0) as client:
        yield client


# --- the openai SDK, an Anthropic upstream -------------------------------------------------------------


def test_chat_over_anthropic(oai: openai.OpenAI, claude: FakeAnthropic) -> None:
    reply = oai.chat.completions.create(model="claude-echo", messages=MESSAGES, max_tokens=100, user="u-1")
    assert reply.choices[0].message.content == "model=claude-echo messages=1 hello from Anthropic."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    sent = claude.requests[-1]["body"]
    assert sent["system"] == "Be brief."
    assert sent["messages"] == [{"role": "user", "content": "Say hello."}]
    assert sent["max_tokens"] == 100 and sent["metadata"] == {"user_id": "u-1"}


def test_chat_over_anthropic_max_tokens_is_length(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model="claude-echo", messages=MESSAGES, max_tokens=3)
    assert reply.choices[0].finish_reason == "length"


def test_chat_stream_over_anthropic_reassembles_to_the_whole_answer(oai: openai.OpenAI) -> None:
    whole = oai.chat.completions.create(model="claude-echo", messages=MESSAGES, max_tokens=100)
    stream = oai.chat.completions.create(
        model="claude-echo", messages=MESSAGES, max_tokens=100, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = [c.usage for c in chunks if c.usage is not None]
    assert whole.usage is not None and len(usage) == 1
    assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
    )


def test_chat_tools_over_anthropic(oai: openai.OpenAI, claude: FakeAnthropic) -> None:
    reply = oai.chat.completions.create(model="claude-tool", messages=MESSAGES, tools=[WEATHER], tool_choice="auto")
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert call.function.arguments and json.loads(call.function.arguments) == TOOL_INPUT  # type: ignore[union-attr]
    sent = claude.requests[-1]["body"]
    assert sent["tools"][0]["name"] == "get_weather" and sent["tool_choice"] == {"type": "auto"}
    # the tool's result goes back as a tool_result block
    follow = oai.chat.completions.create(
        model="claude-tool",
        messages=[
            *MESSAGES,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"},
        ],
        tools=[WEATHER],
    )
    assert follow.choices[0].message.content == "The tool said: 18 degrees"
    turn = claude.requests[-1]["body"]["messages"][-1]
    assert turn["role"] == "user" and turn["content"][0]["type"] == "tool_result"
    assert turn["content"][0]["tool_use_id"] == call.id


def test_chat_tool_stream_over_anthropic_has_the_arguments(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model="claude-tool", messages=MESSAGES, tools=[WEATHER], stream=True)
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += delta.id or ""
                if delta.function is not None:
                    entry["name"] += delta.function.name or ""
                    entry["arguments"] += delta.function.arguments or ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["get_weather"]
    assert json.loads(calls[0]["arguments"]) == TOOL_INPUT
    assert calls[0]["id"].startswith("toolu_")


def test_chat_json_mode_over_anthropic(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model="claude-json", messages=MESSAGES, response_format={"type": "json_object"})
    assert json.loads(reply.choices[0].message.content or "") == JSON_INPUT
    assert reply.choices[0].finish_reason == "stop"
    stream = oai.chat.completions.create(
        model="claude-json", messages=MESSAGES, response_format={"type": "json_object"}, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert json.loads(text) == JSON_INPUT


def test_chat_cache_usage_over_anthropic(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model="claude-cache", messages=MESSAGES)
    assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == 100
    assert reply.usage.prompt_tokens >= 120  # input + cache read + cache creation


@pytest.mark.parametrize(
    ("model", "status", "kind"),
    [
        ("claude-overloaded", 503, openai.InternalServerError),
        ("claude-rate-limited", 429, openai.RateLimitError),
        ("claude-bad", 400, openai.BadRequestError),
        ("claude-500", 500, openai.InternalServerError),
    ],
)
def test_anthropic_errors_reach_openai_clients_in_openai_shape(
    oai: openai.OpenAI, model: str, status: int, kind: type[Exception]
) -> None:
    with pytest.raises(kind) as caught:
        oai.chat.completions.create(model=model, messages=MESSAGES)
    err: Any = caught.value
    assert err.status_code == status
    assert isinstance(err.body, dict) and "message" in err.body and "type" in err.body
    if model == "claude-rate-limited":
        assert err.response.headers["retry-after"] == "7"


def test_anthropic_error_mid_stream_is_an_openai_error_event(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model="claude-error-mid-stream", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError):
        list(stream)


def test_refused_parameter_is_named(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="claude-echo", messages=MESSAGES, n=2)
    assert caught.value.body["param"] == "n"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="claude-echo", messages=MESSAGES, temperature=1.5)
    assert caught.value.body["param"] == "temperature"  # type: ignore[index]


# --- the anthropic SDK through /v1/messages ----------------------------------------------------------


@pytest.mark.parametrize("model", ["mock", "gpt-echo", "claude-echo"])
def test_messages_json(ant: anthropic.Anthropic, model: str) -> None:
    reply = ant.messages.create(
        model=model, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.type == "message" and reply.role == "assistant"
    assert reply.content[0].type == "text" and reply.content[0].text
    assert reply.stop_reason in {"end_turn", "max_tokens"}
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0


def test_messages_same_protocol_passes_anthropic_fields(ant: anthropic.Anthropic, claude: FakeAnthropic) -> None:
    ant.messages.create(
        model="claude-echo",
        max_tokens=64,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hi"}],
        service_tier="auto",
    )
    sent = claude.requests[-1]["body"]
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"} and sent["service_tier"] == "auto"


def test_messages_thinking_passes_through(ant: anthropic.Anthropic) -> None:
    reply = ant.messages.create(model="claude-thinking", max_tokens=2048, messages=[{"role": "user", "content": "hi"}])
    assert [b.type for b in reply.content] == ["thinking", "text"]
    with ant.messages.stream(
        model="claude-thinking", max_tokens=2048, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]


@pytest.mark.parametrize("model", ["mock", "claude-echo"])  # the fake OpenAI upstream streams other words
def test_messages_stream(ant: anthropic.Anthropic, model: str) -> None:
    whole = ant.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    with ant.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_messages_stream_from_openai_upstream_text(ant: anthropic.Anthropic) -> None:
    with ant.messages.stream(model="gpt-echo", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
    assert text == "".join(WORDS)


def test_messages_tools_over_openai_upstream(ant: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    reply = ant.messages.create(
        model="mock",
        max_tokens=64,
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": TOOL_INPUT}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 degrees"}]},
        ],
        tools=[WEATHER_ANTHROPIC],
    )
    assert reply.content[0].type == "text"
    ant.messages.create(
        model="gpt-echo",
        max_tokens=64,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER_ANTHROPIC],
        tool_choice={"type": "any"},
    )
    sent = upstream.requests[-1]["body"]
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["tool_choice"] == "required"


def test_messages_tool_stream_over_anthropic(ant: anthropic.Anthropic) -> None:
    with ant.messages.stream(
        model="claude-tool",
        max_tokens=256,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER_ANTHROPIC],
    ) as stream:
        final = stream.get_final_message()
    tool = [b for b in final.content if b.type == "tool_use"]
    assert tool and tool[0].input == TOOL_INPUT and final.stop_reason == "tool_use"


def test_messages_count_tokens(ant: anthropic.Anthropic, claude: FakeAnthropic) -> None:
    for model in ("mock", "claude-echo"):
        counted = ant.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hello there"}])
        assert counted.input_tokens > 0
    assert claude.requests[-1]["path"].endswith("/count_tokens")


def test_messages_errors_in_anthropic_shape(ant: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        ant.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["type"] == "error"  # type: ignore[index]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        ant.messages.create(model="mock", max_tokens=0, messages=[{"role": "user", "content": "hi"}])
    assert "max_tokens" in bad.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError) as limited:
        ant.messages.create(model="gpt-fail-429", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        ant.messages.create(model="claude-overloaded", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert overloaded.value.status_code == 529  # Anthropic to Anthropic: its own status and body


# --- the Responses API -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mock", "gpt-echo", "gpt-native", "claude-echo"])
def test_responses_json(oai: openai.OpenAI, model: str) -> None:
    reply = oai.responses.create(model=model, input="Say hello.", instructions="Be brief.", max_output_tokens=64)
    assert reply.output_text
    assert reply.usage is not None and reply.usage.input_tokens > 0


@pytest.mark.parametrize("model", ["mock", "gpt-echo", "gpt-native", "claude-echo"])
def test_responses_stream(oai: openai.OpenAI, model: str) -> None:
    whole = oai.responses.create(model=model, input="Say hello.", max_output_tokens=64)
    with oai.responses.stream(model=model, input="Say hello.", max_output_tokens=64) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert deltas == final.output_text
    if model != "gpt-echo":  # the fake OpenAI upstream streams other words than it answers whole
        assert deltas == whole.output_text
    assert final.usage is not None and final.usage.output_tokens > 0


def test_responses_function_call_over_anthropic(oai: openai.OpenAI) -> None:
    tool: Any = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}
    reply = oai.responses.create(model="claude-tool", input="weather?", tools=[tool])
    calls = [item for item in reply.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == TOOL_INPUT


# --- embeddings --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mock", "embed"])
def test_embeddings(oai: openai.OpenAI, model: str) -> None:
    reply = oai.embeddings.create(model=model, input=["hello", "world"], dimensions=8)
    assert [len(d.embedding) for d in reply.data] == [8, 8]
    assert reply.usage.prompt_tokens > 0
    raw = httpx.post(
        f"{oai.base_url}embeddings",
        json={"model": model, "input": "hello", "encoding_format": "base64", "dimensions": 8},
        headers={"Authorization": f"Bearer {oai.api_key}"},
    ).json()
    assert len(struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))) == 8


def test_embeddings_refused_on_anthropic(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.embeddings.create(model="claude-echo", input="hello")
    assert caught.value.body["param"] == "model"  # type: ignore[index]


def test_every_route_is_limited_metered_and_audited(gw: Gateway) -> None:
    key = new_key(gw, rpm=4)
    hi: Any = [{"role": "user", "content": "hi"}]
    with (
        anthropic.Anthropic(base_url=gw.url, api_key=key["key"], max_retries=0) as ant_key,
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0) as oai_key,
    ):
        ant_key.messages.create(model="mock", max_tokens=16, messages=hi)
        with ant_key.messages.stream(model="claude-echo", max_tokens=16, messages=hi) as stream:
            stream.get_final_message()
        oai_key.responses.create(model="mock", input="hi")
        oai_key.embeddings.create(model="mock", input="hi")
        with pytest.raises(anthropic.RateLimitError) as refused:  # the key's 4 requests per minute are used
            ant_key.messages.create(model="mock", max_tokens=16, messages=hi)
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    auth = {"authorization": f"Bearer {key['key']}"}
    deadline = time.monotonic() + 5
    while True:  # records are written in batches (0.5 s)
        report = httpx.get(f"{gw.url}/v1/usage", headers=auth).json()
        if report["total"]["requests"] >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    by_model = {m["model"]: m for m in report["by_model"]}
    assert report["total"]["requests"] == 5  # the refused one too (status 429, no tokens)
    assert by_model["claude-echo"]["prompt_tokens"] > 0 and by_model["claude-echo"]["completion_tokens"] > 0
    assert by_model["mock"]["requests"] == 4
    deadline = time.monotonic() + 10
    while True:
        records = admin(gw, "GET", f"/audit?team_id={key['team']['id']}&kind=request&limit=100")["data"]
        if len(records) >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    actions = sorted(r["action"] for r in records)
    assert actions == ["embeddings", "messages", "messages", "messages", "responses"]


def test_budgets_hold_on_messages_too(gw: Gateway) -> None:
    """The worst case of an Anthropic request (its prompt and max_tokens at the deployment's price) is held
    against the key's budget: one that cannot cover it is refused before the upstream is called."""
    key = new_key(gw, budget=0.001)  # USD: 64 output tokens at $15 per million fit, 8,192 do not
    hi: Any = [{"role": "user", "content": "hi"}]
    with anthropic.Anthropic(base_url=gw.url, api_key=key["key"], max_retries=0) as ant_key:
        assert ant_key.messages.create(model="claude-echo", max_tokens=64, messages=hi).content
        with pytest.raises(anthropic.RateLimitError) as refused:
            ant_key.messages.create(model="claude-echo", max_tokens=8192, messages=hi)
    assert refused.value.body["type"] == "error"  # type: ignore[index]
    assert "budget" in refused.value.body["error"]["message"]  # type: ignore[index]
