"""Error texts of upstream MCP servers, safe to show and log: credentials never appear in them.

Example:
    >>> from ferrogate.config.mcp import McpHttpServer
    >>> spec = McpHttpServer(id="s", transport="http", url="http://h/mcp", bearer_token="tok-123456")
    >>> scrubber(spec)("401: bad token tok-123456 for http://u:pw@h/mcp")
    '401: bad token [redacted] for http://[redacted]@h/mcp'
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from ferrogate.config.mcp import McpHttpServer, McpStdioServer

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")
#: An error text is cut to this many characters.
MAX_ERROR_CHARS = 300


def scrubber(spec: McpHttpServer | McpStdioServer) -> Callable[[str], str]:
    """A function that removes ``spec``'s secret values (and any URL userinfo) from a text."""
    if isinstance(spec, McpHttpServer):
        values = [v.get_secret_value() for v in spec.headers.values()]
        if spec.bearer_token is not None:
            values.append(spec.bearer_token.get_secret_value())
    else:
        values = [v.get_secret_value() for v in spec.env.values()]
    secrets = sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)

    def scrub(text: str) -> str:
        for value in secrets:
            text = text.replace(value, "[redacted]")
        return _USERINFO.sub(r"\1[redacted]@", text)

    return scrub


def describe(exc: BaseException, scrub: Callable[[str], str]) -> str:
    """A one-line text for ``exc`` (the first real error of an exception group), scrubbed and bounded.

    Example:
        >>> describe(ExceptionGroup("g", [ConnectionRefusedError(111, "Connection refused")]), str)
        'ConnectionRefusedError: [Errno 111] Connection refused'
    """
    exc = _leaf(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    line = text if name.startswith("_") else (f"{name}: {text}" if text else name)
    line = scrub(line)
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not _is_cancel(e)] or list(exc.exceptions)
        exc = inner[0]
    return exc


def _is_cancel(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError)
