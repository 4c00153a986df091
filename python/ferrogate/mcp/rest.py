"""``/mcp/v1/*``: the MCP tool gateway as plain REST for any HTTP client, with virtual-key auth.

=======================================================  ==========================================================
route                                                    answer
=======================================================  ==========================================================
``GET /mcp/v1/servers``                                  the servers the key may use at least one tool of (or is
                                                         granted whole): id, title, state, protocol version, the
                                                         number of tools it may use, the server's error
``GET /mcp/v1/servers/{id}/tools``                       the tools of that server the key may use (upstream names);
                                                         404 ``mcp_server_not_found`` (unknown, or no grant), 502
                                                         while the server is unavailable
``POST /mcp/v1/servers/{id}/tools/{name}:call``          body ``{"arguments": {...}}``: the ``CallToolResult``
                                                         (``isError`` true for the tool's errors); 404
                                                         ``mcp_tool_not_found``, 403 ``tool_not_allowed``, 400 naming
                                                         the field, 429, 502, 504
=======================================================  ==========================================================

Errors are OpenAI-shaped (``{"error": {"message", "type", "param", "code"}}``), as everywhere in the gateway.

Example:
    >>> parse_path("/mcp/v1/servers/files/tools/read_file:call")
    ('call', 'files', 'read_file')
    >>> parse_path("/mcp/v1/servers"), parse_path("/mcp/v1/nothing")
    (('servers', None, None), None)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

import orjson
from granian.rsgi import HTTPProtocol, Scope

from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.mcp.calls import ToolCalls
from ferrogate.pipeline.chain import write_error
from ferrogate.pipeline.phases import read_body

if TYPE_CHECKING:
    from collections.abc import Callable

    from ferrogate.auth.identity import Identity
    from ferrogate.mcp.upstream import Upstream

log = logging.getLogger("ferrogate.mcp")

PREFIX: Final = "/mcp/v1/"
_JSON = ("content-type", "application/json")
_METHODS = {"servers": "GET", "tools": "GET", "call": "POST"}
#: Tool JSON kept at most (one per tool object of the catalog).
_DUMPS_MAX: Final = 50_000


class ModelDumps:
    """The JSON of SDK model objects (tools, resources, prompts), built once per object (the catalog replaces
    its objects when a server's lists change), optionally under another ``name``."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[tuple[int, str | None], tuple[Any, dict[str, Any]]] = {}

    def get(self, obj: Any, name: str | None = None) -> dict[str, Any]:
        """``obj`` dumped ``by_alias``, ``exclude_none`` (its ``name`` replaced when given); do not mutate it."""
        key = (id(obj), name)
        found = self._cache.get(key)
        if found is not None and found[0] is obj:
            return found[1]
        dumped: dict[str, Any] = obj.model_dump(by_alias=True, exclude_none=True, mode="json")
        if name is not None:
            dumped["name"] = name
        if len(self._cache) >= _DUMPS_MAX:
            self._cache.clear()
        self._cache[key] = (obj, dumped)
        return dumped


def parse_path(path: str) -> tuple[str, str | None, str | None] | None:
    """``(route, server id, tool name)`` of a ``/mcp/v1/`` path, or ``None`` when it names no route."""
    if not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX) :].split("/")
    if parts == ["servers"]:
        return "servers", None, None
    if len(parts) == 3 and parts[0] == "servers" and parts[2] == "tools" and parts[1]:
        return "tools", unquote(parts[1]), None
    if len(parts) == 4 and parts[0] == "servers" and parts[2] == "tools" and parts[3].endswith(":call"):
        name = unquote(parts[3][: -len(":call")])
        if parts[1] and name:
            return "call", unquote(parts[1]), name
    return None


