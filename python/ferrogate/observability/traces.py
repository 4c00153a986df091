"""OpenTelemetry traces of chat requests, following the GenAI semantic conventions.

Tracing is on only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set
(:func:`ferrogate.observability.tracing_enabled`). Then each worker builds one :class:`Tracer` in
``Gateway.__rsgi_init__``: a ``TracerProvider`` with a ``BatchSpanProcessor`` and the OTLP HTTP/protobuf
exporter (the standard ``OTEL_*`` variables configure them: sampler, batch delay, headers...), shut down
and flushed in ``__rsgi_del__``. This module is imported only then; with tracing off the chain's only
cost is its ``tracer is None`` checks.

Per request: one SERVER span "chat {model}" (its parent the client's W3C ``traceparent`` when valid, else a
new root) and one CLIENT child "chat {upstream model}" per upstream attempt, which covers the exchange (a
stream's until its relay ends) and whose ``traceparent`` goes upstream. Both are ended by :meth:`Tracer.finish`
after the account phase, the CLIENT span with the end time it recorded, so that usage is known.

Example:
    >>> tracer = setup([])  # in a worker, with OTEL_EXPORTER_OTLP_ENDPOINT set
    >>> tracer.shutdown()
"""

from __future__ import annotations

import os
from time import time_ns
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ferrogate import __version__, _core
from ferrogate.config.model import Upstream
from ferrogate.errors import GatewayError
from ferrogate.pipeline.chain import tracestate

if TYPE_CHECKING:
    from granian.rsgi import Scope

    from ferrogate.pipeline.context import RequestContext
    from ferrogate.providers.base import Call, Reply


