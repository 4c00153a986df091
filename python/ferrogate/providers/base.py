"""What every provider adapter gives the pipeline: one :class:`Reply` per upstream call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ferrogate.errors import GatewayError

if TYPE_CHECKING:
    from ferrogate.pipeline.context import RequestContext


@dataclass(slots=True)
class Reply:
    """An upstream's answer, before the respond phase writes it to the client.

    Exactly one of ``body`` (a whole response: JSON or an upstream error) and ``read`` (a
    stream) is set. ``read`` returns the next chunk of SSE bytes as it arrives (bytes or a
    bytes-like object), ``None`` at the end; it is the client library's own method where
    possible, so relaying a chunk costs no wrapper frame. Whatever ``read`` raises is mapped
    by ``fault`` to the :class:`GatewayError` the client sees (no ``fault``: it is a gateway
    fault). ``release`` frees the upstream connection; the respond phase always calls it.
    """

    status: int
    content_type: str
    body: bytes | None = None
    read: Callable[[], Awaitable[Any]] | None = None
    fault: Callable[[Exception], GatewayError] | None = None
    release: Callable[[], Awaitable[None]] | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


class Provider(Protocol):
    """A provider adapter: turns the request context into an upstream call.

    ``chat`` runs in the forward phase. It raises :class:`ferrogate.errors.GatewayError`
    for faults before a response exists (unreachable: 502, timeout: 504), and returns a
    :class:`Reply` for every response, upstream 4xx/5xx included (passed through).
    """

    name: str

    async def chat(self, ctx: RequestContext) -> Reply:
        """Send the chat completion in ``ctx`` upstream."""
        ...

    async def close(self) -> None:
        """Release pooled connections (at shutdown)."""
        ...
