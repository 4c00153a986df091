"""The Anthropic provider (``provider: anthropic``): the Messages API, ``POST {base_url}/messages``.

An Anthropic Messages request goes upstream as the client sent it (``model`` replaced when the deployment names
another), so every Anthropic field (``cache_control``, thinking blocks, ``service_tier``...) is kept. An OpenAI
chat or Responses request is translated from its chat form by
:func:`ferrogate.protocols.anthropic.from_chat`, which refuses (400) or drops, by an explicit rule per
parameter, what the Messages API cannot honour; JSON mode becomes a forced ``json_response`` tool whose input
the respond phase turns back into the answer's content. Embeddings are refused: Anthropic serves none.
Authentication is ``x-api-key``; ``anthropic-version`` is ``upstream.anthropic_version``.
"""

from __future__ import annotations

import orjson

from ferrogate.config.model import Upstream
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.protocols import ANTHROPIC, EMBEDDINGS
from ferrogate.protocols.anthropic import from_chat
from ferrogate.protocols.request import Request
from ferrogate.providers.base import Call, Reply
from ferrogate.providers.http import PooledClient

#: Where Anthropic's API is when the upstream names no ``base_url``.
DEFAULT_BASE_URL = "https://api.anthropic.com/v1"


class AnthropicProvider:
    """Forwards requests to Anthropic's Messages API (or a server that speaks it)."""

    __slots__ = ("_client", "_count_url", "_default_max_tokens", "_messages_url", "name")

    def __init__(self, upstream: Upstream, default_max_tokens: int = 4096) -> None:
        self.name = upstream.name
        base = upstream.base_url or DEFAULT_BASE_URL
        self._messages_url = f"{base}/messages"
        self._count_url = f"{base}/messages/count_tokens"
        self._default_max_tokens = default_max_tokens  # Anthropic requires max_tokens; chat requests may omit it
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "anthropic-version": upstream.anthropic_version,
        }
        if upstream.api_key is not None:
            headers["x-api-key"] = upstream.api_key.get_secret_value()
        headers.update(upstream.headers)
        self._client = PooledClient(upstream, headers)

    async def send(self, request: Request, call: Call) -> Reply:
        """Forward phase: POST the request to ``{base_url}/messages``, translated unless it is Anthropic's."""
        protocol = request.protocol
        json_mode = False
        if protocol == ANTHROPIC:
            body = request.body
            if call.upstream_model != request.model:
                body = orjson.dumps({**request.payload, "model": call.upstream_model})
        elif protocol == EMBEDDINGS:
            raise GatewayError(
                ErrorKind.INVALID_FIELD,
                f"model '{request.model}' is served by an Anthropic upstream, which has no embeddings",
                param="model",
            )
        else:
            payload, json_mode = from_chat(request.chat(), call.upstream_model, self._default_max_tokens)
            body = orjson.dumps(payload)
        return await self._client.post(self._messages_url, body, request.stream, call, ANTHROPIC, json_mode)

    async def count_tokens(self, request: Request, call: Call) -> Reply:
        """``POST {base_url}/messages/count_tokens`` for an Anthropic request (Anthropic's own count)."""
        body = orjson.dumps({**request.payload, "model": call.upstream_model})
        return await self._client.post(self._count_url, body, False, call, ANTHROPIC)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.close()
