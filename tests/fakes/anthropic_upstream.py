"""A fake Anthropic Messages upstream (real wire format) whose behaviour the model name picks.

``POST /v1/messages`` needs a key, in ``x-api-key`` or as ``Authorization: Bearer`` (what anthropic SDK 2.x sends;
any non-empty value; else 401 ``authentication_error``), an ``anthropic-version`` header (any value; else 400
``invalid_request_error``), and ``model``, ``max_tokens`` and a non-empty ``messages`` in the body (else 400). It
answers JSON, or with ``"stream": true`` SSE (``event: <type>``: message_start, content_block_start, ping (after the
first block's start), content_block_delta..., content_block_stop, message_delta with the stop_reason and the
cumulative usage, message_stop). Tokens are estimated as 4 characters each: input tokens from the request's text,
output tokens from the answer's; a text streams one word per delta. By model:

- anything unlisted (e.g. ``claude-echo``): the text ``model=<model> messages=<n> hello from Anthropic.``,
  stop_reason ``end_turn``, or ``max_tokens`` (the text cut to whole words) when ``max_tokens`` is below its tokens.
- ``claude-tool``: with ``tools``, a short text then a tool_use calling the FIRST tool with
  ``{"city": "Paris", "unit": "celsius"}`` (streamed as input_json_delta fragments cut mid-token), stop_reason
  ``tool_use``; when the last user turn holds a tool_result, the text ``The tool said: <its content>``.
- ``claude-json``: when ``tool_choice`` names a tool, only that tool_use, with input ``{"answer": 42}``.
- ``claude-thinking``: a thinking block (thinking + signature; thinking_delta/signature_delta streamed), then the text.
- ``claude-cache``: usage with ``cache_read_input_tokens`` 100 and ``cache_creation_input_tokens`` 20.
- ``claude-overloaded`` / ``claude-rate-limited`` / ``claude-bad`` / ``claude-500``: 529 ``overloaded_error`` /
  429 ``rate_limit_error`` with ``retry-after: 7`` / 400 ``invalid_request_error`` / 500 ``api_error``.
- ``claude-error-mid-stream``: two text deltas, then ``event: error`` (overloaded_error) and the end of the stream.
- ``claude-die-mid-stream``: two text deltas, then the connection drops.
- ``claude-slow-stream``: the 5 text deltas 0.3 s apart.
- ``claude-leak``: the text ``Your key is <LEAK>, keep it.`` (:data:`tests.fakes.openai_upstream.LEAK`, a made-up
  token), streamed in 5-character deltas (the token cut across them), then with ``tools`` a tool_use calling the
  first tool with ``{"ref": LEAK}`` (stop_reason ``tool_use``).

``POST /v1/messages/count_tokens`` (same headers) answers ``{"input_tokens": n}`` with the same estimate.
Every request is recorded in ``FakeAnthropic.requests`` (path, headers and JSON body).

Example (the SDK's ``base_url`` is the server root)::

    fake = FakeAnthropic()
    fake.start()
    client = anthropic.Anthropic(api_key="sk-ant-fake", base_url=fake.base_url, max_retries=0)
    client.messages.create(model="claude-echo", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    fake.stop()
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.openai_upstream import LEAK
from tests.fakes.server import FakeServer, Handler

TOOL_INPUT: dict[str, Any] = {"city": "Paris", "unit": "celsius"}
JSON_INPUT: dict[str, Any] = {"answer": 42}
THINKING = "The user greets me. I should answer briefly and name the model."
SIGNATURE = "ZmFrZS1zaWduYXR1cmUtZm9yLXRlc3RzLW9ubHk="
ERRORS: dict[str, tuple[int, str, str]] = {
    "claude-overloaded": (529, "overloaded_error", "Overloaded"),
    "claude-rate-limited": (429, "rate_limit_error", "This request would exceed your rate limit"),
    "claude-bad": (400, "invalid_request_error", "messages: roles must alternate between user and assistant"),
    "claude-500": (500, "api_error", "Internal server error"),
}
RETRY_AFTER = "7"
_IDS = {"request-id": "req_fake"}  # the API names each request in this header and in error bodies
_FRAGMENT = 7  # characters per input_json_delta: cuts keys and values in the middle


def tokens(text: str) -> int:
    """The fake's token estimate: one token per 4 characters, at least one.

    >>> tokens("hello world!"), tokens("")
    (3, 1)
    """
    return max(1, math.ceil(len(text) / 4))


def words(text: str) -> list[str]:
    """The text's stream deltas: one word each, with the space before it.

    >>> words("The tool said: 18C")
    ['The', ' tool', ' said:', ' 18C']
    """
    return re.findall(r"\s*\S+", text)


def _content_text(content: Any) -> str:
    """The text in a message's (or a tool_result's) content: a string or a list of blocks."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or []:
        if block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            parts.append(_content_text(block.get("content")))
        elif block.get("type") == "tool_use":
            parts.append(orjson.dumps(block.get("input")).decode())
    return "".join(parts)


