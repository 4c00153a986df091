"""The request phases, one function each, in chain order, for every ingress.

receive -> authenticate -> authorize -> limit -> guard -> route -> budget -> forward -> respond, then account,
which always runs (also on errors); see docs/ARCHITECTURE.md for the chart. ``limit`` (:mod:`.limit`), ``guard``
(:mod:`.guard`), ``budget`` (:mod:`.budget`) and ``account`` (:mod:`.account`) have modules of their own.
Every phase has the signature ``phase(session, ctx) -> Awaitable[None] | None``
(:mod:`ferrogate.pipeline.session`); one that finishes synchronously returns ``None``. A phase answers early by
raising :class:`ferrogate.errors.GatewayError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

import orjson
from granian.rsgi import HTTPProtocol, ProtocolClosed, ProtocolError, Scope

from ferrogate import _core
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.guardrails.policy import ACTION_NAMES
from ferrogate.observability.families import GUARDRAIL_FINDINGS
from ferrogate.pipeline.context import RequestContext, Usage
from ferrogate.pipeline.guard import GUARD_HEADER, mask_answer
from ferrogate.pipeline.limit import check_deployment
from ferrogate.pipeline.session import Session
from ferrogate.protocols import ANTHROPIC, EMBEDDINGS, OPENAI_CHAT, RESPONSES, anthropic, embeddings, responses
from ferrogate.protocols.checks import tokens as _tokens
from ferrogate.protocols.errors import anthropic_type, render, upstream_error
from ferrogate.protocols.request import Request
from ferrogate.providers.base import Call, Reply

if TYPE_CHECKING:
    from ferrogate.observability.metrics import Metrics

log = logging.getLogger("ferrogate.request")


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


async def receive(s: Session, ctx: RequestContext) -> None:
    """Phase 1: read the body (size limit), parse it (orjson), check it against its protocol's documented types
    and ranges and the configured bounds (the ingress's validator), and build the typed request.

    Sets ``ctx.request`` and, from it, ``ctx.model`` and ``ctx.stream``.
    """
    chain = s.chain
    deps = chain.deps
    body = await read_body(s.scope, s.proto, deps.max_body)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(ErrorKind.INVALID_JSON, f"the request body is not valid JSON: {exc}") from None
    ingress = chain.ingress
    ingress.validate(payload, deps.bounds)
    request = ctx.request = Request(ingress.protocol, body, payload)
    ctx.model = request.model
    ctx.stream = request.stream


async def authenticate(s: Session, ctx: RequestContext) -> None:
    """Phase 2: resolve the credential to ``ctx.identity`` (401 ``invalid_api_key`` otherwise)."""
    ctx.identity = await s.chain.deps.auth.identify(s.scope)


def authorize(s: Session, ctx: RequestContext) -> None:
    """Phase 3: the key's and its team's model globs must both admit ``ctx.model`` (403 otherwise)."""
    if not ctx.identity.allows(ctx.model):
        raise GatewayError(
            ErrorKind.MODEL_NOT_ALLOWED, f"this key is not allowed to use model '{ctx.model}'", param="model"
        )


def route(s: Session, ctx: RequestContext) -> Awaitable[None] | None:
    """Phase 6: pick the deployment that serves ``ctx.model`` (404 if no group has that name), the first cleared
    for the request's classification (403 ``classification_not_cleared`` if none is).

    A deployment with ``rpm``/``tpm`` limits then takes the request's cost from its buckets (429
    ``deployment_rpm_exceeded``/``deployment_tpm_exceeded`` otherwise; see
    :func:`ferrogate.pipeline.limit.check_deployment`). Returns ``None`` when done, else the awaitable
    (deployment limits kept in Redis): without deployment limits the phase stays synchronous.
    """
    deps = s.chain.deps
    limits = deps.router.pick(ctx)
    if limits is None:
        return None
    return check_deployment(ctx, deps.limiter, limits, s.headers, deps.default_max_tokens)


async def forward(s: Session, ctx: RequestContext) -> None:
    """Phase 8: the provider adapter sends the request upstream (502/504 on faults); sets ``ctx.reply``.

    The tracer, when on, is called around it as hooks (a CLIENT span whose ``traceparent`` goes upstream).
    """
    call = Call(ctx.upstream_model, ctx.request_id, ctx.traceparent, ctx.tracestate)
    tracer = s.chain.tracer
    if tracer is not None:
        tracer.upstream_start(ctx, call)
    start = perf_counter()
    try:
        reply: Reply = await ctx.provider.send(ctx.request, call)
    except BaseException as exc:
        if tracer is not None:
            tracer.upstream_failed(ctx, exc)
        raise
    finally:
        ctx.upstream_s = perf_counter() - start  # until the answer's head (a stream adds its relay time)
    if tracer is not None:
        tracer.upstream_answered(ctx, reply)
    ctx.reply = reply


def respond(s: Session, ctx: RequestContext) -> Awaitable[None] | None:
    """Phase 9: write the upstream's answer to the client, in the client's protocol.

    A whole body is sent at once (:func:`_respond_whole`, synchronous); a stream goes through the Rust
    ``StreamRelay`` (:func:`_relay`). ``books`` records the request (usage and audit, journaled) just before
    the last byte goes out: the whole body, the frame that ends the stream, the error event, or the end of a
    stream that stopped without one.
    """
    reply: Reply = ctx.reply
    ctx.status = reply.status
    if reply.read is None:
        _respond_whole(s, ctx, reply)
        return None
    return _relay(s, ctx, reply)


def _respond_whole(s: Session, ctx: RequestContext, reply: Reply) -> None:
    """A whole answer: its usage is read in the upstream's protocol, then the body is translated into the
    client's (an upstream error of the client's own protocol family passes through unchanged)."""
    body = reply.body or b""
    request: Request = ctx.request
    books = s.chain.books
    if reply.status >= 400:
        if _family(reply.protocol) != _family(request.protocol):
            err = upstream_error(reply.status, body, reply.protocol, reply.headers)
            ctx.status, body = render(err, request.protocol)
            headers = [*s.headers, *err.headers]
        else:
            headers = [*s.headers, *reply.headers]
        books(ctx)
        s.proto.response_bytes(ctx.status, [("content-type", "application/json"), *headers], body)
        return
    content_type = reply.content_type
    headers = s.headers
    if reply.status == 200:
        ctx.usage = whole_usage(reply.protocol, body)
        if reply.protocol != request.protocol:
            body = translate_whole(reply, request, body, ctx.request_id, ctx.upstream_model)
            content_type = "application/json"
        if ctx.answer_guard is not None:  # guardrails.responses: the answer is masked too
            body, masked = mask_answer(ctx, body, s.chain.deps.metrics)
            if masked:
                headers = [(k, f"{v}; answer-redacted={masked}" if k == GUARD_HEADER else v) for k, v in headers]
    books(ctx)
    s.proto.response_bytes(reply.status, [("content-type", content_type), *headers], body)


async def _relay(s: Session, ctx: RequestContext, reply: Reply) -> None:
    """A stream, relayed chunk by chunk as it arrives by one ``StreamRelay`` (parse, meter, translate, strip or
    add the usage chunk, and mask the answer when answers are scanned: one Rust call per chunk). A stream that
    breaks upstream ends with an error event in the client's protocol; a client that goes away stops the
    upstream read."""
    request: Request = ctx.request
    books = s.chain.books
    guard = ctx.answer_guard  # guardrails.responses: the relay masks the stream as it goes (and translates)
    metrics = s.chain.deps.metrics
    read = reply.read
    assert read is not None
    fault = reply.fault
    relay_start = perf_counter()
    encoding = _core.encoding_for_model(ctx.upstream_model)
    translating = reply.protocol != request.protocol or guard is not None
    prompt = ctx.prompt_tokens
    if prompt < 0 and (translating or request.include_usage):  # the relay may need the gateway's count
        prompt = ctx.prompt_tokens = _prompt_count(request, encoding)
    relay = _core.StreamRelay(
        reply.protocol,
        request.protocol,
        encoding=encoding,
        include_usage=request.include_usage,
        request_id=ctx.request_id,
        model=ctx.upstream_model,
        created=int(time.time()),
        prompt_tokens=prompt,
        json_tool=anthropic.JSON_TOOL if reply.json_mode else None,
        guard=guard,
    )
    content_type = "text/event-stream; charset=utf-8" if translating else reply.content_type
    transport = s.proto.response_stream(
        reply.status, [("content-type", content_type), ("cache-control", "no-cache"), *s.headers]
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
                data = relay.finish() if chunk is None else relay.feed(chunk if type(chunk) is bytes else bytes(chunk))
                if relay.done:  # the frame that ends the stream: the request is recorded before it goes out
                    _book_stream(ctx, relay, books, metrics)
                if data:
                    if ctx.ttft_s < 0.0:
                        ctx.ttft_s = perf_counter() - ctx.started
                    await transport.send_bytes(data)
                if chunk is None:
                    break
        except GatewayError as err:
            ctx.fail(err)
            frame = _error_event(relay, err, request.protocol)  # first: a guarded relay sends its held text
            _book_stream(ctx, relay, books, metrics)
            await transport.send_bytes(frame)
        except _core.SseError as exc:
            ctx.fail(exc)
            bad = GatewayError(ErrorKind.UPSTREAM_PROTOCOL, f"upstream sent a malformed stream: {exc}")
            frame = _error_event(relay, bad, request.protocol)
            _book_stream(ctx, relay, books, metrics)
            await transport.send_bytes(frame)
    except (ProtocolClosed, ProtocolError) as exc:
        ctx.fail(exc)  # the client went away; stop reading upstream
    finally:
        _book_stream(ctx, relay, books, metrics)  # a stream that stopped without its end: recorded before it ends
        # Granian ends the response when the transport is dropped: drop it now, not when a
        # traceback that still references this frame is collected.
        del transport
        if reply.release is not None:
            await reply.release()
        ctx.upstream_s += perf_counter() - relay_start


async def count_tokens(s: Session, ctx: RequestContext) -> None:
    """The last phase of ``POST /v1/messages/count_tokens``: an Anthropic deployment counts itself (its answer,
    or its error in Anthropic's shape, passes through); any other is counted by the gateway
    (:meth:`~ferrogate.protocols.request.Request.count_prompt`, the same count the limits reserve)."""
    request: Request = ctx.request
    provider = ctx.provider
    counter = getattr(provider, "count_tokens", None)
    if counter is not None:
        reply: Reply = await counter(request, Call(ctx.upstream_model, ctx.request_id))
        body = reply.body or b""
        headers = [*s.headers, *reply.headers]
    else:
        count = _prompt_count(request, _core.encoding_for_model(ctx.upstream_model))
        reply = Reply(200, "application/json")
        body = orjson.dumps({"input_tokens": count})
        headers = s.headers
    ctx.status = reply.status
    s.chain.books(ctx)
    s.proto.response_bytes(reply.status, [("content-type", "application/json"), *headers], body)


def _error_event(relay: Any, err: GatewayError, protocol: str) -> bytes:
    """``err`` as the client protocol's error event (the relay numbers and shapes it)."""
    kind = anthropic_type(err) if protocol == ANTHROPIC else err.to_body()["error"]["type"]
    frame: bytes = relay.error_event(err.message, kind, err.wire_code)
    return frame


def _book_stream(
    ctx: RequestContext, relay: Any, books: Callable[[RequestContext], None], metrics: Metrics | None
) -> None:
    """Take the stream's usage, model and guardrail findings from the relay and record the request (once)."""
    if not ctx.booked:
        if ctx.answer_guard is not None:
            _stream_findings(ctx, relay.guard_findings(), metrics)
        found = relay.usage
        if found is not None:
            prompt, completion, cached, reasoning, _ = found
            ctx.usage = Usage(
                _tokens(prompt), _tokens(completion), _tokens(cached), _tokens(reasoning), counted=relay.usage_counted
            )
        else:  # the stream ended before its usage: the gateway counts
            prompt = ctx.prompt_tokens
            if prompt < 0:
                prompt = _prompt_count(ctx.request, _core.encoding_for_model(ctx.upstream_model))
            ctx.usage = Usage(prompt, relay.count_completion_tokens(), counted=True)
        ctx.response_model = relay.model
        books(ctx)


def _stream_findings(ctx: RequestContext, findings: list[tuple[str, str, int, int]], metrics: Metrics | None) -> None:
    """A guarded stream's findings, counted by the relay per rule ``(rule, category, action, count)``: each is one
    ``ferrogate_guardrail_findings_total`` and one entry of the request's audit findings, at path
    ``answer:stream`` (as :func:`~ferrogate.pipeline.guard.mask_answer` records a whole answer's)."""
    if findings:
        found = list(ctx.guard_findings)
        for rule, category, action, count in findings:
            name = ACTION_NAMES[action]
            found += [(rule, category, name, "answer:stream")] * count
            if metrics is not None:
                metrics.add(GUARDRAIL_FINDINGS, (rule, category, name), count)
        ctx.guard_findings = tuple(found)


def _prompt_count(request: Request, encoding: str) -> int:
    try:
        return request.count_prompt(encoding)
    except _core.InvalidBodyError:  # the upstream took a body the core cannot read (a key given twice)
        return len(request.body) // 4  # an estimate: the answer is going out already


def _family(protocol: str) -> str:
    """``"openai"`` or ``"anthropic"``: whose error shape the protocol uses."""
    return "anthropic" if protocol == ANTHROPIC else "openai"


def translate_whole(reply: Reply, request: Request, body: bytes, request_id: str, model: str) -> bytes:
    """A whole 200 answer in ``reply.protocol`` as ``request.protocol`` expects it (through the chat form).

    Raises:
        GatewayError: 502 when the upstream's answer cannot be read.
    """
    source, target = reply.protocol, request.protocol
    try:
        if source == ANTHROPIC:
            body = anthropic.reply_to_chat(body, request_id, model, reply.json_mode)
            source = OPENAI_CHAT
        if target == ANTHROPIC:
            return anthropic.reply_from_chat(body, request_id, model)
        if target == RESPONSES and source == OPENAI_CHAT:
            return responses.reply_from_chat(body, request_id, model, request=request.payload)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise GatewayError(ErrorKind.UPSTREAM_PROTOCOL, f"upstream sent an answer that cannot be read: {exc}") from None
    return body


def whole_usage(protocol: str, body: bytes) -> Usage | None:
    """The usage of a whole 200 answer in ``protocol`` (a count that is not a plausible token count reads as 0:
    an upstream's bad number must not break the record or the answer)."""
    if protocol == OPENAI_CHAT:
        return _json_usage(body)
    if protocol == ANTHROPIC:
        found = anthropic.usage_of_message(body)
        return None if found is None else Usage(found[0], found[1], found[2], found[3])
    if protocol == RESPONSES:
        counts = responses.usage_of_response(body)
        return None if counts is None else Usage(*counts)
    if protocol == EMBEDDINGS:
        prompt = embeddings.usage_of_embeddings(body)
        return None if prompt is None else Usage(prompt, 0)
    return None


def _json_usage(body: bytes) -> Usage | None:
    """The usage object of a whole chat.completion answer, if it has one (a count that is not a plausible
    token count, of the wrong type, negative or beyond 2**53, reads as 0).

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
