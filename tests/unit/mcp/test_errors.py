"""GatewayError -> what /mcp answers: JSON-RPC errors or isError results, and the new error kinds' rows."""

from __future__ import annotations

import orjson
import pytest

from ferrogate.errors import KINDS, ErrorKind, GatewayError
from ferrogate.mcp.errors import (
    ERROR_META_KEY,
    RpcFailure,
    answers_as_result,
    error_body,
    result_body,
    rpc_error,
    tool_error_result,
)


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        (ErrorKind.TOOL_FORBIDDEN, 403, "tool_not_allowed"),
        (ErrorKind.MCP_SERVER_NOT_FOUND, 404, "mcp_server_not_found"),
        (ErrorKind.MCP_TOOL_NOT_FOUND, 404, "mcp_tool_not_found"),
        (ErrorKind.MCP_UPSTREAM_UNAVAILABLE, 502, "mcp_server_unavailable"),
        (ErrorKind.MCP_UPSTREAM_TIMEOUT, 504, "mcp_timeout"),
        (ErrorKind.TOOL_CALLS_RATE_LIMITED, 429, "rate_limit_exceeded"),
    ],
)
def test_mcp_kinds_on_the_wire(kind: ErrorKind, status: int, code: str) -> None:
    err = GatewayError(kind, "x")
    assert (err.status, err.wire_code) == (status, code)
    assert KINDS[kind].retryable == (status in (429, 502, 504))


@pytest.mark.parametrize(
    "kind",
    [
        ErrorKind.MCP_UPSTREAM_UNAVAILABLE,
        ErrorKind.MCP_UPSTREAM_TIMEOUT,
        ErrorKind.TOOL_CALLS_RATE_LIMITED,
        ErrorKind.CONTENT_POLICY,
    ],
)
def test_call_faults_the_model_can_read_are_results(kind: ErrorKind) -> None:
    err = GatewayError(kind, f"because {kind.value}")
    assert answers_as_result(err)
    result = tool_error_result(err)
    assert result == {
        "content": [{"type": "text", "text": f"because {kind.value}"}],
        "isError": True,
        "_meta": {ERROR_META_KEY: err.wire_code},
    }


@pytest.mark.parametrize(
    "kind", [ErrorKind.TOOL_FORBIDDEN, ErrorKind.MCP_TOOL_NOT_FOUND, ErrorKind.MCP_SERVER_NOT_FOUND]
)
def test_denied_and_unknown_tools_look_the_same(kind: ErrorKind) -> None:
    err = GatewayError(kind, "The key may not use the MCP tool 'files__rm'.")
    assert not answers_as_result(err)
    assert rpc_error(err, "files__rm") == (-32602, "Unknown tool: files__rm", None)
    # outside tools/call (no tool name) the kind's own message is kept
    assert rpc_error(err)[0] == -32602 and rpc_error(err)[1] == err.message


def test_invalid_arguments_name_the_field() -> None:
    err = GatewayError(ErrorKind.INVALID_FIELD, "'arguments/path' is required", param="arguments/path")
    assert rpc_error(err, "files__read") == (
        -32602,
        "'arguments/path' is required",
        {"code": "invalid_value", "param": "arguments/path"},
    )


@pytest.mark.parametrize(
    ("kind", "code"),
    [(ErrorKind.INTERNAL, -32603), (ErrorKind.STORE_UNAVAILABLE, -32603), (ErrorKind.NOT_FOUND, -32602)],
)
def test_other_kinds(kind: ErrorKind, code: int) -> None:
    err = GatewayError(kind, "m", headers=[("retry-after", "5")])
    assert rpc_error(err)[0] == code
    failure = RpcFailure.of(err)
    assert (failure.code, failure.data, failure.headers) == (code, {"code": err.wire_code}, [("retry-after", "5")])


def test_bodies() -> None:
    assert orjson.loads(error_body("a", -32601, "Method not found: x", {"k": 1})) == {
        "jsonrpc": "2.0",
        "id": "a",
        "error": {"code": -32601, "message": "Method not found: x", "data": {"k": 1}},
    }
    assert orjson.loads(error_body(None, -32700, "Parse error"))["id"] is None  # kept: JSON-RPC needs id null
    assert orjson.loads(result_body(7, {"tools": []})) == {"jsonrpc": "2.0", "id": 7, "result": {"tools": []}}
