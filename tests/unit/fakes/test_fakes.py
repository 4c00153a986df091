"""The fake upstreams and the Anthropic fixtures speak the wire format the official SDKs expect.

Each answer goes through the SDK as a client would use it, and its raw JSON is validated again with the SDK's
types (the SDKs build their models without validating them), so a fake that drifts from the format fails here.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from anthropic.types import Message, MessageParam, MessageTokensCount, RawMessageStreamEvent, ToolParam
from anthropic.types.shared import ErrorResponse
from openai.types import CreateEmbeddingResponse
from openai.types.responses import FunctionToolParam, Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.fakes.anthropic_upstream import RETRY_AFTER, SIGNATURE, THINKING, FakeAnthropic, tokens
from tests.fakes.openai_upstream import TOOL_ARGUMENTS, WORDS, FakeUpstream, embedding

FIXTURES = Path(__file__).parents[2] / "fixtures" / "anthropic"
STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
RESPONSE_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
QUESTION = "Hello there, what is the weather like?"
HELLO: list[MessageParam] = [{"role": "user", "content": QUESTION}]
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "The current weather of a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}},
}
OTHER_TOOL: ToolParam = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
ANSWER: ToolParam = {
    "name": "answer",
    "input_schema": {"type": "object", "properties": {"answer": {"type": "integer"}}},
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def claude(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="sk-ant-fake", base_url=fake.base_url, max_retries=0) as client:
        yield client


@pytest.fixture
def oai(upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-fake", base_url=upstream.base_url, max_retries=0) as client:
        yield client


def parse_sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """The ``(event name, data)`` pairs of an SSE text; each event must name its data's ``type``."""
    events = []
    for frame in raw.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines())
        data = orjson.loads(fields["data"])
        assert fields["event"] == data["type"]
        events.append((fields["event"], data))
    return events


def assemble(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The content blocks a stream's start and delta events add up to (tool inputs parsed)."""
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for event in events:
        if event["type"] == "content_block_start":
            blocks.append(dict(event["content_block"]))
        elif event["type"] == "content_block_delta":
            block, delta = blocks[event["index"]], event["delta"]
            if delta["type"] == "input_json_delta":
                partial[event["index"]] = partial.get(event["index"], "") + delta["partial_json"]
            else:
                field = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}
                name = field[delta["type"]]
                block[name] += delta[name]
    for index, text in partial.items():
        blocks[index]["input"] = orjson.loads(text)
    return blocks


# ---- the Anthropic fixtures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "blocks", "stop_reason"),
    [
        ("message_text", ["text"], "end_turn"),
        ("message_tool_use", ["text", "tool_use"], "tool_use"),
        ("message_cache_usage", ["text"], "end_turn"),
        ("message_thinking", ["thinking", "text"], "end_turn"),
    ],
)
def test_message_fixtures_are_sdk_messages(name: str, blocks: list[str], stop_reason: str) -> None:
    message = Message.model_validate(orjson.loads((FIXTURES / f"{name}.json").read_bytes()))
    assert [b.type for b in message.content] == blocks
    assert message.stop_reason == stop_reason


def test_cache_fixture_carries_cache_usage() -> None:
    usage = Message.model_validate(orjson.loads((FIXTURES / "message_cache_usage.json").read_bytes())).usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (1800, 188)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("error_529_overloaded", "overloaded_error"),
        ("error_429_rate_limit", "rate_limit_error"),
        ("error_400_invalid_request", "invalid_request_error"),
        ("error_401_authentication", "authentication_error"),
        ("error_500_api", "api_error"),
    ],
)
def test_error_fixtures_are_sdk_error_bodies(name: str, kind: str) -> None:
    body = ErrorResponse.model_validate(orjson.loads((FIXTURES / f"{name}.json").read_bytes()))
    assert (body.type, body.error.type) == ("error", kind)
    assert body.request_id is not None and body.request_id.startswith("req_")


