"""The stream relay against the whole-answer translators: one answer, streamed or whole, reads the same.

Hypothesis draws an answer, builds it both as the whole JSON body and as its SSE stream in the upstream's
wire format (deltas cut at random points), feeds the stream to ``ferrogate._core.StreamRelay`` in random
chunks, rebuilds the answer from the relayed events the way a client SDK does, and compares it with what
``protocols.anthropic`` / ``protocols.responses`` make of the whole body. A mismatch found (and fixed) keeps one
example below the properties; one the suite knows of and has not fixed is pinned there by ``xfail(strict=True)``,
so it stays visible.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferrogate._core import StreamRelay
from ferrogate.protocols import anthropic, responses
from tests.fakes.anthropic_upstream import sse

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,  # the suite's run is reproducible (as the fuzz tests are)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Cutter = Callable[[str], list[str]]

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
OBJECTS = st.dictionaries(st.text(max_size=6), JSON, max_size=4)
TEXT = st.text(max_size=40)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,15}", fullmatch=True)
IDS = st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True)
TOKENS = st.integers(0, 10**6)


@st.composite
def pieces(draw: st.DrawFn, text: str) -> list[str]:
    """``text`` cut at random points (``[text]`` when it is shorter than two characters)."""
    points = draw(st.lists(st.integers(1, len(text) - 1), max_size=6)) if len(text) > 1 else []
    bounds = [0, *sorted(set(points)), len(text)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


@st.composite
def splits(draw: st.DrawFn, blob: bytes) -> list[bytes]:
    """``blob`` cut at random byte offsets (through UTF-8 sequences and SSE framing alike)."""
    points = sorted(set(draw(st.lists(st.integers(0, len(blob)), max_size=20))))
    bounds = [0, *points, len(blob)]
    return [blob[start:end] for start, end in itertools.pairwise(bounds)]


def relayed(relay: StreamRelay, chunks: list[bytes]) -> bytes:
    out = b"".join([relay.feed(chunk) for chunk in chunks]) + relay.finish()
    assert relay.done
    return out


def sse_events(out: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The ``(event, data)`` pairs of an ``event: <type>`` stream; each event's data names its type."""
    frames = out.split(b"\n\n")
    assert frames.pop() == b""
    pairs = []
    for frame in frames:
        head, data = frame.split(b"\n")
        assert head.startswith(b"event: ") and data.startswith(b"data: ")
        name, body = head.removeprefix(b"event: ").decode(), orjson.loads(data.removeprefix(b"data: "))
        assert body["type"] == name
        pairs.append((name, body))
    return pairs


# ---- Anthropic Messages -> OpenAI chat ------------------------------------------------------------------


