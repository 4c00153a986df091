"""The one place the chat completion chain is assembled, in the documented phase order."""

from __future__ import annotations

import logging

from granian.rsgi import HTTPProtocol, Scope

from ferrogate.auth.authenticator import Authenticator
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.pipeline.context import RequestContext
from ferrogate.pipeline.phases import account, authenticate, authorize, forward, receive, respond, route
from ferrogate.pipeline.router import Router

log = logging.getLogger("ferrogate.pipeline")


class ChatChain:
    """``POST /v1/chat/completions``: receive -> authenticate -> authorize -> route -> forward -> respond;
    account always.

    A :class:`GatewayError` from any phase becomes the OpenAI-shaped error response; any other
    exception is logged and answered with a 500 in the same shape (never a traceback).
    """

    __slots__ = ("auth", "max_body", "router")

    def __init__(self, router: Router, auth: Authenticator, max_body: int) -> None:
        self.router = router
        self.auth = auth
        self.max_body = max_body

    async def __call__(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """Serve one request; ``headers`` go on every response (``x-request-id``)."""
        ctx = RequestContext(rid)
        try:
            await receive(ctx, scope, proto, self.max_body)
            await authenticate(ctx, scope, self.auth)
            authorize(ctx)
            route(ctx, self.router)
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
            account(ctx)


def write_error(proto: HTTPProtocol, err: GatewayError, headers: list[tuple[str, str]]) -> None:
    """Answer with ``err`` in OpenAI's error shape and its status."""
    proto.response_bytes(err.status, [("content-type", "application/json"), *headers, *err.headers], err.to_json())
