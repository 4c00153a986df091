"""A fake OpenAI-compatible upstream (real wire format) whose behaviour the model name picks.

``POST /v1/chat/completions`` with model:
- ``echo`` (or anything unlisted): a chat.completion whose content names the model it got;
  streams carry a usage chunk only when ``stream_options.include_usage`` is set, like OpenAI.
- ``no-usage``: never sends usage, streamed or not (as some OpenAI-compatible servers do).
- ``slow``: waits 3 s before answering (for timeouts).
- ``fail-400`` / ``fail-429`` / ``fail-500``: that status with an OpenAI error body.
- ``die-mid-stream``: streams two chunks, then drops the connection.
- ``slow-stream``: 5 chunks, 0.3 s apart.
- ``gated-stream``: one chunk, then waits (up to 10 s) for ``FakeUpstream.gate`` to be set
  before the rest; ``gate_opened_in_time`` records whether it was (proves frame-by-frame relay).
- ``leak``: the content ``model=leak`` followed by :data:`LEAK`, a made-up token (for answer guardrails);
  streamed, the words then :data:`LEAK` cut across three chunks, and (with ``tools``) a call of the first tool with
  the arguments ``{"ref": LEAK}`` in 5-character fragments (finish ``tool_calls``).

``POST /v1/responses`` (the Responses API), with the same ``fail-*`` and ``slow`` models:
- anything unlisted: a Response with one output message ``model=<model> Hello from the fake upstream.``; streamed, the
  events response.created, response.in_progress, response.output_item.added, response.content_part.added,
  response.output_text.delta (one per word), response.output_text.done, response.content_part.done,
  response.output_item.done and response.completed (which carries the usage), numbered by ``sequence_number``.
- ``tool`` with ``tools``: a function_call item calling the first tool with ``{"city": "Paris", "unit": "celsius"}``
  (streamed as response.function_call_arguments.delta fragments, then .done).
- ``leak``: the message's text ends with `` <LEAK> done.``, the token cut across three deltas.
Usage: input tokens estimated from the input's text (4 characters each), output tokens one per word (or fragment).

``POST /v1/embeddings`` (the same ``fail-*`` models): a deterministic unit vector per input (a hash of it;
``dimensions`` long, 8 by default), as floats or, with ``encoding_format: base64``, as little-endian float32 in
base64 (what the openai SDK asks for by default); ``usage.prompt_tokens`` is the inputs' token estimate.

Every request is recorded in ``FakeUpstream.requests`` (path, headers and JSON body).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import struct
import threading
import time
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.server import FakeServer, Handler


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


WORDS = ["Hello", " from", " the", " fake", " upstream", "."]
#: What model ``leak`` answers after its name: a token of a made-up format (``acme_`` and 16 letters or digits).
LEAK = "acme_" + "leak" * 4


def _failure(model: str) -> web.Response:
    """The answer of a ``fail-<status>`` model: that status with an OpenAI error body."""
    status = int(model.split("-")[1])
    err = {"error": {"message": f"fake failure {status}", "type": "fake_error", "param": None, "code": "fake"}}
    return web.json_response(err, status=status, dumps=lambda o: orjson.dumps(o).decode())


TOOL_ARGUMENTS = '{"city": "Paris", "unit": "celsius"}'
_FRAGMENT = 7  # characters per function_call_arguments.delta: cuts keys and values in the middle


def _tokens(text: str) -> int:
    """The fake's token estimate: one token per 4 characters, at least one.

    >>> _tokens("hello world!")
    3
    """
    return max(1, math.ceil(len(text) / 4))


def _input_text(body: dict[str, Any]) -> str:
    """The text of a Responses request: its instructions and input (a string or a list of items)."""
    given = body.get("input") or []
    parts = [body.get("instructions") or ""]
    for item in [{"content": given}] if isinstance(given, str) else given:
        content = item.get("content", item.get("output")) or ""  # a message, or a function_call_output
        parts += [content] if isinstance(content, str) else [p.get("text", "") for p in content]
    return "".join(parts)


def _output_item(model: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The Response's one output item, and the deltas that stream it."""
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    if model == "tool" and tools:
        deltas = [TOOL_ARGUMENTS[i : i + _FRAGMENT] for i in range(0, len(TOOL_ARGUMENTS), _FRAGMENT)]
        call = {"id": "fc_fake", "type": "function_call", "call_id": "call_fake", "name": tools[0]["name"]}
        return {**call, "arguments": TOOL_ARGUMENTS, "status": "completed"}, deltas
    deltas = [f"model={model} ", *WORDS]
    if model == "leak":
        deltas += [" ", LEAK[:3], LEAK[3:11], LEAK[11:], " done."]
    text = {"type": "output_text", "text": "".join(deltas), "annotations": [], "logprobs": []}
    message = {"id": "msg_fake", "type": "message", "role": "assistant", "status": "completed", "content": [text]}
    return message, deltas


def response(body: dict[str, Any], output: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
    """The completed Response object answering ``body``."""
    created = int(time.time())
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": created,
        "completed_at": created,
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
    }


