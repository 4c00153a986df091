"""Opening one SDK client session to an upstream MCP server, and listing what it offers (for :mod:`.upstream`).

HTTP: ``streamable_http_client`` over an ``httpx2.AsyncClient`` that carries the static headers and
``Authorization: Bearer <token>``; stdio: the command started with only a safe subset of the worker's environment
plus the server's ``env``. Either way the transport's read stream is watched, so the end of the connection (a stdio
child that exited) wakes the supervisor at once instead of at the next liveness probe.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
import httpx2
import mcp_types
from mcp import Client, StdioServerParameters
from mcp.client._transport import Transport, TransportStreams
from mcp.client.session import MessageHandlerFnT
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from ferrogate import __version__
from ferrogate.config.mcp import McpHttpServer, McpStdioServer

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Listing bounds: pages per list, items per list.
MAX_PAGES = 100
MAX_ITEMS = 10_000
#: Bounds the handshake and each listing request (a call's own limit is its ``timeout_s``).
REQUEST_TIMEOUT_S = 30.0
CLIENT_INFO = mcp_types.Implementation(name="ferrogate", version=__version__)


async def connect(
    stack: contextlib.AsyncExitStack,
    spec: McpHttpServer | McpStdioServer,
    on_end: Callable[[], None],
    on_message: MessageHandlerFnT,
) -> Client:
    """A connected ``Client`` (``mode="auto"``, no response cache), entered on ``stack``: the caller's task must
    exit the stack (anyio's cancel scopes belong to the task that entered them)."""
    transport: Transport
    if isinstance(spec, McpHttpServer):
        http = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers=headers(spec), timeout=httpx2.Timeout(10.0, read=max(300.0, spec.timeout_s + 10.0))
            )
        )
        transport = streamable_http_client(spec.url, http_client=http)
    else:
        params = StdioServerParameters(
            command=spec.command,
            args=list(spec.args),
            env={k: v.get_secret_value() for k, v in spec.env.items()} or None,
            cwd=spec.cwd,
        )
        transport = stdio_client(params)
    client = Client(
        _watched(transport, on_end),
        mode="auto",
        message_handler=on_message,
        read_timeout_seconds=REQUEST_TIMEOUT_S,
        client_info=CLIENT_INFO,
        cache=None,
    )
    await stack.enter_async_context(client)
    return client


Lists = tuple[list[mcp_types.Tool], list[mcp_types.Resource], list[mcp_types.ResourceTemplate], list[mcp_types.Prompt]]


async def list_everything(client: Client, server_id: str) -> Lists:
    """Tools, resources, resource templates and prompts (what the server's capabilities announce), every page."""
    caps = client.server_capabilities
    tools: list[mcp_types.Tool] = []
    resources: list[mcp_types.Resource] = []
    templates: list[mcp_types.ResourceTemplate] = []
    prompts: list[mcp_types.Prompt] = []
    if caps.tools is not None:
        tools = await _pages(server_id, "tools", lambda c: client.list_tools(cursor=c), lambda p: p.tools)
    if caps.resources is not None:
        resources = await _pages(
            server_id, "resources", lambda c: client.list_resources(cursor=c), lambda p: p.resources
        )
        templates = await _pages(
            server_id,
            "resource templates",
            lambda c: client.list_resource_templates(cursor=c),
            lambda p: p.resource_templates,
        )
    if caps.prompts is not None:
        prompts = await _pages(server_id, "prompts", lambda c: client.list_prompts(cursor=c), lambda p: p.prompts)
    return tools, resources, templates, prompts


async def _pages(
    server_id: str, what: str, fetch: Callable[[str | None], Awaitable[Any]], items: Callable[[Any], list[_T]]
) -> list[_T]:
    out: list[_T] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await fetch(cursor)
        out += items(page)
        cursor = page.next_cursor
        if len(out) > MAX_ITEMS:
            logger.warning("MCP server %r lists more than %d %s; the rest are ignored", server_id, MAX_ITEMS, what)
            return out[:MAX_ITEMS]
        if not cursor:
            return out
    logger.warning("MCP server %r lists %s over more than %d pages; the rest are ignored", server_id, what, MAX_PAGES)
    return out


def headers(spec: McpHttpServer) -> dict[str, str]:
    """The headers every request to ``spec`` carries (secret values: never log them).

    Example:
        >>> headers(McpHttpServer(id="s", transport="http", url="http://h", bearer_token="t", headers={"X-K": "v"}))
        {'X-K': 'v', 'Authorization': 'Bearer t'}
    """
    out = {name: value.get_secret_value() for name, value in spec.headers.items()}
    if spec.bearer_token is not None:
        out["Authorization"] = f"Bearer {spec.bearer_token.get_secret_value()}"
    return out


def connection_level(exc: MCPError) -> bool:
    """Whether an MCPError is the transport's (closed, session gone) rather than the server's answer."""
    if exc.code == mcp_types.CONNECTION_CLOSED:
        return True
    return exc.code == mcp_types.INVALID_REQUEST and exc.error.message == "Session terminated"


class _Watched(anyio.abc.ObjectReceiveStream[Any]):
    """A transport's read stream that reports its end (the stdio child exited, the HTTP transport closed)."""

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextlib.asynccontextmanager
async def _watched(inner: Transport, on_end: Callable[[], None]) -> AsyncIterator[TransportStreams]:
    async with inner as (read, write):
        yield _Watched(read, on_end), write
