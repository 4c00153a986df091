"""ferrogate._core.StreamRelay: passthrough, every translation pair read back by the official SDKs, errors, and a
guarded relay masking a token cut across deltas for every pair.

The relay's output is served by a small HTTP server that stands in for the gateway, so the OpenAI and Anthropic
SDKs parse exactly the bytes a client would get.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import openai
import pytest

from ferrogate._core import Scanner, SseError, StreamRelay, UnknownEncodingError

ARGS = '{"city": "Paris"}'
THINKING = "Let me think."
TEXT = "".join(f'word{i} \u00e9 "q" \u4f60\u597d\n' for i in range(5))


def openai_chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
    body = {"id": "up", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": choices}
    return b"data: " + json.dumps({**body, "usage": usage}).encode() + b"\n\n"


def openai_delta(finish: str | None = None, **delta: Any) -> bytes:
    return openai_chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])


OPENAI_USAGE = {
    "prompt_tokens": 30,
    "completion_tokens": 12,
    "total_tokens": 42,
    "prompt_tokens_details": {"cached_tokens": 8},
    "completion_tokens_details": {"reasoning_tokens": 0},
}


def openai_stream(usage: bool = True) -> bytes:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    return b"".join(
        [
            openai_delta(role="assistant", content=""),
            openai_delta(reasoning_content=THINKING),
            *(openai_delta(content=line) for line in TEXT.splitlines(keepends=True)),
            openai_delta(tool_calls=[call]),
            openai_delta(tool_calls=[{"index": 0, "function": {"arguments": ARGS[:8]}}]),
            openai_delta(tool_calls=[{"index": 0, "function": {"arguments": ARGS[8:]}}]),
            openai_delta(finish="tool_calls"),
            openai_chunk([], OPENAI_USAGE) if usage else b"",
            b"data: [DONE]\n\n",
        ]
    )


def anthropic_event(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_stream() -> bytes:
    usage = {"input_tokens": 20, "cache_read_input_tokens": 8, "cache_creation_input_tokens": 2, "output_tokens": 1}
    message = {"id": "msg_up", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": []}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**message, "stop_reason": None, "stop_sequence": None, "usage": usage}},
        {"type": "ping"},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": THINKING}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "c2ln"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        *(
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": line}}
            for line in TEXT.splitlines(keepends=True)
        ),
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}},
        },
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ARGS[:8]}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ARGS[8:]}},
        {"type": "content_block_stop", "index": 2},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 12},
        },
        {"type": "message_stop"},
    ]
    return b"".join(anthropic_event(event) for event in events)


def relayed(relay: StreamRelay, stream: bytes, chunk: int = 97) -> bytes:
    out = [relay.feed(stream[at : at + chunk]) for at in range(0, len(stream), chunk)]
    return b"".join(out) + relay.finish()


class Served:
    """An HTTP server answering every POST with ``body`` as an event stream: the gateway, to the SDKs."""

    def __init__(self) -> None:
        self.body = b""
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(served.body)))
                self.end_headers()
                self.wfile.write(served.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(api_key="k", base_url=f"{self.url}/v1", max_retries=0)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(api_key="k", base_url=self.url, max_retries=0)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    server = Served()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def read_chat(served: Served) -> tuple[str, list[tuple[str, str, str]], str | None, tuple[int, int, int] | None]:
    text, tools, finish, usage = "", dict[int, list[str]](), None, None
    for chunk in served.openai().chat.completions.create(model="m", messages=[], stream=True):
        if chunk.usage is not None:
            cached = chunk.usage.prompt_tokens_details.cached_tokens if chunk.usage.prompt_tokens_details else 0
            usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens, cached or 0)
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                tool = tools.setdefault(call.index, ["", "", ""])
                fn = call.function
                tool[0] += call.id or ""
                tool[1] += (fn.name or "") if fn else ""
                tool[2] += (fn.arguments or "") if fn else ""
            finish = choice.finish_reason or finish
    return text, [(t[0], t[1], t[2]) for t in tools.values()], finish, usage


def read_messages(
    served: Served, thinking: tuple[str, ...] = (THINKING,)
) -> tuple[str, list[tuple[str, str, str]], str | None, tuple[int, int, int]]:
    with served.anthropic().messages.stream(model="m", max_tokens=10, messages=[]) as stream:
        message = stream.get_final_message()
    text = "".join(block.text for block in message.content if block.type == "text")
    assert tuple(block.thinking for block in message.content if block.type == "thinking") == thinking
    tools = [(b.id, b.name, json.dumps(b.input)) for b in message.content if b.type == "tool_use"]
    finish = {"tool_use": "tool_calls", "end_turn": "stop", "max_tokens": "length"}.get(message.stop_reason or "")
    u = message.usage
    cached = u.cache_read_input_tokens or 0
    return (
        text,
        tools,
        finish,
        (u.input_tokens + cached + (u.cache_creation_input_tokens or 0), u.output_tokens, cached),
    )


def read_responses(served: Served) -> tuple[str, list[tuple[str, str, str]], str | None, tuple[int, int, int]]:
    events = list(served.openai().responses.create(model="m", input="hi", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.completed"
    response = final.response
    assert response.output_text == "".join(e.delta for e in events if e.type == "response.output_text.delta")
    tools = [(i.call_id, i.name, i.arguments) for i in response.output if i.type == "function_call"]
    usage = response.usage
    assert usage is not None
    finish = "tool_calls" if tools else "stop"
    return (
        response.output_text,
        tools,
        finish,
        (usage.input_tokens, usage.output_tokens, usage.input_tokens_details.cached_tokens),
    )


READERS = {"openai.chat": read_chat, "anthropic.messages": read_messages, "openai.responses": read_responses}
SOURCES = {"openai.chat": (openai_stream, 8), "anthropic.messages": (anthropic_stream, 8)}


@pytest.mark.parametrize("target", ["openai.chat", "anthropic.messages", "openai.responses"])
@pytest.mark.parametrize("source", ["openai.chat", "anthropic.messages"])
def test_each_pair_is_read_back_by_the_sdk(served: Served, source: str, target: str) -> None:
    make, cached = SOURCES[source]
    relay = StreamRelay(source, target, include_usage=True, request_id="r1", model="m", created=1700000000)
    served.body = relayed(relay, make())
    if target == "anthropic.messages":  # reasoning from an OpenAI upstream is dropped (it has no signature)
        text, tools, finish, usage = read_messages(served, (THINKING,) if source == target else ())
    else:
        text, tools, finish, usage = READERS[target](served)
    assert text == TEXT
    tool_args = json.dumps(json.loads(ARGS))
    assert [(i, n, json.dumps(json.loads(a))) for i, n, a in tools] == [("call_1", "get_weather", tool_args)]
    assert finish == "tool_calls"
    assert usage == (30, 12, cached)
    assert relay.done and not relay.usage_counted
    assert relay.completion_text == THINKING + TEXT + "get_weather" + ARGS


def test_passthrough_returns_the_same_object_and_holds_partial_events() -> None:
    relay = StreamRelay("openai.chat", "openai.chat", include_usage=True)
    chunk = openai_delta(content="hi")
    assert relay.feed(chunk) is chunk
    assert relay.feed(chunk[:10]) == b""
    assert relay.feed(chunk[10:]) == chunk
    big = chunk * 200  # over 16 KiB: relayed with the GIL released, still unchanged
    assert len(big) >= 16 * 1024 and relay.feed(big) is big
    assert relay.model == "gpt-4o" and relay.completion_text == "hi" * 202 and not relay.done


def test_passthrough_strips_or_inserts_usage() -> None:
    stripped = StreamRelay("openai.chat", "openai.chat")
    assert relayed(stripped, openai_stream()) == openai_stream(usage=False)
    assert stripped.usage == (30, 12, 8, 0, 0)

    counted = StreamRelay("openai.chat", "openai.chat", include_usage=True, request_id="r1", prompt_tokens=7)
    out = relayed(counted, openai_stream(usage=False))
    usage_event = out.split(b"\n\n")[-3]
    assert json.loads(usage_event.removeprefix(b"data: "))["usage"]["prompt_tokens"] == 7
    assert counted.usage_counted and counted.usage is not None
    assert counted.usage[1] == counted.count_completion_tokens() > 0


def test_anthropic_passthrough_meters_usage_and_model() -> None:
    relay = StreamRelay("anthropic.messages", "anthropic.messages")
    assert relayed(relay, anthropic_stream()) == anthropic_stream()
    assert relay.usage == (30, 12, 8, 0, 2)
    assert relay.model == "claude-sonnet-4-5" and relay.done and relay.error is None


@pytest.mark.parametrize(
    ("source", "target"),
    [("openai.responses", "openai.chat"), ("openai.responses", "anthropic.messages"), ("gemini", "openai.chat")],
)
def test_unsupported_pairs_are_value_errors(source: str, target: str) -> None:
    with pytest.raises(ValueError, match=source):
        StreamRelay(source, target)


def test_unknown_encoding_and_oversize_events() -> None:
    with pytest.raises(UnknownEncodingError):
        StreamRelay("openai.chat", "openai.chat", encoding="nope")
    relay = StreamRelay("openai.chat", "anthropic.messages", max_event_bytes=64)
    with pytest.raises(SseError):
        relay.feed(b"data: " + b"x" * 100)


def test_upstream_error_becomes_an_error_event_in_the_target(served: Served) -> None:
    relay = StreamRelay("anthropic.messages", "openai.chat")
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    served.body = relayed(relay, anthropic_event(error))
    assert relay.done and json.loads(relay.error or "") == error["error"]
    with pytest.raises(openai.APIError, match="Overloaded"):
        read_chat(served)


@pytest.mark.parametrize("target", ["openai.chat", "anthropic.messages", "openai.responses"])
def test_error_event_is_in_the_target_protocol(target: str) -> None:
    relay = StreamRelay("openai.chat", target)
    relay.feed(openai_delta(content="partial"))
    event = relay.error_event("upstream broke off", "api_error", "upstream_error")
    assert relay.done and event.endswith(b"\n\n")
    data = json.loads(event.split(b"data: ", 1)[1])
    if target == "openai.chat":
        assert data == {
            "error": {"message": "upstream broke off", "type": "api_error", "param": None, "code": "upstream_error"}
        }
    elif target == "anthropic.messages":
        assert event.startswith(b"event: error\n")
        assert data == {"type": "error", "error": {"type": "api_error", "message": "upstream broke off"}}
    else:
        assert data["type"] == "error" and data["code"] == "upstream_error" and data["sequence_number"] > 0


#: A made-up token (rule ``acme-token``), cut across deltas by the streams below.
SECRET = "acme_" + "q7x2m9k4" + "p1z8w3v6"
MASKED = "[REDACTED:acme-token]"
SCANNER = Scanner([{"id": "acme-token", "regex": "acme_[a-z0-9]{16}", "keywords": ["acme_"]}])


def leaky(source: str) -> bytes:
    """A stream of ``source`` whose text and tool call arguments hold :data:`SECRET`, cut across deltas."""
    text = ["Key: ", SECRET[:7], SECRET[7:15], SECRET[15:] + " ok."]
    args = json.dumps({"ref": SECRET})
    fragments = [args[:12], args[12:20], args[20:]]
    if source == "anthropic.messages":
        message = {"id": "msg_up", "type": "message", "role": "assistant", "model": "claude", "content": []}
        usage = {"input_tokens": 20, "output_tokens": 1}
        tool = {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {}}
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": {**message, "usage": usage}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}} for t in text),
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1, "content_block": tool},
            *(
                {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": f}}
                for f in fragments
            ),
            {"type": "content_block_stop", "index": 1},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}},
            {"type": "message_stop"},
        ]
        return b"".join(anthropic_event(event) for event in events)
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": ""}}
    chat = b"".join(
        [
            openai_delta(role="assistant", content=""),
            *(openai_delta(content=t) for t in text),
            openai_delta(tool_calls=[call]),
            *(openai_delta(tool_calls=[{"index": 0, "function": {"arguments": f}}]) for f in fragments),
            openai_delta(finish="tool_calls"),
            openai_chunk([], OPENAI_USAGE),
            b"data: [DONE]\n\n",
        ]
    )
    if source == "openai.chat":
        return chat
    return relayed(StreamRelay("openai.chat", source, request_id="up"), chat)  # a Responses upstream's stream


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("openai.chat", "openai.chat"),
        ("openai.chat", "anthropic.messages"),
        ("openai.chat", "openai.responses"),
        ("anthropic.messages", "openai.chat"),
        ("anthropic.messages", "anthropic.messages"),
        ("anthropic.messages", "openai.responses"),
        ("openai.responses", "openai.responses"),
    ],
)
@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_a_guarded_relay_masks_a_token_cut_across_deltas(served: Served, source: str, target: str, chunk: int) -> None:
    relay = StreamRelay(source, target, include_usage=True, request_id="r1", guard=SCANNER.policy(b"\x02"))
    assert relay.guarded
    served.body = relayed(relay, leaky(source), chunk)
    assert SECRET[5:13].encode() not in served.body and SECRET[13:].encode() not in served.body
    if target == "anthropic.messages":
        text, tools, _, _ = read_messages(served, ())
    else:
        text, tools, _, _ = READERS[target](served)
    assert text == f"Key: {MASKED} ok."
    assert [(name, json.loads(args)) for _, name, args in tools] == [("lookup", {"ref": MASKED})]
    assert relay.guard_findings() == [("acme-token", "custom", 2, 2)]
    assert SECRET in relay.completion_text  # metered as the upstream said it


def test_a_guard_with_every_rule_off_is_no_guard() -> None:
    relay = StreamRelay("openai.chat", "openai.chat", guard=SCANNER.policy(b"\x00"))
    chunk = openai_delta(content=SECRET)
    assert not relay.guarded and relay.feed(chunk) is chunk
    assert relay.guard_findings() == [] and not StreamRelay("openai.chat", "openai.chat").guarded