@pytest.mark.parametrize(
    ("name", "final"),
    [("stream_text", "message_text"), ("stream_tool_use", "message_tool_use")],
)
def test_stream_fixtures_are_sdk_events_that_add_up(name: str, final: str) -> None:
    events = parse_sse((FIXTURES / f"{name}.sse").read_text())
    data = [d for event, d in events if event != "ping"]
    for item in data:
        STREAM_EVENT.validate_python(item)
    assert [e for e, _ in events].count("ping") >= 1
    assert [e for e, _ in events][-2:] == ["message_delta", "message_stop"]
    expected = orjson.loads((FIXTURES / f"{final}.json").read_bytes())["content"]
    got = assemble(data)
    assert [b["type"] for b in got] == [b["type"] for b in expected]
    assert [b.get("input") for b in got] == [b.get("input") for b in expected]


def test_tool_stream_fixture_cuts_the_input_json_mid_token() -> None:
    events = parse_sse((FIXTURES / "stream_tool_use.sse").read_text())
    fragments = [d["delta"]["partial_json"] for _, d in events if d.get("delta", {}).get("type") == "input_json_delta"]
    assert len(fragments) > 3
    for fragment in fragments[1:]:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(fragment)


def test_error_stream_fixture_ends_with_an_error_event() -> None:
    events = parse_sse((FIXTURES / "stream_error_mid_stream.sse").read_text())
    for _, item in events[:-1]:
        if item["type"] != "ping":
            STREAM_EVENT.validate_python(item)
    assert [e for e, d in events if d.get("delta", {}).get("type") == "text_delta"] == ["content_block_delta"] * 2
    assert events[-1][0] == "error"
    assert ErrorResponse.model_validate(events[-1][1]).error.type == "overloaded_error"


# ---- FakeAnthropic through the anthropic SDK --------------------------------------------------


def test_echo_names_the_model_and_counts_the_messages(claude: anthropic.Anthropic) -> None:
    turns: list[MessageParam] = [
        *HELLO,
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": "Thanks!"},
    ]
    raw = claude.messages.with_raw_response.create(model="claude-echo", max_tokens=64, messages=turns)
    message = Message.model_validate(orjson.loads(raw.http_response.content))
    assert message.content[0].type == "text"
    assert message.content[0].text == "model=claude-echo messages=3 hello from Anthropic."
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == tokens("".join(str(t["content"]) for t in turns))
    assert message.usage.output_tokens == tokens(message.content[0].text)
    assert raw.http_response.headers["request-id"] == "req_fake"


def test_max_tokens_cuts_the_text(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="claude-echo", max_tokens=8, messages=HELLO)
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text"
    assert message.content[0].text == "model=claude-echo messages=1"
    assert message.usage.output_tokens <= 8


CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], str]] = [
    (
        "claude-tool",
        {"tools": [WEATHER, OTHER_TOOL]},  # the first one is called
        [
            {"type": "text", "text": "Let me call get_weather."},
            {
                "type": "tool_use",
                "id": "toolu_fake01",
                "name": "get_weather",
                "input": {"city": "Paris", "unit": "celsius"},
            },
        ],
        "tool_use",
    ),
    (
        "claude-json",
        {"tools": [WEATHER, ANSWER], "tool_choice": {"type": "tool", "name": "answer"}},
        [{"type": "tool_use", "id": "toolu_fake01", "name": "answer", "input": {"answer": 42}}],
        "tool_use",
    ),
    (
        "claude-thinking",
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        [
            {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE},
            {"type": "text", "text": "model=claude-thinking messages=1 hello from Anthropic."},
        ],
        "end_turn",
    ),
    ("claude-cache", {}, [{"type": "text", "text": "model=claude-cache messages=1 hello from Anthropic."}], "end_turn"),
]


