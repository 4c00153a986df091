"""The request phases of ``/v1/chat/completions``, one function each, in chain order.

receive -> authenticate -> authorize -> route -> forward -> respond, then account, which
always runs (also on errors). Limits, guardrails and budgets slot in between authorize and
route as their issues land; see docs/ARCHITECTURE.md for the chart. A phase answers early by
raising :class:`ferrogate.errors.GatewayError`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any

import orjson
from granian.rsgi import HTTPProtocol, ProtocolClosed, ProtocolError, Scope

from ferrogate import _core
from ferrogate.auth.authenticator import Authenticator
from ferrogate.config.model import RequestBounds
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.limits import Limiter
from ferrogate.pipeline.context import RequestContext, Usage
from ferrogate.pipeline.limit import check_deployment
from ferrogate.pipeline.router import Router
from ferrogate.pipeline.validate import validate_chat
from ferrogate.providers.base import Reply

log = logging.getLogger("ferrogate.request")

_DONE = b"data: [DONE]"
#: The largest token count taken from an upstream (beyond it the upstream's number is not believed).
_MAX_TOKENS = 2**53


async def read_body(scope: Scope, proto: HTTPProtocol, limit: int) -> bytes:
    """Read the request body, refusing (413) any over ``limit`` bytes before reading it whole."""
    declared = scope.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise GatewayError(ErrorKind.INVALID_FIELD, "invalid Content-Length header", param="content-length")
        if int(declared) > limit:
            raise _too_large(limit)
        return await proto()
    buf = bytearray()
    async for chunk in proto:
        buf += chunk
        if len(buf) > limit:
            raise _too_large(limit)
    return bytes(buf)


def _too_large(limit: int) -> GatewayError:
    # the rest of the body is never read: the connection closes after the answer, so its bytes cannot be
    # taken for the next request on a keep-alive connection
    return GatewayError(
        ErrorKind.BODY_TOO_LARGE,
        f"request body exceeds the limit of {limit} bytes",
        headers=[("connection", "close")],
    )


async def receive(ctx: RequestContext, scope: Scope, proto: HTTPProtocol, limit: int, bounds: RequestBounds) -> None:
    """Phase 1: read the body (size limit), parse it (orjson), check its fields against OpenAI's types and
    ranges and the configured ``bounds`` (:func:`~ferrogate.pipeline.validate.validate_chat`).

    Sets ``ctx.body``, ``ctx.payload``, ``ctx.model``, ``ctx.stream`` and ``ctx.include_usage``.
    """
    body = await read_body(scope, proto, limit)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(ErrorKind.INVALID_JSON, f"the request body is not valid JSON: {exc}") from None
    validate_chat(payload, bounds)
    ctx.body = body
    ctx.payload = payload
    ctx.model = payload["model"]
    if payload.get("stream"):
        ctx.stream = True
        options = payload.get("stream_options")
        ctx.include_usage = bool(options and options.get("include_usage"))


async def authenticate(ctx: RequestContext, scope: Scope, auth: Authenticator) -> None:
    """Phase 2: resolve the credential to ``ctx.identity`` (401 ``invalid_api_key`` otherwise)."""
    ctx.identity = await auth.identify(scope)


def authorize(ctx: RequestContext) -> None:
    """Phase 3: the key's and its team's model globs must both admit ``ctx.model`` (403 otherwise)."""
    if not ctx.identity.allows(ctx.model):
        raise GatewayError(
            ErrorKind.MODEL_NOT_ALLOWED, f"this key is not allowed to use model '{ctx.model}'", param="model"
        )


def route(
    ctx: RequestContext,
    router: Router,
    limiter: Limiter,
    headers: list[tuple[str, str]],
    default_max_tokens: int,
) -> Coroutine[Any, Any, None] | None:
    """Phase 4: pick the deployment that serves ``ctx.model`` (404 if no group has that name).

    A deployment with ``rpm``/``tpm`` limits then takes the request's cost from its buckets (429
    ``deployment_rpm_exceeded``/``deployment_tpm_exceeded`` otherwise; see
    :func:`ferrogate.pipeline.limit.check_deployment`). Returns ``None`` when done, else a coroutine
    the chain awaits (deployment limits kept in Redis): without deployment limits the phase stays
    synchronous.
    """
    router.pick(ctx)
    if not router.limited:
        return None
    limits = router.limited.get(ctx.group)
    if limits is None:
        return None
    return check_deployment(ctx, limiter, limits, headers, default_max_tokens)


async def forward(ctx: RequestContext) -> Reply:
    """Phase 5: the provider adapter sends the request upstream (502/504 on faults)."""
    start = perf_counter()
    try:
        reply: Reply = await ctx.provider.chat(ctx)
    finally:
        ctx.upstream_s = perf_counter() - start  # until the answer's head (a stream adds its relay time)
    return reply


async def respond(
    ctx: RequestContext,
    proto: HTTPProtocol,
    reply: Reply,
    headers: list[tuple[str, str]],
    books: Callable[[RequestContext], None],
) -> None:
    """Phase 6: write the upstream's answer to the client.

    A whole body (JSON, or an upstream error passed through with its status) is sent as is.
    A stream is relayed frame by frame as it arrives while the Rust ``ChatStreamMeter`` picks
    out the usage. The upstream is always asked for usage (see the providers); when the client
    did not ask, that usage chunk is taken out of its stream. If the client asked and the
    upstream sent none, a usage chunk counted by the core is added before ``[DONE]``. A stream
    that breaks upstream ends with an
    OpenAI error event; a client that goes away stops the upstream read.

    ``books`` records the request (usage and audit, journaled) just before the last byte goes out: the whole
    body, the frame that carries ``[DONE]``, the error event, or the end of a stream that stopped without one.
    """
    ctx.status = reply.status
    read = reply.read
    if read is None:
        body = reply.body or b""
        if reply.status == 200:
            ctx.usage = _json_usage(body)
        books(ctx)
        proto.response_bytes(reply.status, [("content-type", reply.content_type), *headers], body)
        return
    fault = reply.fault
    relay_start = perf_counter()
    strip = not ctx.include_usage
    meter = _core.ChatStreamMeter(_core.encoding_for_model(ctx.upstream_model))
    transport = proto.response_stream(
        reply.status, [("content-type", reply.content_type), ("cache-control", "no-cache"), *headers]
    )
    try:
        try:
            while True:
                try:
                    chunk = await read()
                except Exception as exc:
                    if fault is None:
                        raise
                    raise fault(exc) from None
                if chunk is None:
                    break
                data = chunk if type(chunk) is bytes else bytes(chunk)
                done = meter.feed(data)
                if strip and meter.usage is not None:  # the usage chunk the client did not ask for
                    data = _without_usage(data)
                    strip = False
                elif done and ctx.include_usage and ctx.usage is None and meter.usage is None:
                    data = _with_usage(ctx, meter, data)
                if done:  # the frame with [DONE]: the request is recorded before it goes out
                    _book_stream(ctx, meter, books)
                if data:
                    if ctx.ttft_s < 0.0:
                        ctx.ttft_s = perf_counter() - ctx.started
                    await transport.send_bytes(data)
        except GatewayError as err:
            ctx.fail(err)
            _book_stream(ctx, meter, books)
            await transport.send_bytes(b"data: " + err.to_json() + b"\n\n")
        except _core.SseError as err:
            ctx.fail(err)
            _book_stream(ctx, meter, books)
            bad = GatewayError(ErrorKind.UPSTREAM_PROTOCOL, f"upstream sent a malformed stream: {err}")
            await transport.send_bytes(b"data: " + bad.to_json() + b"\n\n")
    except (ProtocolClosed, ProtocolError) as exc:
        ctx.fail(exc)  # the client went away; stop reading upstream
    finally:
        _book_stream(ctx, meter, books)  # a stream that stopped without [DONE]: recorded before it ends
        # Granian ends the response when the transport is dropped: drop it now, not when a
        # traceback that still references this frame is collected.
        del transport
        if reply.release is not None:
            await reply.release()
        ctx.upstream_s += perf_counter() - relay_start


def _book_stream(ctx: RequestContext, meter: Any, books: Callable[[RequestContext], None]) -> None:
    """Take the stream's usage and model from the meter and record the request (once)."""
    if not ctx.booked:
        if ctx.usage is None:  # else counted already, for the usage chunk the gateway added
            ctx.usage = _stream_usage(ctx, meter)
        ctx.response_model = meter.model
        books(ctx)