def anthropic_stream(
    message: dict[str, Any], cut: Cutter, *, full_delta_usage: bool = True, ascii_json: bool = False
) -> bytes:
    """``message`` as the Messages API streams it: a ping after the first block's start; text, thinking and
    tool input (its JSON text, ``\\uXXXX``-escaped when ``ascii_json``) in ``cut`` pieces, the input opened
    by an empty ``partial_json`` as the API does; ``message_delta`` with the cumulative usage, or only the
    output tokens (as the API did before it repeated the input counts)."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    out = [sse({"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        empty = {"text": "", "thinking": "", "signature": "", "input": {}}
        started = {key: empty.get(key, value) for key, value in block.items()}
        out.append(sse({"type": "content_block_start", "index": index, "content_block": started}))
        if index == 0:
            out.append(sse({"type": "ping"}))
        if block["type"] == "text":
            deltas = [{"type": "text_delta", "text": piece} for piece in cut(block["text"])]
        elif block["type"] == "thinking":
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in cut(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            arguments = json.dumps(block["input"], ensure_ascii=ascii_json)
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in ["", *cut(arguments)]]
        out += [sse({"type": "content_block_delta", "index": index, "delta": delta}) for delta in deltas]
        out.append(sse({"type": "content_block_stop", "index": index}))
    counts = {key: value for key, value in usage.items() if key != "service_tier"}
    final = counts if full_delta_usage else {"output_tokens": usage["output_tokens"]}
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    out.append(sse({"type": "message_delta", "delta": delta, "usage": final}))
    out.append(sse({"type": "message_stop"}))
    return b"".join(out)


def anthropic_message(content: list[dict[str, Any]], stop_reason: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {**usage, "service_tier": "standard"},
    }


TEXT_BLOCKS = st.builds(lambda text: {"type": "text", "text": text}, TEXT)
TOOL_BLOCKS = st.builds(
    lambda id_, name, args: {"type": "tool_use", "id": f"toolu_{id_}", "name": name, "input": args}, IDS, NAMES, OBJECTS
)
THINKING_BLOCKS = st.builds(lambda text, sig: {"type": "thinking", "thinking": text, "signature": sig}, TEXT, IDS)
ANTHROPIC_USAGE = st.fixed_dictionaries(
    {
        "input_tokens": TOKENS,
        "cache_creation_input_tokens": TOKENS,
        "cache_read_input_tokens": TOKENS,
        "output_tokens": TOKENS,
    }
)


@st.composite
def anthropic_answers(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A Message (text and tool_use blocks, maybe led by one thinking block) as JSON and as its stream."""
    content = draw(st.lists(TEXT_BLOCKS | TOOL_BLOCKS, max_size=4))
    content = [*draw(st.lists(THINKING_BLOCKS, max_size=1)), *content]
    stop = draw(st.sampled_from(["end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal"]))
    message = anthropic_message(content, stop, draw(ANTHROPIC_USAGE))
    wire = {"full_delta_usage": draw(st.booleans()), "ascii_json": draw(st.booleans())}
    stream = anthropic_stream(message, lambda text: draw(pieces(text)), **wire)
    return orjson.dumps(message), stream


def chat_from_stream(out: bytes) -> dict[str, Any]:
    """What an OpenAI client assembles from a chat stream: content, reasoning, tool calls by index, finish, usage."""
    frames = out.split(b"\n\n")
    assert frames[-2:] == [b"data: [DONE]", b""]
    content, reasoning, finish, usage, models = "", "", None, None, set()
    calls: dict[int, dict[str, str]] = {}
    for frame in frames[:-2]:
        chunk = orjson.loads(frame.removeprefix(b"data: "))
        assert (chunk["id"], chunk["object"]) == ("chatcmpl-r", "chat.completion.chunk")
        models.add(chunk["model"])
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                slot["id"] += call.get("id") or ""
                slot["name"] += call.get("function", {}).get("name") or ""
                slot["arguments"] += call.get("function", {}).get("arguments") or ""
            finish = choice["finish_reason"] or finish
    assert sorted(calls) == list(range(len(calls)))
    return {
        "models": models,
        "content": content,
        "reasoning": reasoning,
        "tool_calls": [(c["id"], c["name"], orjson.loads(c["arguments"])) for _, c in sorted(calls.items())],
        "finish_reason": finish,
        "usage": usage,
    }


