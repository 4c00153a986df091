"""The /mcp endpoint's pure parts: era detection, version negotiation, JSON-RPC framing, each era's envelope
(checked against the SDK's own per-version result schemas)."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_types import SERVER_INFO_META_KEY
from mcp_types.methods import validate_server_result

from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.mcp.endpoint import LEGACY_CAPABILITIES, SERVER_INFO, envelope, frame, is_modern, negotiate
from ferrogate.mcp.errors import RpcFailure, tool_error_result
from ferrogate.mcp.methods import MODERN_CAPABILITIES, header_map
from ferrogate.mcp.rest import ModelDumps, parse_path

MODERN = "2026-07-28"
LEGACY = "2025-11-25"


@pytest.mark.parametrize(
    ("header", "modern"),
    [(None, False), ("2024-11-05", False), ("2025-06-18", False), (LEGACY, False), (MODERN, True), ("x", True)],
)
def test_era_detection(header: str | None, modern: bool) -> None:
    # an unknown version takes the modern path, whose classifier answers -32022 naming the supported ones
    assert is_modern(header) is modern


def test_negotiate() -> None:
    assert [negotiate(v) for v in ("2024-11-05", LEGACY, MODERN, 3, None)] == [
        "2024-11-05",
        LEGACY,
        LEGACY,
        LEGACY,
        LEGACY,
    ]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, (1, "tools/list", {})),
        ({"jsonrpc": "2.0", "id": "a", "method": "ping", "params": None}, ("a", "ping", {})),
        ({"jsonrpc": "2.0", "method": "notifications/initialized"}, (None, "notifications/initialized", {})),
        ({"jsonrpc": "2.0", "id": 0, "method": "x", "params": {"a": 1}}, (0, "x", {"a": 1})),
    ],
)
def test_frame_accepts(message: Any, expected: Any) -> None:
    assert frame(message) == expected


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], -32600),  # batches are not part of the protocol
        ({"id": 1, "method": "ping"}, -32600),
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "result": {}}, -32600),  # a response: the gateway sends no requests
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, -32600),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, -32600),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}, -32602),
        ("ping", -32600),
    ],
)
def test_frame_refuses(message: Any, code: int) -> None:
    failure = frame(message)
    assert isinstance(failure, RpcFailure)
    assert failure.code == code


TOOL = {"name": "files__read", "description": "Read a file.", "inputSchema": {"type": "object"}}
RESULTS: list[tuple[str, dict[str, Any]]] = [
    ("tools/list", {"tools": [TOOL], "_meta": {"ferrogate/unavailable": ["down"]}}),
    ("tools/call", {"content": [{"type": "text", "text": "hi"}], "isError": False, "resultType": "complete"}),
    ("tools/call", tool_error_result(GatewayError(ErrorKind.MCP_UPSTREAM_TIMEOUT, "slow"))),
    ("resources/list", {"resources": [{"uri": "info://x/readme", "name": "readme"}]}),
    ("resources/templates/list", {"resourceTemplates": []}),
    ("resources/read", {"contents": [{"uri": "info://x/readme", "text": "hello"}], "resultType": "complete"}),
    ("prompts/list", {"prompts": [{"name": "x__greet", "arguments": [{"name": "name", "required": True}]}]}),
    ("prompts/get", {"messages": [{"role": "user", "content": {"type": "text", "text": "Hi"}}]}),
    ("ping", {}),
]


@pytest.mark.parametrize(("method", "result"), [r for r in RESULTS if r[0] != "ping"])  # no ping at 2026-07-28
def test_modern_envelope_is_a_valid_2026_result(method: str, result: dict[str, Any]) -> None:
    out = envelope(method, dict(result), True)
    validate_server_result(method, MODERN, out)  # raises on a missing resultType, ttlMs, cacheScope...
    assert out["resultType"] == "complete"
    assert out["_meta"][SERVER_INFO_META_KEY] == SERVER_INFO
    if method.endswith("/list") or method == "resources/read":
        assert (out["ttlMs"], out["cacheScope"]) == (0, "private")  # each key's own view: never shared
    else:
        assert "ttlMs" not in out
    if "ferrogate/unavailable" in result.get("_meta", {}):
        assert out["_meta"]["ferrogate/unavailable"] == ["down"]
    assert SERVER_INFO_META_KEY not in result.get("_meta", {})  # the caller's dict is not changed


@pytest.mark.parametrize(("method", "result"), RESULTS)
def test_legacy_envelope_is_a_valid_2025_result(method: str, result: dict[str, Any]) -> None:
    out = envelope(method, dict(result), False)
    validate_server_result(method, LEGACY, out)
    assert "resultType" not in out and "ttlMs" not in out and "cacheScope" not in out
    assert SERVER_INFO_META_KEY not in out.get("_meta", {})


def test_handshake_and_discover_results() -> None:
    initialize = {"protocolVersion": LEGACY, "capabilities": LEGACY_CAPABILITIES, "serverInfo": SERVER_INFO}
    validate_server_result("initialize", LEGACY, initialize)
    discover = envelope("server/discover", {"supportedVersions": [MODERN], "capabilities": MODERN_CAPABILITIES}, True)
    validate_server_result("server/discover", MODERN, discover)
    assert discover["supportedVersions"] == [MODERN]


def test_model_dumps_are_built_once_per_object() -> None:
    import mcp_types

    dumps = ModelDumps()
    tool = mcp_types.Tool(name="read", input_schema={"type": "object"})
    first = dumps.get(tool)
    assert first == {"name": "read", "inputSchema": {"type": "object"}}
    assert dumps.get(tool) is first
    renamed = dumps.get(tool, "files__read")
    assert renamed["name"] == "files__read" and first["name"] == "read"
    other = mcp_types.Tool(name="read", input_schema={"type": "object"})
    assert dumps.get(other) is not first  # a new object (the server's lists changed): dumped again


def test_header_map() -> None:
    assert header_map({"mcp-param-region": "eu", "mcp-name": "x", "accept": "*/*"}) == {"mcp-param-region": "eu"}


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/mcp/v1/servers", ("servers", None, None)),
        ("/mcp/v1/servers/files/tools", ("tools", "files", None)),
        ("/mcp/v1/servers/files/tools/read_file:call", ("call", "files", "read_file")),
        ("/mcp/v1/servers/files/tools/a%2Eb:call", ("call", "files", "a.b")),
        ("/mcp/v1/servers/files/tools/:call", None),
        ("/mcp/v1/servers//tools", None),
        ("/mcp/v1/servers/files/tools/x", None),
        ("/mcp/v1/servers/", None),
        ("/mcp/v2/servers", None),
    ],
)
def test_rest_paths(path: str, route: Any) -> None:
    assert parse_path(path) == route
