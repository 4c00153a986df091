"""The one place the chat completion chain is assembled, in the documented phase order."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from granian.rsgi import HTTPProtocol, Scope

from ferrogate import _core
from ferrogate.audit.writer import AuditWriter
from ferrogate.auth.authenticator import Authenticator
from ferrogate.budgets.ledger import BudgetLedger
from ferrogate.config.model import RequestBounds
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.journal.requests import RequestJournal
from ferrogate.limits import Limiter
from ferrogate.metering import PriceTable, UsageRecorder
from ferrogate.observability.logs import RequestLog
from ferrogate.observability.metrics import Metrics
from ferrogate.pipeline.account import Books, account
from ferrogate.pipeline.budget import budget
from ferrogate.pipeline.context import RequestContext
from ferrogate.pipeline.limit import limit
from ferrogate.pipeline.phases import authenticate, authorize, forward, receive, respond, route
from ferrogate.pipeline.router import Router

if TYPE_CHECKING:
    from ferrogate.observability.traces import Tracer

log = logging.getLogger("ferrogate.pipeline")

#: The longest tracestate sent on (W3C Trace Context: a hop may drop a longer one).
_TRACESTATE_MAX = 512
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ChainDeps:
    """What the phases need besides the request: built once per worker."""

    router: Router
    auth: Authenticator
    limiter: Limiter
    recorder: UsageRecorder | None  # None: metering off
    ledger: BudgetLedger
    request_log: RequestLog
    audit: AuditWriter | None  # None: data-plane requests are not audited (audit.requests: false)
    metrics: Metrics | None  # None: metrics off
    prices: PriceTable
    max_body: int
    bounds: RequestBounds  # requests.*: ceilings on what a request may ask for
    default_max_tokens: int
    journal: RequestJournal | None = None  # the request journal both writers consume (None: server.journal off)


class ChatChain:
    """``POST /v1/chat/completions``: receive -> authenticate -> authorize -> limit -> route -> budget
    -> forward -> respond; account always.

    ``budget`` runs after ``route`` (the design lists it before): the worst-case cost needs the price
    of the deployment that will serve, and a deployment may override the price table.

    A :class:`GatewayError` from any phase becomes the OpenAI-shaped error response; any other
    exception is logged and answered with a 500 in the same shape (never a traceback).
    """

    __slots__ = ("books", "deps", "tracer")

    def __init__(self, deps: ChainDeps) -> None:
        self.deps = deps
        #: Records a request (journaled) just before its answer's last byte: every branch below calls it first.
        self.books = Books(deps.recorder, deps.audit, deps.prices, deps.journal)
        #: The worker's spans (``ferrogate.observability.traces.Tracer``), set by ``Gateway.__rsgi_init__`` when
        #: an OTLP endpoint is configured; ``None``: tracing off, and its only cost is the checks below.
        self.tracer: Tracer | None = None

    async def __call__(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """Serve one request; ``headers`` go on every response (``x-request-id``, ``x-trace-id``, rate limits)."""
        deps = self.deps
        tracer = self.tracer
        books = self.books
        ctx = RequestContext(rid)
        if headers[0][1] != rid:  # the client's own x-request-id, echoed (app.py puts x-request-id first)
            ctx.client_request_id = headers[0][1]
        traceparent = scope.headers.get("traceparent")
        if traceparent is not None and (tid := trace_id(traceparent)) is not None:
            ctx.trace_id = tid
            if tracer is None:  # tracing off: the client's trace goes on upstream unchanged
                ctx.traceparent = traceparent
                if "tracestate" in scope.headers:
                    ctx.tracestate = tracestate([v for k, v in scope.headers.items() if k == "tracestate"])
                headers.append(("x-trace-id", tid))
        if tracer is not None:
            tracer.start(ctx, scope, headers)  # the SERVER span: sets ctx.trace_id, adds x-trace-id
        try:
            await receive(ctx, scope, proto, deps.max_body, deps.bounds)
            await authenticate(ctx, scope, deps.auth)
            authorize(ctx)
            if (pending := limit(ctx, deps.limiter, headers, deps.default_max_tokens)) is not None:
                await pending
            if (pending := route(ctx, deps.router, deps.limiter, headers, deps.default_max_tokens)) is not None:
                await pending
            if ctx.identity.budgets and deps.recorder is not None:  # no metering: no spend to hold against
                await budget(ctx, deps.ledger, deps.prices, deps.default_max_tokens)
            reply = await (forward(ctx) if tracer is None else tracer.forward(ctx))
            await respond(ctx, proto, reply, headers, books)
        except GatewayError as err:
            ctx.fail(err)
            ctx.status = err.status
            books(ctx)
            write_error(proto, err, headers)
        except _core.InvalidBodyError as exc:  # the core's reader refused what validation passed (a key twice)
            refusal = invalid_body(exc)
            ctx.fail(refusal)
            ctx.status = refusal.status
            books(ctx)
            write_error(proto, refusal, headers)
        except Exception as exc:
            log.exception("request %s failed inside the gateway", rid)
            ctx.fail(exc)
            internal = GatewayError(ErrorKind.INTERNAL, f"internal error (request id {rid})")
            ctx.status = internal.status
            books(ctx)
            write_error(proto, internal, headers)
        finally:
            await account(ctx, deps.limiter, books, deps.request_log, deps.metrics)
            if tracer is not None:
                tracer.finish(ctx)


def invalid_body(exc: Exception) -> GatewayError:
    """The 400 for a body the Rust core could not read (``_core.InvalidBodyError``) although it passed
    validation: a key given twice in one object (orjson keeps the last, the core refuses), say. It names
    ``messages``, the part of the body the core reads.

    Example:
        >>> invalid_body(ValueError("duplicate field `role` at line 1 column 34")).status
        400
    """
    return GatewayError(ErrorKind.INVALID_FIELD, f"'messages' cannot be read: {exc}", param="messages")


def trace_id(traceparent: str) -> str | None:
    """The trace id of a valid W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex>``), or ``None``.

    Invalid: not that shape, version ``ff``, an all-zero trace or parent id (a version 00 header must
    have exactly four fields).

    Example:
        >>> trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        '4bf92f3577b34da6a3ce929d0e0e4736'
    """
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace, parent, _, rest = match.groups()
    if version.lower() == "ff" or (version == "00" and rest) or trace == "0" * 32 or parent == "0" * 16:
        return None
    return trace.lower()


def tracestate(fields: list[str]) -> str | None:
    """The W3C ``tracestate`` to send on with a ``traceparent``: the fields of the header joined as one list
    (the specification's rule for a header sent several times), or ``None`` when empty or longer than the
    512 characters beyond which a hop may drop it.

    Example:
        >>> tracestate(["congo=t61rcWkgMzE", "rojo=00f0"]), tracestate([" "]), tracestate(["x=" + "y" * 600])
        ('congo=t61rcWkgMzE,rojo=00f0', None, None)
    """
    header = ",".join(f.strip() for f in fields if f.strip())
    return header if 0 < len(header) <= _TRACESTATE_MAX else None


def write_error(proto: HTTPProtocol, err: GatewayError, headers: list[tuple[str, str]]) -> None:
    """Answer with ``err`` in OpenAI's error shape and its status."""
    proto.response_bytes(err.status, [("content-type", "application/json"), *headers, *err.headers], err.to_json())
