"""The one typed request every ingress parses into, whatever its protocol.

The receive phase builds a :class:`Request` from the client's body (parsed and validated once); every later
phase and the provider adapters read it, never the raw payload of one protocol. A provider that speaks the
request's own protocol sends ``body`` on (the client's bytes: nothing of a provider's own fields is lost); one
that speaks another translates through :meth:`Request.chat`, the OpenAI chat form (the hub), built once on
first use.

Example:
    >>> import orjson
    >>> body = b'{"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]}'
    >>> r = Request(ANTHROPIC, body, orjson.loads(body))
    >>> r.model, r.stream, r.include_usage, r.max_output(256), r.chat()["messages"]
    ('m', False, True, 9, [{'role': 'user', 'content': 'hi'}])
"""

from __future__ import annotations

from typing import Any

import orjson

from ferrogate import _core
from ferrogate.protocols import ANTHROPIC, EMBEDDINGS, OPENAI_CHAT, RESPONSES, anthropic, embeddings, responses


class Request:
    """A validated client request: its protocol, its bytes and parsed body, and what the phases read of it.

    ``include_usage`` says whether the client's stream carries usage: OpenAI chat only when
    ``stream_options.include_usage`` asks, Anthropic and Responses streams always.
    """

    __slots__ = ("_chat", "body", "include_usage", "model", "payload", "protocol", "stream")

    def __init__(self, protocol: str, body: bytes, payload: dict[str, Any]) -> None:
        self.protocol = protocol
        self.body = body
        self.payload = payload
        self.model: str = payload["model"]
        self.stream = payload.get("stream") is True
        if protocol == OPENAI_CHAT:
            options = payload.get("stream_options") if self.stream else None
            self.include_usage = bool(options and options.get("include_usage"))
        else:
            self.include_usage = protocol != EMBEDDINGS
        self._chat: dict[str, Any] | None = payload if protocol == OPENAI_CHAT else None

    def replace_body(self, body: bytes) -> None:
        """Send ``body`` instead of the client's (the guard phase's redacted copy: the same JSON document with
        some strings changed). Its payload is parsed again and the cached chat form dropped.

        Example:
            >>> r = Request(OPENAI_CHAT, b'{"model": "m", "messages": []}', {"model": "m", "messages": []})
            >>> r.replace_body(b'{"model": "m", "messages": [{"role": "user", "content": "[REDACTED:x]"}]}')
            >>> r.chat()["messages"][0]["content"]
            '[REDACTED:x]'
        """
        Request.__init__(self, self.protocol, body, orjson.loads(body))  # model, stream, include_usage again

    def chat(self) -> dict[str, Any]:
        """The request in OpenAI chat form (the payload itself for a chat request; translated once otherwise).

        Raises:
            GatewayError: 400 naming the field that has no chat form (a Responses request's
                ``previous_response_id``, a built-in tool...); an embeddings request has none at all.
        """
        chat = self._chat
        if chat is None:
            if self.protocol == ANTHROPIC:
                chat = anthropic.to_chat(self.payload)
            elif self.protocol == RESPONSES:
                chat = responses.to_chat(self.payload)
            else:
                raise ValueError(f"a {self.protocol} request has no chat form")
            self._chat = chat
        return chat

    def max_output(self, default: int) -> int:
        """The most output tokens the request can cost (``default`` when it sets no bound): ``max_tokens`` per
        choice times ``n`` on chat, ``max_tokens`` on Anthropic, ``max_output_tokens`` on Responses, 0 for
        embeddings."""
        payload = self.payload
        protocol = self.protocol
        if protocol == OPENAI_CHAT:
            out = payload.get("max_completion_tokens") or payload.get("max_tokens") or default
            return int(out) * int(payload.get("n") or 1)
        if protocol == ANTHROPIC:
            return int(payload["max_tokens"])
        if protocol == RESPONSES:
            return int(payload.get("max_output_tokens") or default)
        return 0

    def count_prompt(self, encoding: str) -> int:
        """The gateway's count of the request's input tokens in ``encoding`` (the Rust core; OpenAI's chat
        message overhead on chat, each protocol's own text otherwise)."""
        protocol = self.protocol
        if protocol == OPENAI_CHAT:
            return _core.count_chat_prompt(self.body, encoding)
        if protocol == ANTHROPIC:
            return anthropic.count_prompt(self.payload, encoding)
        if protocol == RESPONSES:
            return _core.count_tokens(responses.prompt_text(self.payload), encoding)
        return embeddings.count_input(self.payload, encoding)
