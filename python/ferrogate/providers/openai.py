"""The OpenAI-compatible provider: OpenAI, vLLM, llama.cpp server, Ollama's /v1, OpenRouter...

A chat request's body goes upstream unchanged when the deployment's model name equals the one the client
asked for (the common case: no re-serialisation); otherwise ``model`` is replaced. A stream whose client did
not ask for usage is sent with ``stream_options.include_usage`` anyway, so the gateway meters the upstream's
own count; the respond phase's relay takes that chunk out of the client's stream. Embeddings go to
``/embeddings``; a Responses request goes to ``/responses`` when the upstream serves it (``responses: true``),
else as chat completions, like an Anthropic Messages request (both translated through their chat form).
"""

from __future__ import annotations

from typing import Any

import orjson

from ferrogate.config.model import Upstream
from ferrogate.protocols import EMBEDDINGS, OPENAI_CHAT, RESPONSES
from ferrogate.protocols.request import Request
from ferrogate.providers.base import Call, Reply
from ferrogate.providers.http import PooledClient


class OpenAIProvider:
    """Forwards chat completions, Responses and embeddings to an OpenAI-compatible ``base_url``."""

    __slots__ = ("_chat_url", "_client", "_embeddings_url", "_responses_url", "name")

    def __init__(self, upstream: Upstream, default_max_tokens: int = 4096) -> None:
        self.name = upstream.name
        self._chat_url = f"{upstream.base_url}/chat/completions"
        self._embeddings_url = f"{upstream.base_url}/embeddings"
        self._responses_url = f"{upstream.base_url}/responses" if upstream.responses else None
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if upstream.api_key is not None:
            headers["Authorization"] = f"Bearer {upstream.api_key.get_secret_value()}"
        headers.update(upstream.headers)
        self._client = PooledClient(upstream, headers)

    async def send(self, request: Request, call: Call) -> Reply:
        """Forward phase: POST the request in the protocol this upstream serves for it."""
        protocol = request.protocol
        if protocol == EMBEDDINGS or (protocol == RESPONSES and self._responses_url is not None):
            url = self._embeddings_url if protocol == EMBEDDINGS else self._responses_url
            assert url is not None
            body = request.body if call.upstream_model == request.model else _with_model(request.payload, call)
            return await self._client.post(url, body, request.stream, call, protocol)
        if protocol == OPENAI_CHAT:
            body = request.body
            ask_usage = request.stream and not request.include_usage
            if call.upstream_model != request.model or ask_usage:
                body = _chat_body(request.payload, call, ask_usage)
        else:  # an Anthropic or Responses request, as chat completions
            body = _chat_body(request.chat(), call, request.stream)
        return await self._client.post(self._chat_url, body, request.stream, call)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.close()


def _with_model(payload: dict[str, Any], call: Call) -> bytes:
    return orjson.dumps({**payload, "model": call.upstream_model})


def _chat_body(payload: dict[str, Any], call: Call, ask_usage: bool) -> bytes:
    """The chat body with the deployment's model, and (``ask_usage``) asking a stream for its usage: metering
    needs the upstream's count; the relay strips it from a client's stream that did not ask."""
    payload = {**payload, "model": call.upstream_model}
    if ask_usage:
        payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(payload)
