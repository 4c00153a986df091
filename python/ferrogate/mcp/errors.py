"""The gateway's errors as ``/mcp`` answers them: JSON-RPC errors, or tool results with ``isError``.

The REST front (``/mcp/v1``) answers a :class:`~ferrogate.errors.GatewayError` in OpenAI's error shape, as the
rest of the gateway does. The MCP endpoint speaks JSON-RPC, and the specification separates two kinds of
failure of a ``tools/call``: an error *finding* the tool or in its parameters is a JSON-RPC error; an error *in
the call* is a result with ``isError: true`` whose text the model reads and can act on. So:

========================================  ==================================================================
kind                                      ``tools/call`` answers
========================================  ==================================================================
unknown tool, forbidden tool              JSON-RPC ``-32602`` "Unknown tool: <name>" (a denied tool is never
                                          listed, so it is answered like an unknown one)
invalid arguments (400)                   JSON-RPC ``-32602``; ``data``: ``{"code", "param"}`` naming the field
upstream down (502), timeout (504),       ``isError`` result with a clear text; ``_meta``:
rate limit (429), guardrail block (400)   ``{"ferrogate/error": <code>}``
anything else                             JSON-RPC ``-32603`` with ``data.code``
========================================  ==================================================================

Other methods (``resources/read``, ``prompts/get``) have no ``isError`` result: client faults (4xx) are
``-32602`` and the rest ``-32603``, each with ``data.code``.

Example:
    >>> from ferrogate.errors import ErrorKind, GatewayError
    >>> err = GatewayError(ErrorKind.MCP_UPSTREAM_TIMEOUT, "MCP server 'files' did not answer within 30 s")
    >>> tool_error_result(err)["_meta"]
    {'ferrogate/error': 'mcp_timeout'}
    >>> rpc_error(GatewayError(ErrorKind.INVALID_FIELD, "bad", param="arguments/path"), "files__read")
    (-32602, 'bad', {'code': 'invalid_value', 'param': 'arguments/path'})
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS

from ferrogate.errors import ErrorKind, GatewayError

#: The ``_meta`` key of an ``isError`` result that the gateway (not the tool) produced: the error code.
ERROR_META_KEY: Final = "ferrogate/error"
#: The ``_meta`` key of a listing that names the servers left out because they are unavailable.
UNAVAILABLE_META_KEY: Final = "ferrogate/unavailable"

#: Kinds a ``tools/call`` answers as an ``isError`` result (the call was made, or refused for a reason the model
#: can read: the upstream is down or slow, too many calls, the guardrails refused the arguments).
RESULT_KINDS: Final = frozenset(
    {
        ErrorKind.MCP_UPSTREAM_UNAVAILABLE,
        ErrorKind.MCP_UPSTREAM_TIMEOUT,
        ErrorKind.TOOL_CALLS_RATE_LIMITED,
        ErrorKind.CONTENT_POLICY,
    }
)
#: Kinds a ``tools/call`` answers as "Unknown tool" (never say a tool exists to a key that may not use it).
UNKNOWN_KINDS: Final = frozenset(
    {ErrorKind.MCP_TOOL_NOT_FOUND, ErrorKind.MCP_SERVER_NOT_FOUND, ErrorKind.TOOL_FORBIDDEN}
)

RpcError = tuple[int, str, Any]


class RpcFailure(Exception):
    """A JSON-RPC error to answer: ``code``, ``message``, ``data``; ``request_id`` when it is known before the
    request is framed; ``headers`` for the HTTP response (``Retry-After``...).

    Example:
        >>> RpcFailure(-32601, "Method not found: x").code
        -32601
    """

    def __init__(
        self,
        code: int,
        message: str,
        data: Any = None,
        *,
        request_id: str | int | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data
        self.request_id = request_id
        self.headers = headers or []

    @classmethod
    def of(cls, err: GatewayError, tool: str | None = None) -> RpcFailure:
        """The failure answering ``err`` (:func:`rpc_error`), with its headers.

        Example:
            >>> RpcFailure.of(GatewayError(ErrorKind.TOOL_FORBIDDEN, "no"), "files__rm").message
            'Unknown tool: files__rm'
        """
        code, message, data = rpc_error(err, tool)
        return cls(code, message, data, headers=err.headers)


def unknown_tool(name: str) -> RpcError:
    """The JSON-RPC error for a tool the caller cannot see.

    Example:
        >>> unknown_tool("files__rm")
        (-32602, 'Unknown tool: files__rm', None)
    """
    return INVALID_PARAMS, f"Unknown tool: {name}", None


def rpc_error(err: GatewayError, tool: str | None = None) -> RpcError:
    """``(code, message, data)`` of the JSON-RPC error for ``err``; ``tool``: the namespaced tool of a
    ``tools/call`` (unknown and forbidden tools are answered alike), ``None`` for other methods.

    Example:
        >>> rpc_error(GatewayError(ErrorKind.INTERNAL, "internal error (request id r1)"))
        (-32603, 'internal error (request id r1)', {'code': 'internal_error'})
    """
    if tool is not None and err.kind in UNKNOWN_KINDS:
        return unknown_tool(tool)
    data: dict[str, Any] = {"code": err.wire_code}
    if err.param is not None:
        data["param"] = err.param
    code = INVALID_PARAMS if 400 <= err.status < 500 else INTERNAL_ERROR
    return code, err.message, data


def tool_error_result(err: GatewayError) -> dict[str, Any]:
    """The ``CallToolResult`` (JSON) with ``isError: true`` that tells the model why the call failed.

    Example:
        >>> tool_error_result(GatewayError(ErrorKind.TOOL_CALLS_RATE_LIMITED, "Too many tool calls."))["content"]
        [{'type': 'text', 'text': 'Too many tool calls.'}]
    """
    return {
        "content": [{"type": "text", "text": err.message}],
        "isError": True,
        "_meta": {ERROR_META_KEY: err.wire_code},
    }


def answers_as_result(err: GatewayError) -> bool:
    """Whether a ``tools/call`` answers ``err`` with an ``isError`` result (else a JSON-RPC error).

    Example:
        >>> answers_as_result(GatewayError(ErrorKind.MCP_UPSTREAM_UNAVAILABLE, "down"))
        True
    """
    return err.kind in RESULT_KINDS


def error_body(request_id: str | int | None, code: int, message: str, data: Any = None) -> bytes:
    """One JSON-RPC error response, serialised (``id`` is ``null`` when the request's could not be read).

    Example:
        >>> error_body(None, -32700, "Parse error")
        b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}'
    """
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error})


def result_body(request_id: str | int, result: dict[str, Any]) -> bytes:
    """One JSON-RPC result response, serialised.

    Example:
        >>> result_body(1, {})
        b'{"jsonrpc":"2.0","id":1,"result":{}}'
    """
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


# ---- the faults of an upstream, as GatewayErrors (both fronts) ---------------------------------------------
def unavailable(server: str, exc: BaseException) -> GatewayError:
    """502 ``mcp_server_unavailable`` naming the server and why (the upstream's message: never credentials).

    Example:
        >>> unavailable("files", ConnectionError("connection refused")).message
        "MCP server 'files' is unavailable: connection refused"
    """
    reason = str(exc) or type(exc).__name__
    return GatewayError(ErrorKind.MCP_UPSTREAM_UNAVAILABLE, f"MCP server '{server}' is unavailable: {reason}")


def timed_out(server: str, timeout_s: float) -> GatewayError:
    """504 ``mcp_timeout``: the server did not answer within its ``timeout_s`` (the call was cancelled).

    Example:
        >>> timed_out("files", 30.0).status
        504
    """
    return GatewayError(
        ErrorKind.MCP_UPSTREAM_TIMEOUT,
        f"MCP server '{server}' did not answer within {timeout_s:g} s; the call was cancelled.",
    )


def upstream_refusal(server: str, code: int, message: str) -> GatewayError:
    """The upstream's JSON-RPC error to a read or a prompt: invalid params (an unknown resource or prompt) is a
    404, anything else a 502 (the server failed).

    Example:
        >>> upstream_refusal("files", -32602, "Unknown resource: x").status
        404
    """
    kind = ErrorKind.NOT_FOUND if code == INVALID_PARAMS else ErrorKind.UPSTREAM_PROTOCOL
    return GatewayError(kind, f"MCP server '{server}': {message}")