def _input_tokens(body: dict[str, Any]) -> int:
    text = _content_text(body.get("system")) + "".join(_content_text(m.get("content")) for m in body["messages"])
    return tokens(text + (orjson.dumps(body["tools"]).decode() if body.get("tools") else ""))


def _tool_result(body: dict[str, Any]) -> str | None:
    """The content of the tool_result in the last user turn, if it holds one."""
    last = body["messages"][-1]
    if last.get("role") != "user" or isinstance(last.get("content"), str):
        return None
    results = [b for b in last.get("content") or [] if b.get("type") == "tool_result"]
    return _content_text(results[0].get("content")) if results else None


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _tool_use(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": "toolu_fake01", "name": name, "input": arguments}


def _echo(model: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The default answer, cut to whole words that fit ``max_tokens``."""
    text = f"model={model} messages={len(body['messages'])} hello from Anthropic."
    if tokens(text) <= body["max_tokens"]:
        return [_text(text)], "end_turn"
    kept = ""
    for word in words(text):
        if tokens(kept + word) > body["max_tokens"]:
            break
        kept += word
    return [_text(kept)], "max_tokens"


def _answer(model: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The content blocks and the stop_reason the model name asks for."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {}
    if model == "claude-tool":
        result = _tool_result(body)
        if result is not None:
            return [_text(f"The tool said: {result}")], "end_turn"
        if tools:
            return [_text(f"Let me call {tools[0]['name']}."), _tool_use(tools[0]["name"], TOOL_INPUT)], "tool_use"
    if model == "claude-leak":
        leak = [_text(f"Your key is {LEAK}, keep it.")]
        if tools:
            return [*leak, _tool_use(tools[0]["name"], {"ref": LEAK})], "tool_use"
        return leak, "end_turn"
    if model == "claude-json" and choice.get("type") == "tool":
        return [_tool_use(choice["name"], JSON_INPUT)], "tool_use"
    blocks, stop = _echo(model, body)
    if model == "claude-thinking":
        blocks.insert(0, {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE})
    return blocks, stop


def _block_text(block: dict[str, Any]) -> str:
    if block["type"] == "tool_use":
        return orjson.dumps(block["input"]).decode()
    return str(block["thinking"] if block["type"] == "thinking" else block["text"])


def message(model: str, body: dict[str, Any], message_id: str) -> dict[str, Any]:
    """The full (non-streamed) Message the fake answers ``body`` with."""
    blocks, stop = _answer(model, body)
    cached = model == "claude-cache"
    usage = {
        "input_tokens": _input_tokens(body),
        "cache_creation_input_tokens": 20 if cached else 0,
        "cache_read_input_tokens": 100 if cached else 0,
        "output_tokens": sum(tokens(_block_text(b)) for b in blocks),
        "service_tier": "standard",
    }
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def _deltas(block: dict[str, Any], cut: int) -> list[dict[str, Any]]:
    if block["type"] == "text":
        text: str = block["text"]
        cuts = [text[i : i + cut] for i in range(0, len(text), cut)] if cut else words(text)
        return [{"type": "text_delta", "text": w} for w in cuts]
    if block["type"] == "thinking":
        pieces = [{"type": "thinking_delta", "thinking": w} for w in words(block["thinking"])]
        return [*pieces, {"type": "signature_delta", "signature": block["signature"]}]
    arguments = orjson.dumps(block["input"]).decode()
    fragments = [arguments[i : i + _FRAGMENT] for i in range(0, len(arguments), _FRAGMENT)]
    return [{"type": "input_json_delta", "partial_json": f} for f in ["", *fragments]]  # the API opens with ""


def _started(block: dict[str, Any]) -> dict[str, Any]:
    """A content block as content_block_start carries it: its content still empty."""
    empty = {"text": "", "thinking": "", "signature": "", "input": {}}
    return {k: empty.get(k, v) for k, v in block.items()}


def stream_events(answer: dict[str, Any], cut: int = 0) -> list[dict[str, Any]]:
    """The SSE events (their ``data``; ``data["type"]`` is the event name) that stream ``answer`` (its texts in
    ``cut``-character deltas, or one word each when ``cut`` is 0)."""
    usage = answer["usage"]
    start = {**answer, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(answer["content"]):
        events.append({"type": "content_block_start", "index": index, "content_block": _started(block)})
        if index == 0:
            events.append({"type": "ping"})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in _deltas(block, cut)]
        events.append({"type": "content_block_stop", "index": index})
    final_usage = {k: v for k, v in usage.items() if k != "service_tier"}
    delta = {"stop_reason": answer["stop_reason"], "stop_sequence": None}
    return [*events, {"type": "message_delta", "delta": delta, "usage": final_usage}, {"type": "message_stop"}]


def sse(data: dict[str, Any]) -> bytes:
    """One SSE event as the Anthropic API frames it.

    >>> sse({"type": "ping"})
    b'event: ping\\ndata: {"type":"ping"}\\n\\n'
    """
    name: str = data["type"]
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_body(kind: str, text: str) -> dict[str, Any]:
    """An Anthropic error body: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    return {"type": "error", "error": {"type": kind, "message": text}, "request_id": "req_fake"}


def _error(status: int, kind: str, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(error_body(kind, text)), content_type="application/json", headers=headers
    )


def _refusal(headers: Mapping[str, str], body: Any, required: tuple[str, ...]) -> web.Response | None:
    """The 401/400 a real API gives a request without a key, a version or a required field, else None."""
    bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not headers.get("x-api-key") and not bearer:
        return _error(401, "authentication_error", "invalid x-api-key")
    if not headers.get("anthropic-version"):
        return _error(400, "invalid_request_error", "anthropic-version: header is required")
    if not isinstance(body, dict):
        return _error(400, "invalid_request_error", "The request body is not valid JSON")
    for field in required:
        if not body.get(field):
            return _error(400, "invalid_request_error", f"{field}: Field required")
    return None


class FakeAnthropic(FakeServer):
    """Runs the fake server on 127.0.0.1 in a background thread with its own loop."""

    @property
    def base_url(self) -> str:
        """What the Anthropic SDK's ``base_url`` takes: the server root (the SDK adds ``/v1/messages``)."""
        return f"http://127.0.0.1:{self.port}"

    def routes(self) -> dict[str, Handler]:
        return {"/v1/messages": self._messages, "/v1/messages/count_tokens": self._count_tokens}

    async def _count_tokens(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        refusal = _refusal(request.headers, body, ("model", "messages"))
        if refusal is not None:
            return refusal
        return web.Response(body=orjson.dumps({"input_tokens": _input_tokens(body)}), content_type="application/json")

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        refusal = _refusal(request.headers, body, ("model", "max_tokens", "messages"))
        if refusal is not None:
            return refusal
        model = body["model"]
        if model in ERRORS:
            headers = {"retry-after": RETRY_AFTER} if model == "claude-rate-limited" else None
            return _error(*ERRORS[model], headers=headers)
        answer = message(model, body, f"msg_fake{len(self.requests):04d}")
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(answer), content_type="application/json", headers=_IDS)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", **_IDS})
        await resp.prepare(request)
        text_deltas = 0
        for event in stream_events(answer, 5 if model == "claude-leak" else 0):
            if model == "claude-slow-stream" and event["type"] == "content_block_delta":
                await asyncio.sleep(0.3)
            await resp.write(sse(event))
            if event["type"] == "content_block_delta" and event["delta"]["type"] == "text_delta":
                text_deltas += 1
            if text_deltas == 2 and model == "claude-error-mid-stream":
                await resp.write(sse(error_body("overloaded_error", "Overloaded")))
                break
            if text_deltas == 2 and model == "claude-die-mid-stream":
                await asyncio.sleep(0.3)  # the client has the first deltas by now
                assert request.transport is not None
                request.transport.abort()
                return resp
        await resp.write_eof()
        return resp