class McpRest:
    """The RSGI handler of every path under ``/mcp/v1/`` (``Gateway`` dispatches the prefix here)."""

    __slots__ = ("_dumps", "calls")

    def __init__(self, calls: ToolCalls) -> None:
        self.calls = calls
        self._dumps = ModelDumps()  # each tool's JSON, built once per tool object

    async def __call__(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """Serve one request; every failure is an OpenAI-shaped error."""
        try:
            status, body, extra = await self._serve(scope, proto, rid)
        except GatewayError as err:
            write_error(proto, err, headers)
            return
        except Exception:
            log.exception("MCP REST request %s failed", rid)
            write_error(proto, GatewayError(ErrorKind.INTERNAL, f"internal error (request id {rid})"), headers)
            return
        proto.response_bytes(status, [_JSON, *headers, *extra], body)

    async def _serve(self, scope: Scope, proto: HTTPProtocol, rid: str) -> tuple[int, bytes, list[tuple[str, str]]]:
        deps = self.calls.deps
        route = parse_path(scope.path) if deps.settings.enabled else None
        if route is None:
            raise GatewayError(ErrorKind.NOT_FOUND, f"no route for {scope.method} {scope.path}")
        kind, server_id, name = route
        if scope.method != _METHODS[kind]:
            allowed = _METHODS[kind]
            raise GatewayError(
                ErrorKind.METHOD_NOT_ALLOWED,
                f"method {scope.method} is not allowed on {scope.path} (allowed: {allowed})",
                headers=[("allow", allowed)],
            )
        identity = await deps.auth.identify(scope)
        allowed_tool = deps.policies.allows(identity.team_id, identity.key_id)
        if kind == "servers":
            return 200, orjson.dumps({"object": "list", "data": self._servers(allowed_tool)}), []
        assert server_id is not None
        if kind == "tools":
            return 200, orjson.dumps(self._tools(server_id, allowed_tool)), []
        assert name is not None
        body = await read_body(scope, proto, deps.settings.max_argument_bytes + 4096)
        return await self._call(identity, server_id, name, body, rid)

    def _servers(self, allowed: Callable[[str, str], bool]) -> list[dict[str, Any]]:
        catalog = self.calls.deps.catalog
        out: list[dict[str, Any]] = []
        for upstream in catalog.servers():
            sid = upstream.id
            count = sum(1 for name, _ in catalog.tools(sid) if allowed(sid, name))
            if count or allowed(sid, "*"):
                out.append(
                    {
                        "id": sid,
                        "title": upstream.spec.title,
                        "state": upstream.state,
                        "protocol_version": upstream.protocol_version,
                        "tools": count,
                        "error": None if upstream.state == "ready" else upstream.last_error,
                    }
                )
        return out

    def _tools(self, server_id: str, allowed: Callable[[str, str], bool]) -> dict[str, Any]:
        upstream = self._granted(server_id, allowed)
        if upstream.state != "ready":
            raise _unavailable(upstream)
        data = [
            self._dumps.get(tool) for name, tool in self.calls.deps.catalog.tools(server_id) if allowed(server_id, name)
        ]
        return {"object": "list", "server": server_id, "data": data}

    async def _call(
        self, identity: Identity, server_id: str, name: str, body: bytes, rid: str
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        catalog = self.calls.deps.catalog
        upstream = catalog.get(server_id)
        if upstream is None:
            raise GatewayError(ErrorKind.MCP_SERVER_NOT_FOUND, f"There is no MCP server '{server_id}'.")
        try:
            payload = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise GatewayError(ErrorKind.INVALID_JSON, f"the request body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise GatewayError(ErrorKind.INVALID_FIELD, "the body must be a JSON object", param="body")
        arguments = payload.get("arguments", {})
        found = catalog.resolve_tool(f"{server_id}__{name}")
        if found is None:
            if upstream.state != "ready":
                raise _unavailable(upstream)
            raise GatewayError(
                ErrorKind.MCP_TOOL_NOT_FOUND, f"MCP server '{server_id}' has no tool '{name}'.", param="name"
            )
        upstream, tool = found
        outcome = await self.calls.call(identity, upstream, tool, arguments, request_id=rid, front="rest")
        return 200, orjson.dumps(outcome.result), outcome.headers

    def _granted(self, server_id: str, allowed: Callable[[str, str], bool]) -> Upstream:
        """The server when the key may use at least one of its tools (or all), else 404 (nothing told)."""
        catalog = self.calls.deps.catalog
        upstream = catalog.get(server_id)
        if upstream is not None and (
            allowed(server_id, "*") or any(allowed(server_id, n) for n, _ in catalog.tools(server_id))
        ):
            return upstream
        raise GatewayError(ErrorKind.MCP_SERVER_NOT_FOUND, f"There is no MCP server '{server_id}' for this key.")


def _unavailable(upstream: Upstream) -> GatewayError:
    reason = upstream.last_error or f"it is {upstream.state}"
    return GatewayError(ErrorKind.MCP_UPSTREAM_UNAVAILABLE, f"MCP server '{upstream.id}' is unavailable: {reason}")