@pytest.mark.parametrize(("model", "extra", "content", "stop_reason"), CASES)
def test_behaviours_answer_json_and_streams_that_add_up_to_it(
    claude: anthropic.Anthropic, model: str, extra: dict[str, Any], content: list[dict[str, Any]], stop_reason: str
) -> None:
    raw = claude.messages.with_raw_response.create(model=model, max_tokens=2048, messages=HELLO, **extra)
    message = Message.model_validate(orjson.loads(raw.http_response.content))
    assert [b.model_dump(exclude_none=True) for b in message.content] == content
    assert message.stop_reason == stop_reason
    events = list(claude.messages.create(model=model, max_tokens=2048, messages=HELLO, stream=True, **extra))
    for event in events:
        STREAM_EVENT.validate_python(event.to_dict())
    assert [e.type for e in events][-2:] == ["message_delta", "message_stop"]
    with claude.messages.stream(model=model, max_tokens=2048, messages=HELLO, **extra) as stream:
        final = stream.get_final_message()
    assert [b.model_dump(exclude_none=True) for b in final.content] == content
    assert (final.stop_reason, final.usage) == (stop_reason, message.usage)


def test_cache_usage(claude: anthropic.Anthropic) -> None:
    usage = claude.messages.create(model="claude-cache", max_tokens=64, messages=HELLO).usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (100, 20)


def test_tool_result_is_answered_with_its_content(claude: anthropic.Anthropic) -> None:
    turns: list[Any] = [
        *HELLO,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C and sunny"}]},
    ]
    message = claude.messages.create(model="claude-tool", max_tokens=64, messages=turns, tools=[WEATHER])
    assert message.content[0].type == "text"
    assert (message.content[0].text, message.stop_reason) == ("The tool said: 18C and sunny", "end_turn")


def test_tool_input_streams_in_fragments_cut_mid_token(claude: anthropic.Anthropic) -> None:
    stream = claude.messages.create(model="claude-tool", max_tokens=64, messages=HELLO, tools=[WEATHER], stream=True)
    fragments = [
        e.delta.partial_json for e in stream if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert orjson.loads("".join(fragments)) == {"city": "Paris", "unit": "celsius"}
    assert len(fragments) > 3
    for fragment in fragments[1:]:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(fragment)


@pytest.mark.parametrize(
    ("model", "status", "error", "kind"),
    [
        ("claude-overloaded", 529, anthropic.InternalServerError, "overloaded_error"),
        ("claude-rate-limited", 429, anthropic.RateLimitError, "rate_limit_error"),
        ("claude-bad", 400, anthropic.BadRequestError, "invalid_request_error"),
        ("claude-500", 500, anthropic.InternalServerError, "api_error"),
    ],
)
def test_failures_are_anthropic_errors(
    claude: anthropic.Anthropic, model: str, status: int, error: type[anthropic.APIStatusError], kind: str
) -> None:
    with pytest.raises(error) as caught:
        claude.messages.create(model=model, max_tokens=64, messages=HELLO)
    assert caught.value.status_code == status
    assert ErrorResponse.model_validate(caught.value.body).error.type == kind
    assert caught.value.response.headers.get("retry-after") == (RETRY_AFTER if status == 429 else None)


def test_error_mid_stream_reaches_the_sdk_after_two_deltas(claude: anthropic.Anthropic) -> None:
    texts: list[str] = []
    stream = claude.messages.create(model="claude-error-mid-stream", max_tokens=64, messages=HELLO, stream=True)
    with pytest.raises(anthropic.APIStatusError) as caught:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                texts.append(event.delta.text)
    assert texts == ["model=claude-error-mid-stream", " messages=1"]
    assert ErrorResponse.model_validate(caught.value.body).error.type == "overloaded_error"


def raw_stream(fake: FakeAnthropic, model: str) -> tuple[list[str], BaseException | None]:
    """The SSE event names of a raw POST /v1/messages stream, and the error that ended it if any."""
    names: list[str] = []
    body = {"model": model, "max_tokens": 64, "messages": HELLO, "stream": True}
    headers = {"x-api-key": "sk-ant-fake", "anthropic-version": "2023-06-01"}
    try:
        with httpx.stream("POST", f"{fake.base_url}/v1/messages", json=body, headers=headers, timeout=10) as resp:
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    names.append(line.removeprefix("event: "))
    except httpx.TransportError as exc:
        return names, exc
    return names, None


def test_stream_frames_name_their_events_with_a_ping_after_the_first_block_start(fake: FakeAnthropic) -> None:
    names, error = raw_stream(fake, "claude-echo")
    assert error is None
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,  # one per word
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_die_mid_stream_drops_the_connection_after_two_deltas(fake: FakeAnthropic) -> None:
    names, error = raw_stream(fake, "claude-die-mid-stream")
    assert isinstance(error, httpx.RemoteProtocolError)
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta"]


def test_slow_stream_spaces_its_five_deltas(claude: anthropic.Anthropic) -> None:
    arrivals: list[float] = []
    for event in claude.messages.create(model="claude-slow-stream", max_tokens=64, messages=HELLO, stream=True):
        if event.type == "content_block_delta":
            arrivals.append(time.monotonic())
    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] >= 4 * 0.3 - 0.05


