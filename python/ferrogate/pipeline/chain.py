"""The one place the request chain is assembled, in the documented phase order, for every ingress.

``POST /v1/chat/completions``, ``/v1/messages``, ``/v1/responses`` and ``/v1/embeddings`` are each one
:class:`Chain` over the same phases; only the :class:`Ingress` differs (the protocol the body is read in and
the answer and errors are written in, its validator, the audit action).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from granian.rsgi import HTTPProtocol, Scope

from ferrogate import _core
from ferrogate.audit.writer import AuditWriter
from ferrogate.auth.authenticator import Authenticator
from ferrogate.budgets.ledger import BudgetLedger
from ferrogate.config.model import RequestBounds
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.guardrails import Guardrails
from ferrogate.journal.requests import RequestJournal
from ferrogate.limits import Limiter
from ferrogate.metering import PriceTable, UsageRecorder
from ferrogate.observability.logs import RequestLog
from ferrogate.observability.metrics import Metrics
from ferrogate.pipeline.account import Books, account
from ferrogate.pipeline.budget import budget
from ferrogate.pipeline.context import RequestContext
from ferrogate.pipeline.guard import guard
from ferrogate.pipeline.limit import limit
from ferrogate.pipeline.phases import authenticate, authorize, count_tokens, forward, receive, respond, route
from ferrogate.pipeline.router import Router
from ferrogate.pipeline.session import Session
from ferrogate.pipeline.validate import validate_chat
from ferrogate.protocols import ANTHROPIC, EMBEDDINGS, OPENAI_CHAT, RESPONSES
from ferrogate.protocols.anthropic import validate_count_tokens_request, validate_messages_request
from ferrogate.protocols.embeddings import validate_embeddings_request
from ferrogate.protocols.errors import render
from ferrogate.protocols.responses import validate_responses_request

if TYPE_CHECKING:
    from ferrogate.observability.traces import Tracer

log = logging.getLogger("ferrogate.pipeline")

#: The longest tracestate sent on (W3C Trace Context: a hop may drop a longer one).
_TRACESTATE_MAX = 512
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.IGNORECASE)

#: One phase: ``(session, ctx)``; ``None`` when it finished synchronously, else what the chain awaits.
Phase = Callable[[Session, RequestContext], Awaitable[None] | None]
#: Every phase but account, in order (account always runs, after them).
PHASES: tuple[Phase, ...] = (receive, authenticate, authorize, limit, guard, route, budget, forward, respond)


@dataclass(frozen=True, slots=True)
class Ingress:
    """What one data-plane route reads and writes: its protocol, how its body is validated, and the action
    its audit records name."""

    protocol: str
    action: str
    validate: Callable[[Any, RequestBounds], None]
    route: str  # the path: the metrics' route label


#: ``POST /v1/messages/count_tokens``: no limits, budget or upstream call of the model (it costs nothing); its
#: body is guarded like any other (an Anthropic upstream counts it itself: it leaves the gateway).
COUNT_TOKENS = Ingress(ANTHROPIC, "messages.count_tokens", validate_count_tokens_request, "/v1/messages/count_tokens")
COUNT_PHASES: tuple[Phase, ...] = (receive, authenticate, authorize, guard, route, count_tokens)

#: The data-plane routes' ingresses.
INGRESSES: dict[str, Ingress] = {
    "/v1/chat/completions": Ingress(OPENAI_CHAT, "chat.completions", validate_chat, "/v1/chat/completions"),
    "/v1/messages": Ingress(ANTHROPIC, "messages", validate_messages_request, "/v1/messages"),
    "/v1/responses": Ingress(RESPONSES, "responses", validate_responses_request, "/v1/responses"),
    "/v1/embeddings": Ingress(EMBEDDINGS, "embeddings", validate_embeddings_request, "/v1/embeddings"),
}


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
    guardrails: Guardrails | None = None  # the worker's scanner and policies (None: no guard phase work, "off")


class Chain:
    """One data-plane route: receive -> authenticate -> authorize -> limit -> guard -> route -> budget -> forward
    -> respond; account always.

    ``budget`` runs after ``route`` (the design lists it before): the worst-case cost needs the price
    of the deployment that will serve, and a deployment may override the price table.

    A :class:`GatewayError` from any phase becomes the error response in the ingress's protocol; any other
    exception is logged and answered with a 500 in the same shape (never a traceback).
    """

    __slots__ = ("books", "deps", "ingress", "phases", "tracer")

    def __init__(self, deps: ChainDeps, ingress: Ingress | None = None, phases: tuple[Phase, ...] = PHASES) -> None:
        self.deps = deps
        self.ingress = ingress or INGRESSES["/v1/chat/completions"]
        self.phases = phases
        #: Records a request (journaled) just before its answer's last byte: every branch below calls it first.
        self.books = Books(deps.recorder, deps.audit, deps.prices, deps.journal, self.ingress.action)
        #: The worker's spans (``ferrogate.observability.traces.Tracer``), set by ``Gateway.__rsgi_init__`` when
        #: an OTLP endpoint is configured; ``None``: tracing off, and its only cost is the checks below. Its
        #: hooks run at the start and end of the chain and around the upstream call (the forward phase).
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
        session = Session(scope, proto, headers, self)
        protocol = self.ingress.protocol
        try:
            for phase in self.phases:
                if (pending := phase(session, ctx)) is not None:
                    await pending
        except GatewayError as err:
            ctx.fail(err)
            write_error(proto, err, headers, protocol, ctx, books)
        except _core.InvalidBodyError as exc:  # the core's reader refused what validation passed (a key twice)
            refusal = invalid_body(exc)
            ctx.fail(refusal)
            write_error(proto, refusal, headers, protocol, ctx, books)
        except Exception as exc:
            log.exception("request %s failed inside the gateway", rid)
            ctx.fail(exc)
            internal = GatewayError(ErrorKind.INTERNAL, f"internal error (request id {rid})")
            write_error(proto, internal, headers, protocol, ctx, books)
        finally:
            await account(ctx, deps.limiter, books, deps.request_log, deps.metrics, self.ingress.route)
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


def write_error(
    proto: HTTPProtocol,
    err: GatewayError,
    headers: list[tuple[str, str]],
    protocol: str = OPENAI_CHAT,
    ctx: RequestContext | None = None,
    books: Callable[[RequestContext], None] | None = None,
) -> None:
    """Answer with ``err`` in the error shape of ``protocol`` (OpenAI's by default). With a request context, its
    status is set and ``books`` records it just before the answer goes out."""
    status, body = render(err, protocol)
    if ctx is not None:
        ctx.status = status
        if books is not None:
            books(ctx)
    proto.response_bytes(status, [("content-type", "application/json"), *headers, *err.headers], body)
