"""The downstream half of a request (pingora's ``Session``): what every phase gets beside the context.

Every phase has one signature, ``phase(session, ctx) -> Awaitable[None] | None`` (pingora's
``(session, ctx)``): the session is the client's side (its scope, the protocol object the answer is written
to, the headers every response carries) and the chain that serves it (the worker's dependencies, the
books, the tracer, the ingress); the context (:class:`~ferrogate.pipeline.context.RequestContext`) is the
request's own state. A phase that finishes synchronously returns ``None`` and the chain awaits nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ferrogate.pipeline.chain import Chain


class Session:
    """One client request's connection side.

    Args:
        scope: the RSGI scope (method, path, headers).
        proto: the RSGI protocol object: the body is read from it, the answer written to it.
        headers: the headers every response to this request carries (``x-request-id`` first; phases add
            ``x-ratelimit-*``, ``x-trace-id``).
        chain: the chain serving the request (``chain.deps``, ``chain.books``, ``chain.tracer``,
            ``chain.ingress``).
    """

    __slots__ = ("chain", "headers", "proto", "scope")

    def __init__(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], chain: Chain) -> None:
        self.scope = scope
        self.proto = proto
        self.headers = headers
        self.chain = chain
