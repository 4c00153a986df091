"""The mock provider bounds the work a request sizes itself, even with validation bypassed."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from ferrogate.config.model import MockSettings, Upstream
from ferrogate.protocols import OPENAI_CHAT
from ferrogate.protocols.request import Request
from ferrogate.providers.base import Call
from ferrogate.providers.mock import MAX_CHOICES, MockProvider


def answer(payload: dict[str, Any], stream: bool = False) -> list[bytes]:
    """The mock's answer to ``payload`` (never validated here): the body, or every streamed frame."""
    provider = MockProvider(Upstream(name="mock", provider="mock", mock=MockSettings(words=12, chunks=4)))
    body = {"model": "mock", **payload, "stream": stream}
    # the bytes the counter reads (orjson cannot write a number past 64 bits, which some tests send)
    request = Request(OPENAI_CHAT, orjson.dumps({"messages": payload["messages"]}), body)

    async def run() -> list[bytes]:
        reply = await provider.send(request, Call("mock", "req_1"))
        if reply.read is None:
            return [reply.body or b""]
        frames = []
        while (frame := await reply.read()) is not None:
            frames.append(frame)
        return frames

    return asyncio.run(run())


MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("n", [2**63, 10**30, 1e29, float("inf"), "9", True, -5, None])
def test_n_is_bounded_whatever_it_says(n: Any) -> None:
    body = orjson.loads(answer({"model": "mock", "messages": MESSAGES, "n": n})[0])
    expected = MAX_CHOICES if type(n) is int and n > MAX_CHOICES else 1
    assert len(body["choices"]) == expected


@pytest.mark.parametrize("max_tokens", [2**63, 1e30, "5", [3], 0])
def test_words_are_bounded_by_the_configuration(max_tokens: Any) -> None:
    body = orjson.loads(answer({"model": "mock", "messages": MESSAGES, "max_tokens": max_tokens})[0])
    assert len(body["choices"][0]["message"]["content"].split(" ")) == 12
    assert body["choices"][0]["finish_reason"] == "stop"


def test_a_stream_has_bounded_frames_and_choices() -> None:
    frames = answer({"model": "mock", "messages": MESSAGES, "n": 2**63, "max_tokens": 3}, stream=True)
    assert len(frames) == 1 + 3 + 1 + 1 + 1  # role, 3 one-word chunks (words < chunks), finish, usage, [DONE]
    first = orjson.loads(frames[0].removeprefix(b"data: "))
    assert len(first["choices"]) == MAX_CHOICES
    assert frames[-1] == b"data: [DONE]\n\n"
