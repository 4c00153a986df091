"""Fake upstreams that fail on cue, for the failover tests: an OpenAI chat one and an Anthropic Messages one.

Each fake has a ``name`` (its upstream's name in the gateway's configuration) and answers by a script the test
sets: :meth:`Flaky.script` takes the actions of the next requests, one popped per request in order, and the
action of every request after them (``default``, :data:`OK` unless given). An action (:class:`Act`):

- :data:`OK`: a whole answer (JSON) or a whole stream (SSE) whose text is ``served by <name>``, with usage
  (7 prompt tokens, 3 completion tokens; OpenAI streams carry it when ``stream_options.include_usage`` is set);
- :func:`status`: that status with an error body in the provider's shape, optionally ``retry-after`` /
  ``retry-after-ms`` headers;
- :data:`CONTEXT`: the provider's "context window exceeded" 400 (OpenAI: code ``context_length_exceeded``;
  Anthropic: ``invalid_request_error``, "prompt is too long: ...");
- :func:`policy`: OpenAI's content-policy 400 (code ``content_policy_violation`` or the one given, e.g.
  ``content_filter``); Anthropic's fake answers an ``invalid_request_error`` about its content filtering;
- :data:`HANG`: no answer for :data:`HANG_S` (past the gateway's read timeout in the tests), then :data:`OK`;
- :data:`RESET`: the connection is dropped (RST) once the request is read, before any answer;
- :data:`DIE_BEFORE`: a stream's opening frames (OpenAI: the role-only delta; Anthropic: message_start,
  content_block_start, ping), then the connection closes (no end of stream);
- :data:`STALL_BEFORE`: the opening frames, then silence for :data:`HANG_S` (the gateway's read timeout cuts it
  first), then the connection closes;
- :data:`ERROR_BEFORE`: the opening frames, then an error event (OpenAI: ``data: {"error": ...}``; Anthropic:
  ``event: error``, overloaded_error) and the end of the stream;
- :data:`DIE_AFTER`: the opening frames and two content deltas (the text ``partial from <name>``), then the
  connection closes.

The stream actions asked of a JSON request: :data:`STALL_BEFORE` is :data:`HANG`, :data:`ERROR_BEFORE` a 500,
the others :data:`RESET`. Every request is recorded in ``requests`` (path, headers with lower-case names, JSON
body, raw bytes, monotonic arrival time ``at``) before its action runs; ``count`` is how many came. A refused
connection is no fake: an upstream whose ``base_url`` is a free port (``tests.support.free_port``).

Example::

    a = FlakyOpenAI("a")
    a.start()
    a.script(status(503, retry_after="1"), RESET)   # the first request 503, the second reset, then OK
    ...
    assert a.count == 3 and a.header(0, "x-ferrogate-request-id") == a.header(1, "x-ferrogate-request-id")
    a.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from aiohttp import web

from tests.fakes.anthropic_upstream import error_body, sse, stream_events
from tests.fakes.server import FakeServer, Handler

#: How long :data:`HANG` and :data:`STALL_BEFORE` keep silent (cut short when the fake stops).
HANG_S = 3.0
#: The usage of an :data:`OK` answer, and the words its text streams in.
PROMPT_TOKENS, COMPLETION_TOKENS = 7, 3


@dataclass(frozen=True)
class Act:
    """What the fake does with one request: ``kind`` (see the module docstring), the ``status`` and extra
    ``headers`` of an error answer, the ``code`` of a content-policy refusal."""

    kind: str
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    code: str = ""


OK = Act("ok")
CONTEXT = Act("context", 400)
HANG = Act("hang")
RESET = Act("reset")
DIE_BEFORE = Act("die-before")
STALL_BEFORE = Act("stall-before")
ERROR_BEFORE = Act("error-before")
DIE_AFTER = Act("die-after")


def status(code: int, *, retry_after: str | None = None, retry_after_ms: str | None = None) -> Act:
    """An error answer with status ``code`` and, when given, ``retry-after`` / ``retry-after-ms``.

    >>> status(429, retry_after="2").headers
    (('retry-after', '2'),)
    """
    headers = [("retry-after", retry_after), ("retry-after-ms", retry_after_ms)]
    return Act("status", code, tuple((k, v) for k, v in headers if v is not None))


def policy(code: str = "content_policy_violation") -> Act:
    """A content-policy refusal (a 400) whose OpenAI error ``code`` is ``code``."""
    return Act("policy", 400, code=code)


def answer(text: str) -> Act:
    """A whole answer (OpenAI fakes) whose text is ``text`` (e.g. JSON, for structured outputs)."""
    return Act("ok", code=text)


def text_of(name: str) -> str:
    """The text of an :data:`OK` answer from the fake named ``name``.

    >>> text_of("b")
    'served by b'
    """
    return f"served by {name}"


def _drop(request: web.Request, *, reset: bool) -> None:
    """Drop the request's connection: an RST at once (``reset``), or a FIN once what was written is flushed (so
    the frames before it arrive, and the stream never ends). Nothing when the client has gone already."""
    transport = request.transport
    if transport is not None:
        transport.abort() if reset else transport.close()


class Flaky(FakeServer):
    """What both fakes share: the script, the record, the hang and the connection drops."""

    #: Its upstream's ``provider`` in the gateway's configuration.
    provider = ""
    #: The headers of a streamed answer.
    stream_headers: ClassVar[dict[str, str]] = {"Content-Type": "text/event-stream"}

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self._script: list[Act] = []
        self._default = OK
        self._stopping = asyncio.Event()  # set in the fake's loop by stop(): a hang ends at once

    @property
    def base_url(self) -> str:
        """The ``base_url`` of its upstream in the gateway's configuration (the server's ``/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        """How many requests it received."""
        return len(self.requests)

    def script(self, *acts: Act, default: Act = OK) -> None:
        """The actions of the next requests, in order, then ``default`` for every one after them."""
        self._script = list(acts)
        self._default = default

    def reset(self) -> None:
        """Forget the script (every request :data:`OK`) and the requests recorded."""
        self.script()
        self.requests.clear()

    def header(self, index: int, name: str) -> str | None:
        """The header ``name`` of the ``index``-th request received (``None`` when it had none)."""
        found: str | None = self.requests[index]["headers"].get(name.lower())
        return found

    def stop(self) -> None:
        if self.port:
            self._loop.call_soon_threadsafe(self._stopping.set)
        super().stop()

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(
            {"path": request.path, "headers": headers, "body": body, "raw": raw, "at": time.monotonic()}
        )
        return body

    async def _hang(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), HANG_S)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        act = self._script.pop(0) if self._script else self._default
        stream = isinstance(body, dict) and bool(body.get("stream"))
        kind = act.kind
        if not stream and kind in ("die-before", "die-after"):
            kind = "reset"
        elif not stream and kind == "stall-before":
            kind = "hang"
        elif not stream and kind == "error-before":
            return self.error(status(500))
        if kind == "reset":
            _drop(request, reset=True)
            return web.Response()
        if kind == "hang":
            await self._hang()
            kind = "ok"
        elif kind in ("status", "context", "policy"):
            return self.error(act)
        model = body.get("model", "") if isinstance(body, dict) else ""
        if not stream:
            answer = self.whole(model)
            if act.code and kind == "ok":  # answer(text): that text instead of "served by <name>"
                answer = self.with_text(answer, act.code)
            return web.Response(body=orjson.dumps(answer), content_type="application/json")
        resp = web.StreamResponse(headers=self.stream_headers)
        await resp.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        for frame in self.frames(model, kind, include_usage):
            await resp.write(frame)
        if kind == "stall-before":
            await self._hang()  # then the connection closes, if the gateway has not cut it yet
        if kind in ("die-before", "stall-before", "die-after"):
            _drop(request, reset=False)
            return resp
        await resp.write_eof()
        return resp

    def error(self, act: Act) -> web.Response:
        """The error answer ``act`` asks for, in the provider's shape."""
        raise NotImplementedError

    def whole(self, model: str) -> dict[str, Any]:
        """The :data:`OK` JSON answer."""
        raise NotImplementedError

    def frames(self, model: str, kind: str, include_usage: bool) -> list[bytes]:
        """The SSE frames of a stream: ``kind`` ``ok`` (whole), or the part written before the stream fails."""
        raise NotImplementedError