def post(fake: FakeAnthropic, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{fake.base_url}/v1/messages", json=body, headers=headers, timeout=10)


VERSION = {"anthropic-version": "2023-06-01"}
BODY = {"model": "claude-echo", "max_tokens": 64, "messages": HELLO}


@pytest.mark.parametrize(
    ("body", "headers", "status", "kind"),
    [
        (BODY, {"x-api-key": "sk-ant-fake", **VERSION}, 200, None),
        (BODY, {"authorization": "Bearer sk-ant-fake", **VERSION}, 200, None),
        (BODY, VERSION, 401, "authentication_error"),
        (BODY, {"x-api-key": "", **VERSION}, 401, "authentication_error"),
        (BODY, {"x-api-key": "sk-ant-fake"}, 400, "invalid_request_error"),
        ({**BODY, "max_tokens": None}, {"x-api-key": "sk-ant-fake", **VERSION}, 400, "invalid_request_error"),
    ],
)
def test_requests_need_a_key_a_version_and_the_required_fields(
    fake: FakeAnthropic, body: dict[str, Any], headers: dict[str, str], status: int, kind: str | None
) -> None:
    resp = post(fake, body, headers)
    assert resp.status_code == status
    if kind is None:
        Message.model_validate(resp.json())
    else:
        assert ErrorResponse.model_validate(resp.json()).error.type == kind


def test_count_tokens_matches_the_messages_input_tokens(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.count_tokens(model="claude-echo", messages=HELLO)
    counted = MessageTokensCount.model_validate(orjson.loads(raw.http_response.content))
    message = claude.messages.create(model="claude-echo", max_tokens=64, messages=HELLO)
    assert counted.input_tokens == message.usage.input_tokens == tokens(QUESTION)


def test_requests_are_recorded_with_path_headers_and_body(fake: FakeAnthropic, claude: anthropic.Anthropic) -> None:
    claude.messages.create(model="claude-echo", max_tokens=64, messages=HELLO, system="Be brief.")
    last = fake.requests[-1]
    assert last["path"] == "/v1/messages"
    assert last["headers"]["anthropic-version"]
    assert (last["body"]["system"], last["body"]["messages"]) == ("Be brief.", HELLO)


# ---- FakeUpstream's Responses and embeddings endpoints through the openai SDK -----------------


FUNCTION: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}},
    "strict": False,
}
TEXT = "".join(["model=echo ", *WORDS])


