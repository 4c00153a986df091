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
from ferrogate.observability.families import GUARDRAIL_FINDINGS, UPSTREAM_ATTEMPTS
from ferrogate.pipeline.context import RequestContext, Usage
from ferrogate.pipeline.failover import (
    _RETRY_KINDS,
    FAULT_STATUS,
    FINAL,
    RETRY,
    TIMEOUT_STATUS,
    Plan,
    begin,
    classify,
    retry_after_s,
)
from ferrogate.pipeline.guard import GUARD_HEADER, mask_answer
from ferrogate.pipeline.session import Session
from ferrogate.pipeline.structured import RETRY as RETRY_SCHEMA
from ferrogate.pipeline.structured import SCHEMA_HEADER, verdict
from ferrogate.protocols import ANTHROPIC, EMBEDDINGS, OPENAI_CHAT, RESPONSES, anthropic, embeddings, responses
from ferrogate.protocols.checks import tokens as _tokens
from ferrogate.protocols.errors import anthropic_type, render, upstream_error
from ferrogate.protocols.request import Request
from ferrogate.providers.base import Call, Reply
from ferrogate.routing.rules import RequestFacts as RuleFacts

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
    """Phase 6: plan the attempts for ``ctx.model`` (404 if no group or alias has that name; 403
    ``classification_not_cleared`` if no deployment is cleared for the request's classification) and take the
    first target: the first deployment, in the group's strategy order, whose circuit admits the request and that
    has rpm/tpm room (a full deployment is skipped; 429 ``deployment_rpm_exceeded``/``deployment_tpm_exceeded``
    when every one is full; 503 ``no_healthy_deployment`` when every circuit is open). See
    :mod:`ferrogate.pipeline.failover`. Returns ``None`` when done, else the awaitable (deployment limits kept
    in Redis).
    """
    deps = s.chain.deps
    router = deps.router
    rules = router.table.rules
    if rules is None:
        return begin(router, ctx, deps.limiter, s.headers)
    if rules.uses_budget and ctx.identity.budgets and deps.recorder is not None:
        return _route_by_budget(s, ctx)
    return begin(router, ctx, deps.limiter, s.headers, _rule_facts(s, ctx, -1))


async def _route_by_budget(s: Session, ctx: RequestContext) -> None:
    """The route phase when the routing rules read ``context.budget_left_cents``: the least budget left on the key's
    chain (key, user, team) is read first (the store, or Redis)."""
    deps = s.chain.deps
    left: float | None = None
    try:
        balances = await deps.ledger.balances(ctx.identity.budgets)
    except Exception as exc:  # the store is down: route as if no budget were known (the budget phase decides)
        log.warning("request %s: budgets unreadable for the routing rules: %s", ctx.request_id, exc)
        balances = []
    for hold, balance in balances:
        room = hold.limit_usd - balance.spent_usd - balance.reserved_usd
        left = room if left is None else min(left, room)
    cents = -1 if left is None else max(0, int(left * 100))
    pending = begin(deps.router, ctx, deps.limiter, s.headers, _rule_facts(s, ctx, cents))
    if pending is not None:
        await pending


def _rule_facts(s: Session, ctx: RequestContext, budget_left_cents: int) -> RuleFacts:
    """What the routing rules know of the request (docs/routing.md, "Routing rules")."""
    identity = ctx.identity
    sla = s.scope.headers.get(s.chain.deps.router.table.config.routing.sla_header)
    try:
        sla_ms = max(0, int(float(sla))) if sla else 0
    except ValueError:
        raise GatewayError(
            ErrorKind.INVALID_FIELD, f"the latency SLA header must be a number of milliseconds, not {sla[:40]!r}"
        ) from None
    return RuleFacts(  # team, key, user, classification, sla_ms, budget_left_cents, model, stream, ingress
        identity.team_id or "",
        identity.key_id or "",
        identity.user_id or "",
        ctx.classification,
        sla_ms,
        budget_left_cents,
        ctx.model,
        ctx.stream,
        ctx.request.protocol,
    )


