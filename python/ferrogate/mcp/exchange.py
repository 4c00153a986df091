"""Tool calls to a 2026-07-28 HTTP server as single exchanges over the gateway's pooled HTTP client.

At 2026-07-28 a request is one self-contained POST (the envelope in ``params._meta``; ``MCP-Protocol-Version``,
``Mcp-Method``, ``Mcp-Name`` and ``Mcp-Param-*`` headers) answered by one JSON-RPC response (JSON, or an event
stream whose last message is the response); closing the exchange cancels it. So the hot call needs no session:
:class:`Exchange` sends it with pyreqwest (the pool the model providers use, TCP_NODELAY on) and hands back the
result JSON as it came, without the SDK client's per-call machinery (its writer task, memory streams, a pydantic
round trip and a Python re-validation of the structured result against the tool's output schema), which
measured 2.3 ms more per call than the exchange itself on this machine (BENCHMARKS.md, "MCP"). Connecting,
``server/discover``, listing and list-changed notifications stay with the SDK's client (:mod:`.upstream`);
2025-11-25 servers and stdio keep the SDK's session for calls too.

Example:
    >>> envelope_body(7, "echo", {"text": "hi"})[:40]
    b'{"jsonrpc":"2.0","id":7,"method":"tools/'
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from itertools import count
from typing import Any, Final

import orjson
from mcp.shared.inbound import encode_header_value, find_invalid_x_mcp_header, mcp_param_headers, x_mcp_header_map
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError, RequestTimeoutError

from ferrogate import __version__
from ferrogate.config.mcp import McpHttpServer
from ferrogate.mcp.connect import headers as static_headers

#: The protocol revision of the exchange.
VERSION: Final = "2026-07-28"
_META: Final = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "ferrogate", "version": __version__},
}
#: An answer larger than this is refused (a tool result is text for a model, not a download).
MAX_ANSWER_BYTES: Final = 32 * 1024 * 1024


class ExchangeFailed(Exception):
    """The server could not be reached, broke the exchange off (``transport``), or answered with something that
    is no answer."""

    def __init__(self, message: str, *, transport: bool = False) -> None:
        super().__init__(message)
        self.transport = transport


class ExchangeRefused(Exception):
    """The server answered with a JSON-RPC error (``code``, ``message``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def envelope_body(request_id: int, name: str, arguments: Mapping[str, Any]) -> bytes:
    """The JSON-RPC ``tools/call`` request with its 2026-07-28 envelope."""
    params = {"name": name, "arguments": arguments, "_meta": _META}
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})


class Exchange:
    """Single-exchange ``tools/call`` requests to one 2026-07-28 HTTP server (one pool per worker and server)."""

    __slots__ = ("_client", "_headers", "_ids", "_param_maps", "spec")

    def __init__(self, spec: McpHttpServer) -> None:
        self.spec = spec
        self._headers = {
            **static_headers(spec),
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": VERSION,
            "mcp-method": "tools/call",
        }
        self._client: Client | None = None
        self._ids = count(1)
        self._param_maps: dict[str, dict[tuple[str, ...], str]] = {}

    def tools_listed(self, input_schemas: Mapping[str, Any]) -> None:
        """The tools' input schemas changed: their ``x-mcp-header`` annotations (``Mcp-Param-*`` headers)."""
        maps: dict[str, dict[tuple[str, ...], str]] = {}
        for name, schema in input_schemas.items():
            if find_invalid_x_mcp_header(schema) is not None:  # an annotation the SDK refuses: no param headers
                continue
            header_map = x_mcp_header_map(schema)
            if header_map:
                maps[name] = header_map
        self._param_maps = maps

    async def call(self, name: str, arguments: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
        """One ``tools/call``: the result object as the server sent it.

        Raises:
            ExchangeFailed: unreachable, broken off, an HTTP error without a JSON-RPC error, not an answer.
            ExchangeRefused: a JSON-RPC error answer.
            TimeoutError: past ``timeout_s`` (the exchange is closed: at 2026-07-28 that cancels the call).
        """
        request_id = next(self._ids)
        builder = self._get_client().post(self.spec.url).body_bytes(envelope_body(request_id, name, arguments))
        builder = builder.header("mcp-name", encode_header_value(name))
        header_map = self._param_maps.get(name)
        if header_map is not None:
            for key, value in mcp_param_headers(header_map, arguments).items():
                builder = builder.header(key, value)
        # The deadline is the request's own (reqwest drops the connection, which at 2026-07-28 cancels the call:
        # cancelling the awaiting task alone leaves the request running in the client's runtime until the read
        # timeout); the asyncio one is a backstop.
        builder = builder.timeout(timedelta(seconds=timeout_s))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with asyncio.timeout(timeout_s + 1.0):
            try:
                response = await builder.build().send()
                status = response.status
                content_type = response.get_header("content-type") or ""
                data = bytes(await response.bytes())
            except RequestTimeoutError as exc:
                # reqwest names the request's deadline a connect timeout when no header came yet: told by the clock
                if loop.time() >= deadline - 0.05:
                    raise TimeoutError from None
                raise ExchangeFailed(f"{type(exc).__name__}: {str(exc)[:300]}", transport=True) from None
            except PyreqwestError as exc:
                raise ExchangeFailed(f"{type(exc).__name__}: {str(exc)[:300]}", transport=True) from None
        if len(data) > MAX_ANSWER_BYTES:
            raise ExchangeFailed(f"answer of {len(data)} bytes (at most {MAX_ANSWER_BYTES})")
        message = _response(data, content_type, request_id)
        if message is None:
            raise ExchangeFailed(f"HTTP {status} without a JSON-RPC answer ({content_type or 'no content type'})")
        error = message.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            raise ExchangeRefused(code if isinstance(code, int) else -32603, str(error.get("message", ""))[:1000])
        result = message.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("content", []), list):
            raise ExchangeFailed("the answer's result is not a CallToolResult")
        return result

    def _get_client(self) -> Client:
        client = self._client
        if client is None:
            read = timedelta(seconds=self.spec.timeout_s + 10.0)
            client = (
                ClientBuilder()
                .tcp_nodelay(True)
                .follow_redirects(False)
                .user_agent(f"ferrogate/{__version__}")
                .default_headers(self._headers)
                .connect_timeout(timedelta(seconds=10.0))
                .read_timeout(read)
                .pool_idle_timeout(timedelta(seconds=60))
                .build()
            )
            self._client = client
        return client

    async def close(self) -> None:
        """Close the pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def _response(data: bytes, content_type: str, request_id: int) -> dict[str, Any] | None:
    """The JSON-RPC response of ``request_id`` in a JSON body or an event stream (notifications before it are
    skipped), or ``None``.

    Example:
        >>> _response(b'event: message\\ndata: {"jsonrpc":"2.0","id":3,"result":{}}\\n\\n', "text/event-stream", 3)
        {'jsonrpc': '2.0', 'id': 3, 'result': {}}
    """
    if content_type.startswith("text/event-stream"):
        found: dict[str, Any] | None = None
        for event in data.replace(b"\r\n", b"\n").split(b"\n\n"):
            payload = b"\n".join(line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
            if payload:
                message = _loads(payload)
                if message is not None and message.get("id") == request_id:
                    found = message
        return found
    message = _loads(data)
    return message if message is not None and ("result" in message or "error" in message) else None


def _loads(data: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
