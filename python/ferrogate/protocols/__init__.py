"""The wire protocols the gateway speaks to clients and to upstreams, and the translations between them.

One name per protocol (the values below). A request is received in its client's protocol and parsed into one
typed :class:`ferrogate.pipeline.request.Request`; a provider sends it in the upstream's protocol, translating
through the OpenAI chat form (the hub) when the two differ; the reply goes back in the client's protocol
(JSON bodies here, streams in the Rust core's ``StreamRelay``). See docs/protocols.md.
"""

from __future__ import annotations

from typing import Final

#: ``POST /v1/chat/completions`` (OpenAI chat completions: the hub form every translation goes through).
OPENAI_CHAT: Final = "openai.chat"
#: ``POST /v1/messages`` (Anthropic Messages).
ANTHROPIC: Final = "anthropic.messages"
#: ``POST /v1/responses`` (OpenAI Responses).
RESPONSES: Final = "openai.responses"
#: ``POST /v1/embeddings`` (OpenAI embeddings).
EMBEDDINGS: Final = "openai.embeddings"