async def forward(s: Session, ctx: RequestContext) -> None:
    """Phase 8: send attempts until one answers (:mod:`ferrogate.pipeline.failover`); sets ``ctx.reply``.

    A failed attempt (429, 5xx, unreachable, timeout) goes to the next deployment, then the group's fallbacks;
    an answer that is not worth another attempt (another 4xx) is the reply. A stream is read until its first
    content before it counts as answered (:func:`_prime`): one that fails before that is failed over, and the
    client never sees it. When every attempt failed, the last failure is the answer (an error reply, or the
    fault raised). The answer carries ``x-ferrogate-attempts`` and ``x-ferrogate-deployment``.

    The tracer, when on, is called around each attempt as hooks (a CLIENT span whose ``traceparent`` goes
    upstream).
    """
    plan: Plan = ctx.plan
    tracer = s.chain.tracer
    deps = s.chain.deps
    start = perf_counter()
    try:
        while True:
            call = Call(ctx.upstream_model, ctx.request_id, ctx.traceparent, ctx.tracestate)
            plan.begin()
            if tracer is not None:
                tracer.upstream_start(ctx, call)
            fault: GatewayError | None = None
            reply: Reply | None = None
            try:
                reply = await ctx.provider.send(ctx.request, call)
            except GatewayError as err:
                if tracer is not None:
                    tracer.upstream_failed(ctx, err)
                fault = err
            except BaseException as exc:
                if tracer is not None:
                    tracer.upstream_failed(ctx, exc)
                raise
            else:
                if tracer is not None:
                    tracer.upstream_answered(ctx, reply)
                if reply.read is not None and reply.status < 300:
                    fault = await _prime(s, ctx, reply)
            if fault is None:
                assert reply is not None
                if reply.status < 400:
                    if reply.read is None:  # a whole answer: done; a stream's outcome is given at its end
                        plan.finish(True, reply.status)
                    _attempt_metric(deps.metrics, plan, reply, None)
                    mode = plan.group.schema_check
                    if mode != "off" and reply.read is None and reply.status == 200:
                        checked = verdict(ctx, reply, mode, plan.schema_retried, deps.metrics)
                        if checked == RETRY_SCHEMA:  # asked once more, of the same deployment
                            plan.schema_retried = True
                            plan.again()
                            continue
                        if checked is not None:
                            s.headers.append((SCHEMA_HEADER, checked))
                    break
                meaning = classify(reply.status, reply.body or b"")
                wait = retry_after_s(reply.headers)
                plan.finish(meaning != RETRY, reply.status, wait)  # a client's 4xx is no fault of the deployment
            else:
                meaning = RETRY if fault.kind in _RETRY_KINDS else FINAL
                wait = -1.0
                status = TIMEOUT_STATUS if fault.kind is ErrorKind.UPSTREAM_TIMEOUT else FAULT_STATUS
                plan.finish(meaning != RETRY, status)
            _attempt_metric(deps.metrics, plan, reply, fault)
            if not await plan.next_after(ctx, deps.limiter, s.headers, meaning, wait):
                if fault is not None:
                    raise fault
                break
    finally:
        ctx.upstream_s = perf_counter() - start  # until the answer's head (a stream adds its relay time)
        s.headers.extend(plan.headers())
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


def _attempt_metric(metrics: Metrics | None, plan: Plan, reply: Reply | None, fault: GatewayError | None) -> None:
    """Count one attempt in ``ferrogate_upstream_attempts_total{upstream,model,outcome}``; a failed one joins
    ``plan.failed`` (the request's audit record lists them)."""
    if plan.current is None:
        return
    if fault is not None:
        kind = fault.kind
        outcome = (
            "timeout"
            if kind is ErrorKind.UPSTREAM_TIMEOUT
            else "unreachable"
            if kind is ErrorKind.UPSTREAM_UNREACHABLE
            else "error"
        )
    elif reply is None or reply.status < 400:
        outcome = "ok"
    else:
        outcome = "rate_limited" if reply.status == 429 else "error"
    if outcome != "ok":
        plan.failed = [*plan.failed, (plan.current.key, 0 if reply is None else reply.status, outcome)]
    if metrics is not None:
        metrics.add(UPSTREAM_ATTEMPTS, (plan.current.upstream, plan.current.model, outcome), 1)


def _new_relay(ctx: RequestContext, reply: Reply) -> Any:
    """The ``StreamRelay`` of one streamed attempt (parse, meter, translate, strip or add the usage chunk, and
    mask the answer when answers are scanned: one Rust call per chunk)."""
    request: Request = ctx.request
    encoding = _core.encoding_for_model(ctx.upstream_model)
    translating = reply.protocol != request.protocol or ctx.answer_guard is not None
    prompt = ctx.prompt_tokens
    if prompt < 0 and (translating or request.include_usage):  # the relay may need the gateway's count
        prompt = ctx.prompt_tokens = _prompt_count(request, encoding)
    return _core.StreamRelay(
        reply.protocol,
        request.protocol,
        encoding=encoding,
        include_usage=request.include_usage,
        request_id=ctx.request_id,
        model=ctx.upstream_model,
        created=int(time.time()),
        prompt_tokens=prompt,
        json_tool=anthropic.JSON_TOOL if reply.json_mode else None,
        guard=ctx.answer_guard,
    )


