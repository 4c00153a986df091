"""The official openai SDK, sync and async, streaming and not, pointed at the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest

from tests.fakes.openai_upstream import WORDS, FakeUpstream
from tests.support import Gateway
from tests.unit.core.reference import openai_count

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def sdk(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_mock_non_streaming(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(model="mock", messages=MESSAGES)  # type: ignore[arg-type]
    text = reply.choices[0].message.content
    assert text is not None and text.startswith("This is a mock answer")
    assert reply.usage is not None
    assert reply.usage.completion_tokens == openai_count(text, "o200k_base")
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_mock_streaming_with_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="mock",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert usage[0].completion_tokens == openai_count(text, "o200k_base")
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4  # mock.chunks


def test_mock_max_tokens_cuts_the_answer(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(model="mock", messages=MESSAGES, max_tokens=3)  # type: ignore[arg-type]
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 3


def test_upstream_gets_its_model_name_and_key(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    reply = sdk.chat.completions.create(model="fake-echo", messages=MESSAGES)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "model=echo"
    last = upstream.requests[-1]
    assert last["body"]["model"] == "echo"
    assert last["body"]["messages"] == MESSAGES
    assert last["headers"]["Authorization"] == "Bearer sk-fake-upstream-key"


def test_streaming_passes_upstream_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="fake-echo",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(WORDS)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert [(u.prompt_tokens, u.completion_tokens) for u in usage] == [(11, len(WORDS))]


@pytest.mark.parametrize("model", ["fake-echo", "mock"])
def test_streaming_without_include_usage_sends_no_usage(sdk: openai.OpenAI, upstream: FakeUpstream, model: str) -> None:
    """The gateway asks the upstream for usage anyway (to meter it) and strips it from the client's stream."""
    stream = sdk.chat.completions.create(model=model, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    chunks = list(stream)
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if model == "fake-echo":
        assert upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}


def test_streaming_usage_counted_when_upstream_sends_none(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="fake-no-usage",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert usage[0].completion_tokens == openai_count("".join(WORDS), "o200k_base")
    # OpenAI's chat rule: 3 per message + content + role, plus 3 to prime the reply
    expected_prompt = sum(3 + openai_count(m["role"] + m["content"], "o200k_base") for m in MESSAGES) + 3
    assert usage[0].prompt_tokens == expected_prompt


def test_async_client_streaming_and_not(gateway: Gateway) -> None:
    async def run() -> tuple[str, str]:
        aclient = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
        async with aclient:
            whole = await aclient.chat.completions.create(model="fake-echo", messages=MESSAGES)  # type: ignore[arg-type]
            stream = await aclient.chat.completions.create(model="mock", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        return whole.choices[0].message.content or "", "".join(parts)

    whole, streamed = asyncio.run(run())
    assert whole == "model=echo"
    assert streamed.startswith("This is a mock answer")


def test_models_lists_the_configured_groups(sdk: openai.OpenAI) -> None:
    ids = [m.id for m in sdk.models.list()]
    assert ids[:2] == ["mock", "gone"]
    assert "fake-echo" in ids


@pytest.mark.parametrize("status", [400, 429, 500])
def test_upstream_errors_pass_through(sdk: openai.OpenAI, status: int) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model=f"fake-fail-{status}", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.status_code == status
    assert info.value.body == {"message": f"fake failure {status}", "type": "fake_error", "param": None, "code": "fake"}


def test_stream_frames_are_relayed_as_they_arrive(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    """The upstream holds its stream after the first content chunk until the client has that chunk."""
    upstream.gate.clear()
    stream = sdk.chat.completions.create(model="fake-gated-stream", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    first = [next(stream), next(stream)]  # the role chunk and the first word, while the upstream waits
    assert first[1].choices[0].delta.content == WORDS[0]
    upstream.gate.set()
    rest = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert rest == "".join(WORDS[1:])
    assert upstream.gate_opened_in_time is True
