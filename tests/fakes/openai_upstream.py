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
Every request is recorded in ``FakeUpstream.requests`` (headers and JSON body).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import orjson
from aiohttp import web


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


class FakeUpstream:
    """Runs the fake server on 127.0.0.1 in a background thread with its own loop."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.gate = threading.Event()
        self.gate_opened_in_time: bool | None = None
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(sock), self._loop).result(10)

    async def _start(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json(loads=orjson.loads)
        self.requests.append({"headers": dict(request.headers), "body": body})
        model = body.get("model", "")
        if model.startswith("fail-"):
            status = int(model.split("-")[1])
            err = {"error": {"message": f"fake failure {status}", "type": "fake_error", "param": None, "code": "fake"}}
            return web.json_response(err, status=status, dumps=lambda o: orjson.dumps(o).decode())
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
                        "message": {"role": "assistant", "content": f"model={model}"},
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
        await resp.write(_chunk(model, {}, "stop"))
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