async def _prime(s: Session, ctx: RequestContext, reply: Reply) -> GatewayError | None:
    """Read a streamed attempt until its first content (text, reasoning, refusal or a tool call), holding back what
    the relay gives until then (the role-only opening, empty deltas): nothing reaches the client yet, so a stream
    that breaks, errs or ends before content can still be failed over. Sets ``ctx.relay`` and ``ctx.held`` and
    returns ``None``, or releases the upstream and returns the failure."""
    relay = _new_relay(ctx, reply)
    read = reply.read
    assert read is not None
    held: list[bytes] = []
    failure: GatewayError | None = None
    ended = False
    try:
        while not relay.content_started and not relay.done:
            try:
                chunk = await read()
            except Exception as exc:
                if reply.fault is None:
                    raise
                raise reply.fault(exc) from None
            if chunk is None:
                held.append(relay.finish())
                ended = True
                break
            held.append(relay.feed(chunk if type(chunk) is bytes else bytes(chunk)))
    except GatewayError as err:
        failure = err
    except _core.SseError as exc:
        failure = GatewayError(ErrorKind.UPSTREAM_PROTOCOL, f"upstream sent a malformed stream: {exc}")
    if failure is None and not relay.content_started:
        if relay.error is not None:
            failure = GatewayError(
                ErrorKind.UPSTREAM_PROTOCOL, f"upstream '{ctx.provider.name}' sent an error event: {relay.error[:500]}"
            )
        elif ended and not relay.done:
            failure = GatewayError(
                ErrorKind.UPSTREAM_PROTOCOL, f"upstream '{ctx.provider.name}' ended the stream before any content"
            )
    if failure is not None:
        if reply.release is not None:
            await reply.release()
        return failure
    ctx.relay = relay
    ctx.held = b"".join(held)
    ctx.plan.ttft_s = perf_counter() - ctx.plan.started
    if ended:
        ctx.relay_ended = True
    return None


async def _relay(s: Session, ctx: RequestContext, reply: Reply) -> None:
    """A stream, relayed chunk by chunk as it arrives by the ``StreamRelay`` the forward phase primed (what it
    held back goes first). A stream that breaks upstream ends with an error event in the client's protocol; a
    client that goes away stops the upstream read. The attempt's outcome goes to its circuit at the end."""
    request: Request = ctx.request
    books = s.chain.books
    metrics = s.chain.deps.metrics
    read = reply.read
    assert read is not None
    fault = reply.fault
    relay_start = perf_counter()
    relay = ctx.relay
    translating = reply.protocol != request.protocol or ctx.answer_guard is not None
    content_type = "text/event-stream; charset=utf-8" if translating else reply.content_type
    transport = s.proto.response_stream(
        reply.status, [("content-type", content_type), ("cache-control", "no-cache"), *s.headers]
    )
    healthy = True
    try:
        try:
            data = ctx.held
            if relay.done:
                _book_stream(ctx, relay, books, metrics)
            if data:
                ctx.ttft_s = perf_counter() - ctx.started
                await transport.send_bytes(data)
            while not ctx.relay_ended:
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
            healthy = False
            ctx.fail(err)
            frame = _error_event(relay, err, request.protocol)  # first: a guarded relay sends its held text
            _book_stream(ctx, relay, books, metrics)
            await transport.send_bytes(frame)
        except _core.SseError as exc:
            healthy = False
            ctx.fail(exc)
            bad = GatewayError(ErrorKind.UPSTREAM_PROTOCOL, f"upstream sent a malformed stream: {exc}")
            frame = _error_event(relay, bad, request.protocol)
            _book_stream(ctx, relay, books, metrics)
            await transport.send_bytes(frame)
    except (ProtocolClosed, ProtocolError) as exc:
        ctx.fail(exc)  # the client went away; stop reading upstream
    finally:
        _book_stream(ctx, relay, books, metrics)  # a stream that stopped without its end: recorded before it ends
        ctx.plan.finish(healthy, reply.status, ttft_s=ctx.plan.ttft_s)
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