def test_response_names_the_model_and_counts_usage(oai: openai.OpenAI) -> None:
    raw = oai.responses.with_raw_response.create(model="echo", input="Hello there!", instructions="Be brief.")
    response = Response.model_validate(orjson.loads(raw.http_response.content))
    assert (response.status, response.output_text) == ("completed", TEXT)
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (6, len(WORDS) + 1)
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_response_with_tools_calls_the_first_function(oai: openai.OpenAI) -> None:
    other: FunctionToolParam = {**FUNCTION, "name": "get_time"}
    turn: list[Any] = [{"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}]
    raw = oai.responses.with_raw_response.create(model="tool", input=turn, tools=[FUNCTION, other])
    call = Response.model_validate(orjson.loads(raw.http_response.content)).output[0]
    assert call.type == "function_call"
    assert (call.name, orjson.loads(call.arguments)) == ("get_weather", {"city": "Paris", "unit": "celsius"})


TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * (len(WORDS) + 1),
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
TOOL_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    *["response.function_call_arguments.delta"] * 6,
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.mark.parametrize(("model", "tools", "names"), [("echo", [], TEXT_EVENTS), ("tool", [FUNCTION], TOOL_EVENTS)])
def test_response_streams_are_numbered_sdk_events_that_add_up(
    oai: openai.OpenAI, model: str, tools: list[Any], names: list[str]
) -> None:
    events = list(oai.responses.create(model=model, input="Hi", tools=tools, stream=True))
    for event in events:
        RESPONSE_EVENT.validate_python(event.to_dict())
    assert [e.type for e in events] == names
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == sum(n.endswith(".delta") for n in names)  # one per delta
    with oai.responses.stream(model=model, input="Hi", tools=tools) as stream:
        final = stream.get_final_response()
    assert [o.model_dump(exclude_none=True) for o in final.output] == [
        o.model_dump(exclude_none=True) for o in completed.response.output
    ]
    assert final.output_text == ("" if tools else TEXT)
    if tools:
        assert final.output[0].type == "function_call"
        assert final.output[0].arguments == TOOL_ARGUMENTS


@pytest.mark.parametrize("dimensions", [None, 3, 16])
def test_embeddings_are_deterministic_in_both_encodings(oai: openai.OpenAI, dimensions: int | None) -> None:
    size = dimensions or openai.omit
    texts = ["the cat sat", "on the mat"]
    raw = oai.embeddings.with_raw_response.create(model="emb", input=texts, encoding_format="float", dimensions=size)
    floats = CreateEmbeddingResponse.model_validate(orjson.loads(raw.http_response.content))
    encoded = oai.embeddings.create(model="emb", input=texts, dimensions=size)  # the SDK asks for base64, decodes it
    size = dimensions or 8  # the fake's default
    assert (
        [d.embedding for d in floats.data] == [d.embedding for d in encoded.data] == [embedding(t, size) for t in texts]
    )
    assert [len(d.embedding) for d in floats.data] == [size, size]
    assert floats.data[0].embedding != floats.data[1].embedding
    assert sum(v * v for v in floats.data[0].embedding) == pytest.approx(1.0, rel=1e-5)
    assert (floats.usage.prompt_tokens, floats.usage.total_tokens) == (6, 6)


def test_base64_embeddings_are_little_endian_float32(oai: openai.OpenAI) -> None:
    raw = oai.embeddings.with_raw_response.create(model="emb", input="hello", encoding_format="base64")
    item = orjson.loads(raw.http_response.content)["data"][0]["embedding"]
    assert list(struct.unpack("<8f", base64.b64decode(item))) == embedding("hello", 8)


def test_token_inputs_are_embedded_and_counted(oai: openai.OpenAI) -> None:
    answer = oai.embeddings.create(model="emb", input=[[1, 2, 3], [4, 5]], encoding_format="float")
    assert [d.index for d in answer.data] == [0, 1]
    assert answer.usage.prompt_tokens == 5


@pytest.mark.parametrize("status", [400, 429, 500])
def test_failures_on_responses_and_embeddings(oai: openai.OpenAI, status: int) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        oai.responses.create(model=f"fail-{status}", input="Hi")
    assert caught.value.status_code == status
    with pytest.raises(openai.APIStatusError) as caught:
        oai.embeddings.create(model=f"fail-{status}", input="Hi")
    assert caught.value.status_code == status