def chat_from_whole(body: bytes) -> dict[str, Any]:
    chat = orjson.loads(body)
    choice = chat["choices"][0]
    message = choice["message"]
    calls = message.get("tool_calls") or ()
    return {
        "models": {chat["model"]},
        "content": message["content"] or "",  # a stream has no null content: no text is ""
        "reasoning": message.get("reasoning_content", ""),
        "tool_calls": [(c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"])) for c in calls],
        "finish_reason": choice["finish_reason"],
        "usage": chat["usage"],
    }


def anthropic_to_chat(chunks: list[bytes]) -> bytes:
    relay = StreamRelay("anthropic.messages", "openai.chat", include_usage=True, request_id="r", model="m")
    return relayed(relay, chunks)


@PROPERTY
@given(answer=anthropic_answers(), data=st.data())
def test_anthropic_stream_to_chat_reads_as_the_whole_message(answer: tuple[bytes, bytes], data: st.DataObject) -> None:
    body, stream = answer
    out = anthropic_to_chat(data.draw(splits(stream), label="chunks"))
    assert out == anthropic_to_chat([stream])
    assert chat_from_stream(out) == chat_from_whole(anthropic.reply_to_chat(body, "r", "m"))


# ---- OpenAI chat -> Anthropic Messages and Responses ----------------------------------------------------


def chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    body = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_1",
        "choices": choices,
        "usage": usage,
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def chat_stream(completion: dict[str, Any], cut: Cutter) -> list[bytes]:
    """``completion`` as OpenAI streams it with ``include_usage``: the role delta, reasoning, content, refusal
    and tool call deltas in ``cut`` pieces, the finish chunk, the usage-only chunk and ``[DONE]`` (one event each)."""
    choice = completion["choices"][0]
    message = choice["message"]
    text = message["content"]
    out = [chunk({"role": "assistant", "content": "" if text is not None else None, "refusal": None})]
    for key in ("reasoning_content", "content", "refusal"):
        out += [chunk({key: piece}) for piece in cut(message[key])] if message.get(key) else []
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = {"name": call["function"]["name"], "arguments": ""}
        out.append(
            chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function", "function": function}]})
        )
        for piece in cut(call["function"]["arguments"]) if call["function"]["arguments"] else ():
            out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    out.append(chunk({}, choice["finish_reason"]))
    out.append(chunk(None, usage=completion["usage"]))
    return [*out, b"data: [DONE]\n\n"]


def chat_completion(text: str | None, calls: list[tuple[str, str, str]], finish: str, usage: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    if calls:
        message["tool_calls"] = [
            {"id": id_, "type": "function", "function": {"name": name, "arguments": args}} for id_, name, args in calls
        ]
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
        "system_fingerprint": "fp_1",
    }


@st.composite
def chat_usages(draw: st.DrawFn) -> dict[str, Any]:
    prompt, completion = draw(TOKENS), draw(TOKENS)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": draw(st.integers(0, prompt)), "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": draw(st.integers(0, completion)), "audio_tokens": 0},
    }


ARGUMENTS = OBJECTS.map(lambda args: orjson.dumps(args).decode()) | st.just("")
CALLS = st.lists(st.tuples(IDS.map(lambda id_: f"call_{id_}"), NAMES, ARGUMENTS), max_size=3)


@st.composite
def chat_answers(draw: st.DrawFn) -> tuple[dict[str, Any], list[bytes]]:
    """A chat.completion (text or null content, maybe reasoning and a refusal, tool calls, a finish reason,
    usage) and its stream's events."""
    calls = draw(CALLS)
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
    completion = chat_completion(draw(st.none() | TEXT), calls, finish, draw(chat_usages()))
    message = completion["choices"][0]["message"]
    message["refusal"] = draw(st.none() | TEXT)
    if reasoning := draw(st.none() | TEXT):
        message["reasoning_content"] = reasoning
    return completion, chat_stream(completion, lambda text: draw(pieces(text)))


def to_anthropic(events: list[bytes], chunks: list[bytes]) -> bytes:
    usage = orjson.loads(events[-2].removeprefix(b"data: "))["usage"]
    relay = StreamRelay(
        "openai.chat", "anthropic.messages", request_id="r", model="m", prompt_tokens=usage["prompt_tokens"]
    )
    return relayed(relay, chunks)


def message_view(message: dict[str, Any]) -> dict[str, Any]:
    usage = message["usage"]
    return {
        "id": message["id"],
        "content": message["content"],
        "stop_reason": message["stop_reason"],
        "usage": (
            usage["input_tokens"],
            usage["output_tokens"],
            usage["cache_read_input_tokens"],
            usage["cache_creation_input_tokens"],
        ),
    }


BLOCK_FIELDS = {
    "text": ("type", "text"),
    "thinking": ("type", "thinking", "signature"),
    "tool_use": ("type", "id", "name", "input"),
}


def message_from_stream(out: bytes) -> dict[str, Any]:
    """The Message the anthropic SDK's stream accumulator builds from the relayed events."""
    snapshot, json_bufs = None, dict[int, bytes]()
    pairs = sse_events(out)
    assert [name for name, _ in pairs][-2:] == ["message_delta", "message_stop"]
    for _, data in pairs:
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=json_bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    blocks = [{key: getattr(block, key) for key in BLOCK_FIELDS[block.type]} for block in snapshot.content]
    usage = snapshot.usage
    return {
        "id": snapshot.id,
        "model": snapshot.model,
        "content": blocks,
        "stop_reason": snapshot.stop_reason,
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        },
    }