def _stream_usage(ctx: RequestContext, meter: Any) -> Usage:
    found = meter.usage
    if found is not None:
        return Usage(*(_tokens(n) for n in found))
    encoding = _core.encoding_for_model(ctx.upstream_model)
    try:
        prompt = _core.count_chat_prompt(ctx.body, encoding)
    except _core.InvalidBodyError:  # the upstream took a body the core cannot read (a key given twice)
        prompt = len(ctx.body) // 4  # an estimate: the answer has gone out already
    return Usage(prompt, meter.count_completion_tokens(), counted=True)


_USAGE_EVENT = re.compile(rb'"choices":\s*\[\]')
_USAGE_OBJECT = re.compile(rb'"usage":\s*\{')


def _without_usage(chunk: bytes) -> bytes:
    """The chunk without its usage-only event(s) (``"choices": []`` with a usage object).

    Only events complete in this chunk are removed; a usage event split across chunks (rare)
    reaches the client, which OpenAI's SDKs accept.
    """
    events = chunk.split(b"\n\n")
    kept = [e for e in events if not (_USAGE_OBJECT.search(e) and _USAGE_EVENT.search(e))]
    return chunk if len(kept) == len(events) else b"\n\n".join(kept)


def _with_usage(ctx: RequestContext, meter: Any, chunk: bytes) -> bytes:
    """Insert a counted usage chunk before ``data: [DONE]`` (the upstream sent no usage)."""
    usage = _stream_usage(ctx, meter)
    ctx.usage = usage
    frame = (
        b"data: "
        + orjson.dumps(
            {
                "id": f"chatcmpl-{ctx.request_id}",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": meter.model or ctx.upstream_model,
                "choices": [],
                "usage": usage.as_openai(),
            }
        )
        + b"\n\n"
    )
    at = chunk.rfind(_DONE)
    if at < 0:  # [DONE] began in an earlier chunk: the usage can only follow it
        return chunk + frame
    return chunk[:at] + frame + chunk[at:]


def _json_usage(body: bytes) -> Usage | None:
    """The usage object of a whole chat.completion answer, if it has one (a count that is not a plausible
    token count, of the wrong type, negative or beyond 2**53, reads as 0: an upstream's bad number must not
    break the record or the answer).

    Example:
        >>> u = _json_usage(b'{"usage": {"prompt_tokens": 3, "completion_tokens": "x", "prompt_tokens_details": []}}')
        >>> u.prompt_tokens, u.completion_tokens, u.cached_tokens
        (3, 0, 0)
    """
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    usage = answer.get("usage") if type(answer) is dict else None
    if type(usage) is not dict:
        return None
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if type(prompt_details) is dict else 0
    reasoning = completion_details.get("reasoning_tokens") if type(completion_details) is dict else 0
    return Usage(
        _tokens(usage.get("prompt_tokens")),
        _tokens(usage.get("completion_tokens")),
        _tokens(cached),
        _tokens(reasoning),
    )


def _tokens(value: Any) -> int:
    """``value`` when it is a token count the store can hold, else 0."""
    return value if type(value) is int and 0 <= value <= _MAX_TOKENS else 0
