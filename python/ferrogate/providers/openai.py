"""The OpenAI-compatible provider: OpenAI, vLLM, llama.cpp server, Ollama's /v1, OpenRouter...

The client's body goes upstream unchanged when the deployment's model name equals the one the
client asked for (the common case: no re-serialisation); otherwise ``model`` is replaced. A stream
whose client did not ask for usage is sent with ``stream_options.include_usage`` anyway, so the
gateway meters the upstream's own count; the respond phase takes that chunk out of the client's
stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from ferrogate.config.model import Upstream
from ferrogate.providers.base import Reply
from ferrogate.providers.http import PooledClient

if TYPE_CHECKING:
    from ferrogate.pipeline.context import RequestContext


class OpenAIProvider:
    """Forwards chat completions to an OpenAI-compatible ``base_url``."""

    __slots__ = ("_chat_url", "_client", "name")

    def __init__(self, upstream: Upstream) -> None:
        self.name = upstream.name
        self._chat_url = f"{upstream.base_url}/chat/completions"
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if upstream.api_key is not None:
            headers["Authorization"] = f"Bearer {upstream.api_key.get_secret_value()}"
        headers.update(upstream.headers)
        self._client = PooledClient(upstream, headers)

    async def chat(self, ctx: RequestContext) -> Reply:
        """Forward phase: POST the chat request to ``{base_url}/chat/completions``."""
        body = ctx.body
        ask_usage = ctx.stream and not ctx.include_usage
        if ctx.upstream_model != ctx.model or ask_usage:
            payload = dict(ctx.payload)
            payload["model"] = ctx.upstream_model
            if ask_usage:  # metering needs the upstream's usage; respond strips it from the client's stream
                payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
            body = orjson.dumps(payload)
        return await self._client.post(self._chat_url, body, ctx.stream, ctx.traceparent, ctx.tracestate)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.close()