@PROPERTY
@given(answer=chat_answers(), data=st.data())
def test_chat_stream_to_anthropic_reads_as_the_whole_answer(
    answer: tuple[dict[str, Any], list[bytes]], data: st.DataObject
) -> None:
    completion, events = answer
    stream = b"".join(events)
    out = to_anthropic(events, data.draw(splits(stream), label="chunks"))
    assert out == to_anthropic(events, [stream])
    whole = orjson.loads(anthropic.reply_from_chat(orjson.dumps(completion), "r", "m"))
    assert message_view(message_from_stream(out)) == message_view(whole)


def response_view(response: dict[str, Any]) -> dict[str, Any]:
    output = response["output"]
    parts = [part for item in output if item["type"] == "message" for part in item["content"]]
    return {
        "id": response["id"],
        "status": response["status"],
        "incomplete_details": response["incomplete_details"],
        "items": [(item["type"], item["status"]) for item in output],
        "text": "".join(part["text"] for part in parts if part["type"] == "output_text"),
        "refusal": "".join(part["refusal"] for part in parts if part["type"] == "refusal"),
        "calls": [(i["call_id"], i["name"], i["arguments"]) for i in output if i["type"] == "function_call"],
        "usage": response["usage"],
    }


def response_from_stream(out: bytes) -> tuple[dict[str, Any], str]:
    """The final response of a Responses stream and its concatenated ``response.output_text.delta`` deltas."""
    pairs = sse_events(out)
    assert [data["sequence_number"] for _, data in pairs] == list(range(len(pairs)))
    name, final = pairs[-1]
    assert name == f"response.{final['response']['status']}"
    return final["response"], "".join(data["delta"] for name, data in pairs if name == "response.output_text.delta")


@PROPERTY
@given(answer=chat_answers(), data=st.data())
def test_chat_stream_to_responses_reads_as_the_whole_answer(
    answer: tuple[dict[str, Any], list[bytes]], data: st.DataObject
) -> None:
    completion, events = answer
    stream = b"".join(events)
    out = relayed(
        StreamRelay("openai.chat", "openai.responses", request_id="r", model="m"),
        data.draw(splits(stream), label="chunks"),
    )
    assert out == relayed(StreamRelay("openai.chat", "openai.responses", request_id="r", model="m"), [stream])
    response, deltas = response_from_stream(out)
    expected = response_view(orjson.loads(responses.reply_from_chat(orjson.dumps(completion), "r", "m")))
    assert response_view(response) == expected
    assert deltas == expected["text"]


# ---- OpenAI chat passthrough ----------------------------------------------------------------------------


@PROPERTY
@given(answer=chat_answers(), data=st.data())
def test_chat_passthrough_only_drops_the_usage_chunk(
    answer: tuple[dict[str, Any], list[bytes]], data: st.DataObject
) -> None:
    completion, events = answer
    stream = b"".join(events)
    chunks = data.draw(splits(stream), label="chunks")
    relay = StreamRelay("openai.chat", "openai.chat")
    assert relayed(relay, chunks) == b"".join(events[:-2] + events[-1:])
    usage = completion["usage"]
    expected = (usage["prompt_tokens"], usage["completion_tokens"], usage["prompt_tokens_details"]["cached_tokens"])
    assert relay.usage == (*expected, usage["completion_tokens_details"]["reasoning_tokens"], 0)
    assert relayed(StreamRelay("openai.chat", "openai.chat", include_usage=True), chunks) == stream


# ---- mismatches found: one example each -----------------------------------------------------------------

CHAT_USAGE = {
    "prompt_tokens": 30,
    "completion_tokens": 12,
    "total_tokens": 42,
    "prompt_tokens_details": {"cached_tokens": 8},
}
CALL = ("call_1", "get_weather", '{"city":"Paris"}')