def response_events(final: dict[str, Any], deltas: list[str]) -> list[dict[str, Any]]:
    """The Responses stream of ``final`` (its one output item streamed in ``deltas``), without sequence numbers."""
    item = final["output"][0]
    ref = {"item_id": item["id"], "output_index": 0}
    opening = final | {"status": "in_progress", "completed_at": None, "output": [], "usage": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": opening},
        {"type": "response.in_progress", "response": opening},
    ]
    if item["type"] == "function_call":
        started = item | {"status": "in_progress", "arguments": ""}
        events.append({"type": "response.output_item.added", "output_index": 0, "item": started})
        events += [{"type": "response.function_call_arguments.delta", **ref, "delta": d} for d in deltas]
        events.append({"type": "response.function_call_arguments.done", **ref, "arguments": item["arguments"]})
    else:
        part = item["content"][0]
        started = item | {"status": "in_progress", "content": []}
        events += [
            {"type": "response.output_item.added", "output_index": 0, "item": started},
            {"type": "response.content_part.added", **ref, "content_index": 0, "part": part | {"text": ""}},
        ]
        text_ref = {**ref, "content_index": 0, "logprobs": []}
        events += [{"type": "response.output_text.delta", **text_ref, "delta": d} for d in deltas]
        events += [
            {"type": "response.output_text.done", **text_ref, "text": part["text"]},
            {"type": "response.content_part.done", **ref, "content_index": 0, "part": part},
        ]
    events.append({"type": "response.output_item.done", "output_index": 0, "item": item})
    return [*events, {"type": "response.completed", "response": final}]


def embedding(item: str | list[int], dimensions: int) -> list[float]:
    """A deterministic unit vector for one input (text or tokens), each value exact as a float32.

    >>> embedding("hi", 4) == embedding("hi", 4) != embedding("ho", 4)
    True
    """
    digest = hashlib.shake_256(orjson.dumps(item)).digest(2 * dimensions)
    raw = [int.from_bytes(digest[2 * i : 2 * i + 2], "little") / 32767.5 - 1 for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in raw))))


def _embedding_inputs(body: dict[str, Any]) -> list[str | list[int]]:
    """The inputs of an embeddings request: a string, a list of strings, a token list or a list of token lists."""
    given = body.get("input")
    if isinstance(given, str) or (given and isinstance(given[0], int)):
        return [given]
    return list(given or [])


class FakeUpstream(FakeServer):
    """Runs the fake server on 127.0.0.1 in a background thread with its own loop."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate_opened_in_time: bool | None = None

    @property
    def base_url(self) -> str:
        """What the openai SDK's ``base_url`` takes: the server's ``/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def routes(self) -> dict[str, Handler]:
        return {
            "/v1/chat/completions": self._chat,
            "/v1/responses": self._responses,
            "/v1/embeddings": self._embeddings,
        }

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        model = body.get("model", "")
        if model.startswith("fail-"):
            return _failure(model)
        if model == "slow":
            await asyncio.sleep(3)
        usage = {"prompt_tokens": 11, "completion_tokens": len(WORDS), "total_tokens": 11 + len(WORDS)}
        if not body.get("stream"):
            answer: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": f"model={model}" + (f" {LEAK}" if model == "leak" else ""),
                        },
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
            }
            if model != "no-usage":
                answer["usage"] = usage
            return web.Response(body=orjson.dumps(answer), content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_chunk(model, {"role": "assistant", "content": ""}))
        words = WORDS if model != "slow-stream" else WORDS[:5]
        if model == "leak":
            words = [*WORDS, " ", LEAK[:3], LEAK[3:11], LEAK[11:], " done."]
        for i, word in enumerate(words):
            if model == "gated-stream" and i == 1:
                opened = await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 10)
                self.gate_opened_in_time = opened
            if model == "slow-stream":
                await asyncio.sleep(0.3)
            await resp.write(_chunk(model, {"content": word}))
            if model == "die-mid-stream" and i == 1:
                await asyncio.sleep(0.3)  # the client has the first chunks by now
                assert request.transport is not None
                request.transport.abort()
                return resp
        tools = body.get("tools") or []
        if model == "leak" and tools:
            name = tools[0]["function"]["name"]
            call = {"index": 0, "id": "call_leak", "type": "function", "function": {"name": name, "arguments": ""}}
            await resp.write(_chunk(model, {"tool_calls": [call]}))
            arguments = orjson.dumps({"ref": LEAK}).decode()
            for at in range(0, len(arguments), 5):
                fragment = {"index": 0, "function": {"arguments": arguments[at : at + 5]}}
                await resp.write(_chunk(model, {"tool_calls": [fragment]}))
        await resp.write(_chunk(model, {}, "tool_calls" if model == "leak" and tools else "stop"))
        include = (body.get("stream_options") or {}).get("include_usage")
        if include and model != "no-usage":
            final = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            await resp.write(b"data: " + orjson.dumps(final) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        model = body.get("model", "")
        if model.startswith("fail-"):
            return _failure(model)
        if model == "slow":
            await asyncio.sleep(3)
        item, deltas = _output_item(model, body)
        prompt = _tokens(_input_text(body))
        usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": len(deltas),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + len(deltas),
        }
        final = response(body, [item], usage)
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(final), content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for number, event in enumerate(response_events(final, deltas)):
            data = orjson.dumps(event | {"sequence_number": number})
            await resp.write(b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n")
        await resp.write_eof()
        return resp

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        model = body.get("model", "")
        if model.startswith("fail-"):
            return _failure(model)
        inputs = _embedding_inputs(body)
        dimensions = body.get("dimensions") or 8
        data: list[dict[str, Any]] = []
        for index, item in enumerate(inputs):
            vector: list[float] | str = embedding(item, dimensions)
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        prompt = sum(_tokens(i) if isinstance(i, str) else len(i) for i in inputs)
        answer = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")