class _HeaderGetter(Getter[Any]):
    """Reads the propagation headers of a Granian scope (``scope.headers``, a mapping with ``get``)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: Any) -> list[str]:
        return list(carrier.keys())


_GETTER = _HeaderGetter()


class _Trace:
    """The spans of one request (``ctx.trace``)."""

    __slots__ = ("client", "client_end", "client_error", "client_status", "server")

    def __init__(self, server: Span) -> None:
        self.server = server
        self.client: Span | None = None
        self.client_end = 0  # ns; 0: the exchange is still going on
        self.client_status = 0
        self.client_error: BaseException | None = None


class Tracer:
    """The spans of one worker's chat requests (built by :func:`setup`, only when tracing is on).

    Args:
        provider: the worker's ``TracerProvider`` (its processors export the spans).
        upstreams: the configured upstreams, for the CLIENT spans' provider and server address.
    """

    __slots__ = ("_propagator", "_provider", "_tracer", "_upstreams")

    def __init__(self, provider: TracerProvider, upstreams: list[Upstream]) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("ferrogate", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._upstreams = {u.name: _upstream_attributes(u) for u in upstreams}

    def start(self, ctx: RequestContext, scope: Scope, headers: list[tuple[str, str]]) -> None:
        """Open the SERVER span (child of the client's ``traceparent`` if valid); add ``x-trace-id``."""
        parent = self._propagator.extract(scope.headers, getter=_GETTER) if ctx.trace_id is not None else None
        span = self._tracer.start_span(
            "chat",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"gen_ai.operation.name": "chat", "http.request.method": "POST", "url.path": scope.path},
        )
        ctx.trace = _Trace(span)
        ctx.trace_id = format(span.get_span_context().trace_id, "032x")
        headers.append(("x-trace-id", ctx.trace_id))

    def upstream_start(self, ctx: RequestContext, call: Call) -> None:
        """Hook, as the forward phase starts: open the CLIENT span, whose ``traceparent`` the call sends upstream."""
        trace: _Trace = ctx.trace
        provider = ctx.provider
        span = self._tracer.start_span(
            f"chat {ctx.upstream_model}",
            context=set_span_in_context(trace.server, Context()),
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": ctx.upstream_model,
                "ferrogate.upstream": provider.name,
                **self._upstreams.get(provider.name, {}),
            },
        )
        trace.client = span
        sc = span.get_span_context()
        call.traceparent = ctx.traceparent = f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}"
        # the client's tracestate, as the propagator read it
        call.tracestate = ctx.tracestate = tracestate([sc.trace_state.to_header()])

    def upstream_failed(self, ctx: RequestContext, exc: BaseException) -> None:
        """Hook: the upstream call raised before an answer (the CLIENT span ends with the error)."""
        trace: _Trace = ctx.trace
        trace.client_end, trace.client_error = time_ns(), exc

    def upstream_answered(self, ctx: RequestContext, reply: Reply) -> None:
        """Hook: the upstream answered; a whole answer ends the exchange, a stream ends when released."""
        trace: _Trace = ctx.trace
        trace.client_status = reply.status
        if reply.read is None:  # a whole answer: the exchange is over
            trace.client_end = time_ns()
        else:  # a stream: over when the respond phase releases it, after the relay
            reply.release = _end_on_release(ctx, trace, reply.release)

    def finish(self, ctx: RequestContext) -> None:
        """After the account phase: set the outcome and usage on both spans and end them."""
        trace: _Trace = ctx.trace
        usage = ctx.usage
        response_model = ctx.response_model or ctx.upstream_model or None
        client = trace.client
        if client is not None:
            client.set_attribute("http.response.status_code", trace.client_status)
            if response_model is not None:
                client.set_attribute("gen_ai.response.model", response_model)
            _set_usage(client, ctx)
            _set_error(client, trace.client_error, trace.client_status)
            client.end(trace.client_end or None)
        span = trace.server
        if ctx.model:
            span.update_name(f"chat {ctx.model}")
            span.set_attribute("gen_ai.request.model", ctx.model)
            span.set_attribute("gen_ai.request.stream", ctx.stream)
            payload = ctx.request.payload if ctx.request is not None else {}
            max_tokens = (
                payload.get("max_completion_tokens") or payload.get("max_tokens") or payload.get("max_output_tokens")
            )
            if isinstance(max_tokens, int):
                span.set_attribute("gen_ai.request.max_tokens", max_tokens)
        if response_model is not None:
            span.set_attribute("gen_ai.response.model", response_model)
        if usage is not None:
            _set_usage(span, ctx)
        identity = ctx.identity
        if identity is not None:
            if identity.key_id is not None:
                span.set_attribute("ferrogate.key_id", identity.key_id)
            if identity.team_id is not None:
                span.set_attribute("ferrogate.team_id", identity.team_id)
        if ctx.provider is not None:
            span.set_attribute("ferrogate.upstream", ctx.provider.name)
        span.set_attribute("ferrogate.request_id", ctx.request_id)
        if ctx.client_request_id is not None:
            span.set_attribute("ferrogate.client_request_id", ctx.client_request_id)
        span.set_attribute("ferrogate.status", ctx.status)
        span.set_attribute("http.response.status_code", ctx.status)
        _set_error(span, ctx.error, ctx.status)
        span.end()

    def shutdown(self) -> None:
        """Export what is queued and stop the exporter (worker stop)."""
        self._provider.shutdown()


def setup(upstreams: list[Upstream]) -> Tracer:
    """The worker's tracer: OTLP over HTTP/protobuf, batched; ``service.name`` from ``OTEL_SERVICE_NAME``."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create(
        {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or "ferrogate", SERVICE_VERSION: __version__}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return Tracer(provider, upstreams)


def _upstream_attributes(upstream: Upstream) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {"gen_ai.provider.name": upstream.provider, "gen_ai.system": upstream.provider}
    if upstream.base_url is not None:
        url = urlsplit(upstream.base_url)
        if url.hostname:
            attributes["server.address"] = url.hostname
        attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
    return attributes


def _end_on_release(ctx: RequestContext, trace: _Trace, release: Any) -> Any:
    async def released() -> None:
        try:
            if release is not None:
                await release()
        finally:
            trace.client_end = time_ns()
            error = ctx.error
            if isinstance(error, (GatewayError, _core.SseError)):  # an upstream fault mid-stream
                trace.client_error = error

    return released


def _set_usage(span: Span, ctx: RequestContext) -> None:
    usage = ctx.usage
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)


def _set_error(span: Span, error: BaseException | None, status: int) -> None:
    """Mark a failed exchange: ``error.type`` is the OpenAI error code (or the status of an upstream error)."""
    if error is not None:
        code = error.wire_code if isinstance(error, GatewayError) else type(error).__name__
    elif status >= 400:
        code = str(status)
    else:
        return
    span.set_attribute("error.type", code)
    span.set_status(Status(StatusCode.ERROR, code))