def streamed_and_whole(completion: dict[str, Any], target: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``completion`` relayed as a stream to ``target`` and rebuilt, and translated whole."""
    events = chat_stream(completion, lambda text: [text])
    body = orjson.dumps(completion)
    if target == "anthropic.messages":
        whole = anthropic.reply_from_chat(body, "r", "m")
        return message_from_stream(to_anthropic(events, events)), orjson.loads(whole)
    relay = StreamRelay("openai.chat", "openai.responses", request_id="r", model="m")
    whole = responses.reply_from_chat(body, "r", "m")
    return response_from_stream(relayed(relay, events))[0], orjson.loads(whole)


def test_stop_after_tool_calls_is_tool_use_streamed_too() -> None:
    streamed, whole = streamed_and_whole(chat_completion(None, [CALL], "stop", CHAT_USAGE), "anthropic.messages")
    assert streamed["stop_reason"] == whole["stop_reason"]


@pytest.mark.parametrize("target", ["anthropic.messages", "openai.responses"])
def test_a_refusal_is_kept_streamed_too(target: str) -> None:
    completion = chat_completion(None, [], "stop", CHAT_USAGE)
    completion["choices"][0]["message"]["refusal"] = "I can't help with that."
    streamed, whole = streamed_and_whole(completion, target)
    view = message_view if target == "anthropic.messages" else response_view
    assert view(streamed) == view(whole)


@pytest.mark.parametrize("target", ["anthropic.messages", "openai.responses"])
def test_the_answer_names_the_same_model(target: str) -> None:
    streamed, whole = streamed_and_whole(chat_completion("hi", [], "stop", CHAT_USAGE), target)
    assert streamed["model"] == whole["model"]


def test_reasoning_content_reads_the_same_to_anthropic() -> None:
    completion = chat_completion("hi", [], "stop", CHAT_USAGE)
    completion["choices"][0]["message"]["reasoning_content"] = "Let me think."
    streamed, whole = streamed_and_whole(completion, "anthropic.messages")
    assert streamed["content"] == whole["content"]


THINKING_USAGE = {"input_tokens": 5, "output_tokens": 9, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}


def test_two_thinking_blocks_read_the_same() -> None:
    thinking = [{"type": "thinking", "thinking": text, "signature": "c2ln"} for text in ("a", "b")]
    message = anthropic_message([thinking[0], {"type": "text", "text": "x"}, thinking[1]], "end_turn", THINKING_USAGE)
    out = anthropic_to_chat([anthropic_stream(message, lambda text: [text])])
    assert (
        chat_from_stream(out)["reasoning"]
        == chat_from_whole(anthropic.reply_to_chat(orjson.dumps(message), "r", "m"))["reasoning"]
    )


def test_thinking_tokens_read_the_same() -> None:
    usage = {**THINKING_USAGE, "output_tokens_details": {"thinking_tokens": 5}}
    message = anthropic_message([{"type": "thinking", "thinking": "a", "signature": "c2ln"}], "end_turn", usage)
    out = anthropic_to_chat([anthropic_stream(message, lambda text: [text])])
    whole = chat_from_whole(anthropic.reply_to_chat(orjson.dumps(message), "r", "m"))
    assert chat_from_stream(out)["usage"] == whole["usage"]


def test_a_message_cut_by_the_limit_is_incomplete_streamed_too() -> None:
    streamed, whole = streamed_and_whole(chat_completion("hi", [CALL], "length", CHAT_USAGE), "openai.responses")
    assert response_view(streamed) == response_view(whole)
    assert [item["status"] for item in streamed["output"]] == ["incomplete", "completed"]


def test_cache_creation_tokens_read_as_zero_streamed_too() -> None:
    streamed, whole = streamed_and_whole(chat_completion("hi", [], "stop", CHAT_USAGE), "anthropic.messages")
    assert streamed["usage"]["cache_creation_input_tokens"] == whole["usage"]["cache_creation_input_tokens"] == 0