_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
                 404: "invalid_request_error", 429: "requests"}  # fmt: skip


class FlakyOpenAI(Flaky):
    """An OpenAI chat upstream (``POST /v1/chat/completions``) that follows its script."""

    provider = "openai"

    def routes(self) -> dict[str, Handler]:
        return {"/v1/chat/completions": self._handle}

    def error(self, act: Act) -> web.Response:
        code: str | None = None
        message = f"{self.name}: fake failure {act.status}"
        if act.kind == "context":
            code, message = (
                "context_length_exceeded",
                (
                    "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000"
                    " tokens. Please reduce the length of the messages."
                ),
            )
        elif act.kind == "policy":
            code, message = act.code, "Your request was rejected as a result of our safety system."
        elif act.status == 429:
            code = "rate_limit_exceeded"
        kind = _OPENAI_TYPES.get(act.status, "server_error" if act.status >= 500 else "invalid_request_error")
        param = "messages" if act.kind == "context" else None
        err = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        return web.Response(
            status=act.status, body=orjson.dumps(err), content_type="application/json", headers=dict(act.headers)
        )

    @staticmethod
    def with_text(answer: dict[str, Any], text: str) -> dict[str, Any]:
        """``answer`` (a chat.completion) with ``text`` as its content."""
        answer["choices"][0]["message"]["content"] = text
        return answer

    def whole(self, model: str) -> dict[str, Any]:
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                 "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}  # fmt: skip
        message = {"role": "assistant", "content": text_of(self.name)}
        return {
            "id": f"chatcmpl-{self.name}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
            "usage": usage,
        }

    def _chunk(self, model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {
            "id": f"chatcmpl-{self.name}",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def frames(self, model: str, kind: str, include_usage: bool) -> list[bytes]:
        frames = [self._chunk(model, {"role": "assistant", "content": ""})]
        if kind in ("die-before", "stall-before"):
            return frames
        if kind == "error-before":
            err = {"message": f"{self.name}: overloaded", "type": "server_error", "param": None, "code": None}
            return [*frames, b"data: " + orjson.dumps({"error": err}) + b"\n\n"]
        if kind == "die-after":
            return frames + [self._chunk(model, {"content": w}) for w in ("partial", f" from {self.name}")]
        frames += [self._chunk(model, {"content": w}) for w in ("served", " by", f" {self.name}")]
        frames.append(self._chunk(model, {}, "stop"))
        if include_usage:
            final = {**orjson.loads(frames[-1][6:]), "choices": [], "usage": self.whole(model)["usage"]}
            frames.append(b"data: " + orjson.dumps(final) + b"\n\n")
        return [*frames, b"data: [DONE]\n\n"]


_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    529: "overloaded_error"}  # fmt: skip


class FlakyAnthropic(Flaky):
    """An Anthropic Messages upstream (``POST /v1/messages``) that follows its script."""

    provider = "anthropic"
    stream_headers: ClassVar[dict[str, str]] = {
        "Content-Type": "text/event-stream; charset=utf-8",
        "request-id": "req_flaky",
    }

    def routes(self) -> dict[str, Handler]:
        return {"/v1/messages": self._handle}

    def error(self, act: Act) -> web.Response:
        kind = _ANTHROPIC_TYPES.get(act.status, "api_error" if act.status >= 500 else "invalid_request_error")
        message = f"{self.name}: fake failure {act.status}"
        if act.kind == "context":
            message = "prompt is too long: 215000 tokens > 200000 maximum"
        elif act.kind == "policy":
            message = "Output blocked by content filtering policy"
        return web.Response(
            status=act.status,
            body=orjson.dumps(error_body(kind, message)),
            content_type="application/json",
            headers={"request-id": f"req_{self.name}", **dict(act.headers)},
        )

    def whole(self, model: str) -> dict[str, Any]:
        usage = {"input_tokens": PROMPT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                 "output_tokens": COMPLETION_TOKENS, "service_tier": "standard"}  # fmt: skip
        return {
            "id": f"msg_{self.name}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text_of(self.name)}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }

    def frames(self, model: str, kind: str, include_usage: bool) -> list[bytes]:
        events = stream_events(self.whole(model))  # message_start, content_block_start, ping, deltas..., stop
        opening = [sse(e) for e in events[:3]]
        if kind in ("die-before", "stall-before"):
            return opening
        if kind == "error-before":
            return [*opening, sse(error_body("overloaded_error", "Overloaded"))]
        if kind == "die-after":
            deltas = [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
                      for t in ("partial", f" from {self.name}")]  # fmt: skip
            return opening + [sse(d) for d in deltas]
        return [sse(e) for e in events]
