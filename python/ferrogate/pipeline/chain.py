"""The one place the chat completion chain is assembled, in the documented phase order."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from granian.rsgi import HTTPProtocol, Scope

from ferrogate.audit.writer import AuditWriter
from ferrogate.auth.authenticator import Authenticator
from ferrogate.budgets.ledger import BudgetLedger
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.limits import Limiter
from ferrogate.metering import PriceTable, UsageRecorder
from ferrogate.observability.logs import RequestLog
from ferrogate.observability.metrics import Metrics
from ferrogate.pipeline.account import account
from ferrogate.pipeline.budget import budget
from ferrogate.pipeline.context import RequestContext
from ferrogate.pipeline.limit import limit
from ferrogate.pipeline.phases import authenticate, authorize, forward, receive, respond, route
from ferrogate.pipeline.router import Router

log = logging.getLogger("ferrogate.pipeline")


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
    default_max_tokens: int


class ChatChain:
    """``POST /v1/chat/completions``: receive -> authenticate -> authorize -> limit -> route -> budget
    -> forward -> respond; account always.

    ``budget`` runs after ``route`` (the design lists it before): the worst-case cost needs the price
    of the deployment that will serve, and a deployment may override the price table.

    A :class:`GatewayError` from any phase becomes the OpenAI-shaped error response; any other
    exception is logged and answered with a 500 in the same shape (never a traceback).
    """

    __slots__ = ("deps",)

    def __init__(self, deps: ChainDeps) -> None:
        self.deps = deps

    async def __call__(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """Serve one request; ``headers`` go on every response (``x-request-id``, rate limits)."""
        deps = self.deps
        ctx = RequestContext(rid)
        if headers[0][1] is not rid:  # the client's own x-request-id, echoed
            ctx.client_request_id = headers[0][1]
        traceparent = scope.headers.get("traceparent")
        if traceparent is not None:
            ctx.trace_id = trace_id(traceparent)
        try:
            await receive(ctx, scope, proto, deps.max_body)
            await authenticate(ctx, scope, deps.auth)
            authorize(ctx)
            if (pending := limit(ctx, deps.limiter, headers, deps.default_max_tokens)) is not None:
                await pending
            if (pending := route(ctx, deps.router, deps.limiter, headers, deps.default_max_tokens)) is not None:
                await pending
            if ctx.identity.budgets and deps.recorder is not None:  # no metering: no spend to hold against
                await budget(ctx, deps.ledger, deps.prices, deps.default_max_tokens)
            reply = await forward(ctx)
            await respond(ctx, proto, reply, headers)
        except GatewayError as err:
            ctx.fail(err)
            ctx.status = err.status
            write_error(proto, err, headers)
        except Exception as exc:
            log.exception("request %s failed inside the gateway", rid)
            ctx.fail(exc)
            internal = GatewayError(ErrorKind.INTERNAL, f"internal error (request id {rid})")
            ctx.status = internal.status
            write_error(proto, internal, headers)
        finally:
            await account(ctx, deps.limiter, deps.recorder, deps.prices, deps.request_log, deps.audit, deps.metrics)


def trace_id(traceparent: str) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex>``), or ``None`` if malformed.

    Example:
        >>> trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        '4bf92f3577b34da6a3ce929d0e0e4736'
    """
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or parts[1] == "0" * 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1].lower()


def write_error(proto: HTTPProtocol, err: GatewayError, headers: list[tuple[str, str]]) -> None:
    """Answer with ``err`` in OpenAI's error shape and its status."""
    proto.response_bytes(err.status, [("content-type", "application/json"), *headers, *err.headers], err.to_json())
