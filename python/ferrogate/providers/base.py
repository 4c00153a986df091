"""What every provider adapter takes and gives: a typed request in, one :class:`Reply` per upstream call out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ferrogate.errors import GatewayError
from ferrogate.protocols import OPENAI_CHAT
from ferrogate.protocols.request import Request


@dataclass(slots=True)
class Call:
    """What the route phase decided for one upstream call, besides the request itself.

    ``traceparent`` and ``tracestate`` (W3C trace context), when set, are sent upstream with this call only.
    """

    upstream_model: str
    request_id: str
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(slots=True)
class Reply:
    """An upstream's answer, before the respond phase writes it to the client.

    ``protocol`` is what the answer speaks (the upstream's protocol; the respond phase translates it into the
    client's). Exactly one of ``body`` (a whole response: JSON or an upstream error) and ``read`` (a stream)
    is set. ``read`` returns the next chunk of SSE bytes as it arrives (bytes or a bytes-like object), ``None``
    at the end; it is the client library's own method where possible, so relaying a chunk costs no wrapper
    frame. Whatever ``read`` raises is mapped by ``fault`` to the :class:`GatewayError` the client sees (no
    ``fault``: it is a gateway fault). ``release`` frees the upstream connection; the respond phase always
    calls it. ``headers`` are the upstream's headers the client may see (the retry hints of an error).
    ``json_mode``: the answer's forced ``json_response`` tool call is the JSON-mode content (Anthropic).
    """

    status: int
    content_type: str
    body: bytes | None = None
    read: Callable[[], Awaitable[Any]] | None = None
    fault: Callable[[Exception], GatewayError] | None = None
    release: Callable[[], Awaitable[None]] | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    protocol: str = OPENAI_CHAT
    json_mode: bool = False


class Provider(Protocol):
    """A provider adapter: sends a :class:`~ferrogate.protocols.request.Request` upstream.

    ``send`` runs in the forward phase. The request goes in the upstream's own protocol: unchanged (but for
    ``model``) when that is the request's protocol, else translated through the request's chat form. It
    raises :class:`ferrogate.errors.GatewayError` for faults before a response exists (unreachable: 502,
    timeout: 504, a request the upstream's protocol cannot express: 400), and returns a :class:`Reply` for
    every response, upstream 4xx/5xx included.
    """

    name: str

    async def send(self, request: Request, call: Call) -> Reply:
        """Send ``request`` upstream as ``call`` says."""
        ...

    async def close(self) -> None:
        """Release pooled connections (at shutdown)."""
        ...
