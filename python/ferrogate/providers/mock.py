"""The built-in ``mock`` provider: deterministic answers with real token counts, no network.

For demos, tests and load tests. The answer is a fixed sequence of words (``mock.words`` of
them, cut at ``max_tokens``/``max_completion_tokens``), in ``n`` choices (at most 128, whatever the
request says); prompt and completion tokens are counted with the Rust core's tokenizer, so usage
is realistic. Streams come in
``mock.chunks`` content chunks with ``mock.chunk_delay_ms`` between them, in OpenAI's
``chat.completion.chunk`` format, always with a final usage chunk (as an OpenAI upstream asked
with ``stream_options.include_usage``, which the gateway always asks for). It answers in OpenAI's chat
format whatever the client's protocol (an Anthropic or Responses client gets it translated, as from any
chat upstream), and embeddings with deterministic unit vectors
(:func:`ferrogate.protocols.embeddings.mock_embeddings`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from ferrogate import _core
from ferrogate.config.model import Upstream
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.protocols import EMBEDDINGS
from ferrogate.protocols.embeddings import mock_embeddings
from ferrogate.protocols.request import Request
from ferrogate.providers.base import Call, Reply

_ANSWER = (
    "This is a mock answer from ferrogate . The quick brown fox jumps over the lazy dog while the gateway"
    " counts every token it sees and keeps the books straight for each team and key ."
)
_VOCAB = _ANSWER.split(" ")
_FINGERPRINT = "fp_ferrogate_mock"
#: The most choices the mock builds, whatever ``n`` says (OpenAI's ceiling; receive refuses more).
MAX_CHOICES = 128
#: The dimensions of a mock embedding when the request names none, and the most numbers one answer holds.
MOCK_DIMENSIONS = 256
MAX_EMBEDDING_NUMBERS = 2**20


class MockProvider:
    """Answers chat completions itself, deterministically."""

    __slots__ = ("_delay_s", "_settings", "name")

    def __init__(self, upstream: Upstream, default_max_tokens: int = 4096) -> None:
        self.name = upstream.name
        self._settings = upstream.mock
        self._delay_s = upstream.mock.chunk_delay_ms / 1000.0

    async def send(self, request: Request, call: Call) -> Reply:
        """Forward phase: build the answer locally (a JSON body or an SSE stream)."""
        encoding = _core.encoding_for_model(call.upstream_model)
        prompt_tokens = request.count_prompt(encoding)
        if request.protocol == EMBEDDINGS:
            _bound_embeddings(request.payload)
            vectors = mock_embeddings(
                request.payload, call.upstream_model, call.request_id, prompt_tokens, MOCK_DIMENSIONS
            )
            return Reply(200, "application/json", body=vectors, protocol=EMBEDDINGS)
        payload = request.chat()
        most = self._settings.words
        limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
        n_words = _bounded(limit, most, most)
        words = [_VOCAB[i % len(_VOCAB)] for i in range(n_words)]
        finish = "length" if n_words < most else "stop"
        n_choices = _bounded(payload.get("n"), 1, MAX_CHOICES)
        text = " ".join(words)
        completion_tokens = _core.count_tokens(text, encoding) * n_choices
        usage = _usage(prompt_tokens, completion_tokens)
        base = {"id": f"chatcmpl-{call.request_id}", "created": int(time.time()), "model": call.upstream_model}
        if not request.stream:
            body = {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                    for i in range(n_choices)
                ],
                "usage": usage,
                "system_fingerprint": _FINGERPRINT,
            }
            return Reply(200, "application/json", body=orjson.dumps(body))
        stream = self._stream(base, words, finish, n_choices, usage)  # the gateway strips it if not asked for
        return Reply(200, "text/event-stream; charset=utf-8", read=_reader(stream))

    async def _stream(
        self, base: dict[str, Any], words: list[str], finish: str, n_choices: int, usage: dict[str, Any] | None
    ) -> AsyncIterator[bytes]:
        head = {**base, "object": "chat.completion.chunk", "system_fingerprint": _FINGERPRINT}
        if usage is not None:
            head["usage"] = None

        def frame(choices: list[dict[str, Any]]) -> bytes:
            return b"data: " + orjson.dumps({**head, "choices": choices}) + b"\n\n"

        def delta(d: dict[str, Any], reason: str | None = None) -> list[dict[str, Any]]:
            return [{"index": i, "delta": d, "logprobs": None, "finish_reason": reason} for i in range(n_choices)]

        yield frame(delta({"role": "assistant", "content": "", "refusal": None}))
        n_chunks = min(self._settings.chunks, max(len(words), 1))
        per = -(-len(words) // n_chunks) if words else 0
        for c in range(n_chunks):
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
            part = words[c * per : (c + 1) * per]
            if part:
                piece = (" " if c else "") + " ".join(part)
                yield frame(delta({"content": piece}))
        yield frame(delta({}, finish))
        if usage is not None:
            yield b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def close(self) -> None:
        """Nothing to release."""


def _bounded(value: object, default: int, most: int) -> int:
    """``value`` if it is an integer in ``1..most``, ``most`` above that, else ``default``: the mock's
    own bound on work a request sizes, even if validation were bypassed.

    Example:
        >>> _bounded(2**63, 1, 128), _bounded(None, 1, 128), _bounded(True, 1, 128), _bounded(3, 1, 128)
        (128, 1, 1, 3)
    """
    if type(value) is not int or value < 1:
        return default
    return min(value, most)


def _bound_embeddings(payload: dict[str, Any]) -> None:
    """The mock's bound on an embeddings answer: at most :data:`MAX_EMBEDDING_NUMBERS` numbers in all (inputs
    times dimensions), a 400 naming ``dimensions`` beyond it."""
    found = payload["input"]
    items = len(found) if type(found) is list and found and type(found[0]) is not int else 1
    dimensions = payload.get("dimensions") or MOCK_DIMENSIONS
    if items * dimensions > MAX_EMBEDDING_NUMBERS:
        raise GatewayError(
            ErrorKind.INVALID_FIELD,
            f"the mock answers at most {MAX_EMBEDDING_NUMBERS} numbers per request ({items} inputs x {dimensions}"
            " dimensions asked)",
            param="dimensions",
        )


def _reader(stream: AsyncIterator[bytes]) -> Callable[[], Awaitable[bytes | None]]:
    async def read() -> bytes | None:
        try:
            return await anext(stream)
        except StopAsyncIteration:
            return None

    return read


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
