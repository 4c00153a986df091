"""ferrogate._core.ChatStreamMeter: usage, model, errors and completion text of an OpenAI stream."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from ferrogate._core import ChatStreamMeter, SseError, UnknownEncodingError

from .reference import openai_count


def chunk(**fields: Any) -> bytes:
    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, **fields}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def delta(**fields: Any) -> bytes:
    return chunk(model="gpt-4o-2024-08-06", choices=[{"index": 0, "delta": fields, "finish_reason": None}], usage=None)


USAGE = {
    "prompt_tokens": 21,
    "completion_tokens": 9,
    "total_tokens": 30,
    "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
}

STREAM = b"".join(
    [
        delta(role="assistant", content="", refusal=None),
        delta(content="Bonjour"),
        delta(content=" le monde — 你好 🚀\n"),
        chunk(model="gpt-4o-2024-08-06", choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}], usage=None),
        chunk(model="gpt-4o-2024-08-06", choices=[], usage=USAGE),
        b"data: [DONE]\n\n",
    ]
)

TOOL_STREAM = b"".join(
    [
        delta(reasoning_content="Let me think. "),
        delta(
            tool_calls=[
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]
        ),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '"Paris"}'}}]),
        b"data: [DONE]\n\n",
    ]
)


def meter_of(chunks: list[bytes], encoding: str = "o200k_base") -> ChatStreamMeter:
    meter = ChatStreamMeter(encoding)
    for part in chunks:
        meter.feed(part)
    meter.finish()
    return meter


def summary(meter: ChatStreamMeter) -> tuple[Any, ...]:
    return (meter.usage, meter.model, meter.done, meter.error, meter.completion_text, meter.malformed_events)


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (STREAM, ((21, 9, 4, 2), "gpt-4o-2024-08-06", True, None, "Bonjour le monde — 你好 🚀\n", 0)),
        (TOOL_STREAM, (None, "gpt-4o-2024-08-06", True, None, 'Let me think. get_weather{"city": "Paris"}', 0)),
        (
            b'data: {"error": {"message": "Rate limit", "type": "rate_limit_error", "code": null}}\n\n',
            (None, None, False, '{"message": "Rate limit", "type": "rate_limit_error", "code": null}', "", 0),
        ),
        (b"data: [DONE]\n\n", (None, None, True, None, "", 0)),
        (b"data: not json\n\n: keepalive\n\n", (None, None, False, None, "", 1)),
        (
            chunk(model="m", choices=[], usage={"prompt_tokens": 3, "completion_tokens": 1}),
            ((3, 1, 0, 0), "m", False, None, "", 0),
        ),
    ],
    ids=["usage", "tools", "error", "done-only", "malformed", "usage-without-details"],
)
def test_meter(stream: bytes, expected: tuple[Any, ...]) -> None:
    assert summary(meter_of([stream])) == expected


@pytest.mark.parametrize("stream", [STREAM, TOOL_STREAM], ids=["usage", "tools"])
def test_every_two_way_split_meters_the_same(stream: bytes) -> None:
    whole = summary(meter_of([stream]))
    for cut in range(len(stream) + 1):
        assert summary(meter_of([stream[:cut], stream[cut:]])) == whole, cut


@pytest.mark.parametrize("seed", range(10))
def test_random_three_plus_way_splits_meter_the_same(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(len(STREAM) + 1), k=2 + seed))
    chunks = [STREAM[a:b] for a, b in itertools.pairwise([0, *cuts, len(STREAM)])]
    assert summary(meter_of(chunks)) == summary(meter_of([STREAM]))


@pytest.mark.parametrize("encoding", ["o200k_base", "cl100k_base"])
def test_completion_tokens_counted_when_no_usage(encoding: str) -> None:
    meter = meter_of([TOOL_STREAM], encoding)
    assert meter.encoding == encoding
    assert meter.count_completion_tokens() == openai_count(meter.completion_text, encoding)


def test_unknown_encoding() -> None:
    with pytest.raises(UnknownEncodingError):
        ChatStreamMeter("p50k_base")


def test_oversize_event_raises() -> None:
    meter = ChatStreamMeter()
    with pytest.raises(SseError):
        meter.feed(b"data: " + b"x" * (2 << 20))
