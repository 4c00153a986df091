"""The JSON-RPC methods of ``/mcp``, the same for both protocol generations (the endpoint adds each era's
envelope): ``ping`` (2025-11-25 only), ``server/discover`` (2026-07-28 only), ``tools/list``, ``tools/call``,
``resources/list``, ``resources/templates/list``, ``resources/read``, ``prompts/list``, ``prompts/get``.

What a key sees: the tools its policy allows (``Catalog.listing``: pre-serialised, memoised per policy), and the
resources and prompts of the servers it is *granted*: servers where it may use at least one tool, or all of them
(a ``server/*``-style grant). A listing names, in ``_meta["ferrogate/unavailable"]``, the granted servers that are
not ready: one failing upstream never breaks the list. Anything the key may not see is answered as unknown.

Example:
    >>> sorted(METHODS)[:3]
    ['ping', 'prompts/get', 'prompts/list']
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from mcp.shared.inbound import find_invalid_x_mcp_header, validate_mcp_param_headers, x_mcp_header_map
from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate
from mcp_types.jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ferrogate.errors import GatewayError
from ferrogate.mcp.calls import ToolCalls
from ferrogate.mcp.errors import (
    UNAVAILABLE_META_KEY,
    RpcFailure,
    answers_as_result,
    tool_error_result,
    unavailable,
    unknown_tool,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from granian.rsgi import Headers

    from ferrogate.auth.identity import Identity
    from ferrogate.mcp.upstream import Upstream

log = logging.getLogger("ferrogate.mcp")

METHODS: Final = frozenset(
    {
        "ping",
        "server/discover",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "prompts/list",
        "prompts/get",
    }
)
#: Capabilities at 2026-07-28 (no list-changed notifications: the lists are each key's view).
MODERN_CAPABILITIES: Final[dict[str, dict[str, Any]]] = {"tools": {}, "resources": {}, "prompts": {}}
#: Methods of one era: ``server/discover`` is 2026-07-28's, ``ping`` left the protocol with it.
_ERA_BOUND: Final = frozenset({"server/discover", "ping"})
_PARAM_PREFIX: Final = "mcp-param-"
_CACHE_MAX: Final = 50_000  # memo entries at most (one per tool definition)
_NOT_LISTED: Final = ("connecting", "unavailable")  # a disabled server is not "unavailable": it is switched off


class Methods:
    """Answers each method for an identity: a result dict, or :class:`RpcFailure`."""

    __slots__ = ("_headers", "_templates", "calls")

    def __init__(self, calls: ToolCalls) -> None:
        self.calls = calls
        self._templates: dict[str, UriTemplate | None] = {}
        self._headers: dict[tuple[str, str], tuple[Any, bool]] = {}  # tool -> (schema, declares Mcp-Param-*)

    async def dispatch(
        self, identity: Identity, method: str, params: dict[str, Any], rid: str, *, modern: bool,
        headers: Headers | None,
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:  # fmt: skip
        """The result of ``method`` and extra HTTP headers.

        Raises:
            RpcFailure: an unknown method, bad params, an unknown (or not granted) tool, resource or prompt, a
                refusal or fault of a read or prompt.
        """
        if method not in METHODS or (method in _ERA_BOUND and (method == "server/discover") is not modern):
            raise RpcFailure(METHOD_NOT_FOUND, f"Method not found: {method}")
        deps = self.calls.deps
        allowed = deps.policies.allows(identity.team_id, identity.key_id)
        if method == "tools/call":
            return await self._call(identity, params, rid, allowed, headers)
        if method == "tools/list":
            result: dict[str, Any] = {"tools": deps.catalog.listing(allowed)}
            self._unavailable(result, allowed)
            return result, []
        if method == "ping":
            return {}, []
        if method == "server/discover":
            return {"supportedVersions": list(MODERN_PROTOCOL_VERSIONS), "capabilities": MODERN_CAPABILITIES}, []
        if method == "resources/read":
            return await self._read(identity, params, rid, allowed), []
        if method == "prompts/get":
            return await self._prompt(identity, params, rid, allowed), []
        return self._listing(method, allowed), []

    # ---- tools ---------------------------------------------------------------------------------------------
    async def _call(
        self, identity: Identity, params: dict[str, Any], rid: str, allowed: Callable[[str, str], bool],
        headers: Headers | None,
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:  # fmt: skip
        name = params.get("name")
        if not isinstance(name, str):
            raise RpcFailure(INVALID_PARAMS, "params.name must be the tool's name", {"param": "name"})
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        catalog = self.calls.deps.catalog
        found = catalog.resolve_tool(name)
        if found is None:
            server_id = name.partition("__")[0]
            upstream = catalog.get(server_id)
            if upstream is not None and upstream.state in _NOT_LISTED and self.granted(upstream.id, allowed):
                return tool_error_result(unavailable(server_id, _Reason(upstream))), []
            code, message, _ = unknown_tool(name)
            raise RpcFailure(code, message)
        upstream, tool = found
        if headers is not None and isinstance(arguments, dict) and self._declares(upstream.id, tool):
            rejection = validate_mcp_param_headers(tool.input_schema, arguments, header_map(headers))
            if rejection is not None:
                raise RpcFailure(rejection.code, rejection.message, rejection.data)
        try:
            outcome = await self.calls.call(identity, upstream, tool, arguments, request_id=rid, front="mcp")
        except GatewayError as err:
            if answers_as_result(err):
                return tool_error_result(err), err.headers
            raise RpcFailure.of(err, name) from None
        return outcome.result, outcome.headers

    def _declares(self, server_id: str, tool: Any) -> bool:
        """Whether the tool's input schema declares ``Mcp-Param-*`` headers (validly), memoised per schema."""
        key = (server_id, tool.name)
        found = self._headers.get(key)
        schema = tool.input_schema
        if found is not None and found[0] is schema:
            return found[1]
        declares = bool(x_mcp_header_map(schema)) and find_invalid_x_mcp_header(schema) is None
        if len(self._headers) >= _CACHE_MAX:
            self._headers.clear()
        self._headers[key] = (schema, declares)
        return declares

    # ---- grants and listings -------------------------------------------------------------------------------
    def granted(self, server_id: str, allowed: Callable[[str, str], bool]) -> bool:
        """Whether the key may use the server's resources and prompts: all its tools, or at least one."""
        return allowed(server_id, "*") or any(
            allowed(server_id, n) for n, _ in self.calls.deps.catalog.tools(server_id)
        )

    def _unavailable(self, result: dict[str, Any], allowed: Callable[[str, str], bool]) -> None:
        down = [
            u.id for u in self.calls.deps.catalog.servers() if u.state in _NOT_LISTED and self.granted(u.id, allowed)
        ]
        if down:
            result["_meta"] = {UNAVAILABLE_META_KEY: down}

    def _listing(self, method: str, allowed: Callable[[str, str], bool]) -> dict[str, Any]:
        catalog = self.calls.deps.catalog

        def server_ok(server_id: str) -> bool:
            return self.granted(server_id, allowed)

        result: dict[str, Any]
        if method == "resources/list":
            result = {"resources": catalog.resource_listing(server_ok)}
        elif method == "resources/templates/list":
            result = {"resourceTemplates": catalog.template_listing(server_ok)}
        else:
            result = {"prompts": catalog.prompt_listing(server_ok)}
        self._unavailable(result, allowed)
        return result

    # ---- resources and prompts -----------------------------------------------------------------------------
    async def _read(
        self, identity: Identity, params: dict[str, Any], rid: str, allowed: Callable[[str, str], bool]
    ) -> dict[str, Any]:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise RpcFailure(INVALID_PARAMS, "params.uri must be the resource's URI", {"param": "uri"})
        upstream = self._resource_server(uri, allowed)
        if upstream is None:
            raise RpcFailure(INVALID_PARAMS, f"Unknown resource: {uri}", {"uri": uri})
        try:
            return await self.calls.read_resource(identity, upstream, uri, request_id=rid, front="mcp")
        except GatewayError as err:
            raise RpcFailure.of(err) from None

    def _resource_server(self, uri: str, allowed: Callable[[str, str], bool]) -> Upstream | None:
        """The server that serves ``uri``, when the key is granted it: the catalog's owner of a listed resource,
        else the first granted server with a matching resource template."""
        catalog = self.calls.deps.catalog
        owner = catalog.resource_owner(uri)
        if owner is not None:
            return owner if self.granted(owner.id, allowed) else None
        for upstream in catalog.servers():
            if upstream.resource_templates and self.granted(upstream.id, allowed):
                for template in upstream.resource_templates:
                    parsed = self._template(template.uri_template)
                    if parsed is not None and parsed.match(uri) is not None:
                        return upstream
        return None

    def _template(self, text: str) -> UriTemplate | None:
        if text not in self._templates:
            try:
                self._templates[text] = UriTemplate.parse(text)
            except InvalidUriTemplate:
                log.warning("MCP resource template %r cannot be parsed: not matched", text[:200])
                self._templates[text] = None
        return self._templates[text]

    async def _prompt(
        self, identity: Identity, params: dict[str, Any], rid: str, allowed: Callable[[str, str], bool]
    ) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str):
            raise RpcFailure(INVALID_PARAMS, "params.name must be the prompt's name", {"param": "name"})
        arguments = params.get("arguments")
        if arguments is not None and (
            not isinstance(arguments, dict) or not all(isinstance(v, str) for v in arguments.values())
        ):
            raise RpcFailure(INVALID_PARAMS, "params.arguments must map names to strings", {"param": "arguments"})
        found = self.calls.deps.catalog.resolve_prompt(name)
        if found is None or not self.granted(found[0].id, allowed):
            raise RpcFailure(INVALID_PARAMS, f"Unknown prompt: {name}", {"name": name})
        upstream, prompt = found
        try:
            return await self.calls.get_prompt(identity, upstream, prompt.name, arguments, request_id=rid, front="mcp")
        except GatewayError as err:
            raise RpcFailure.of(err) from None


class _Reason(Exception):
    """Why a server is not ready, as :func:`~ferrogate.mcp.calls.unavailable` words it."""

    def __init__(self, upstream: Upstream) -> None:
        super().__init__(upstream.last_error or f"it is {upstream.state}")


def header_map(headers: Mapping[str, str] | Headers) -> dict[str, str]:
    """The ``Mcp-Param-*`` headers of a request (lower-case names).

    Example:
        >>> header_map({"mcp-param-region": "eu", "accept": "*/*"})
        {'mcp-param-region': 'eu'}
    """
    return {k: v for k, v in headers.items() if k.startswith(_PARAM_PREFIX)}
