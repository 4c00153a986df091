"""``/mcp``: one aggregated MCP server (Streamable HTTP) over every upstream, for both protocol generations.

Every key sees exactly the tools its policy allows, namespaced ``<server>__<tool>``, and the resources and
prompts of the servers it is granted. The virtual key is the bearer token; a missing or bad one is an HTTP 401
with a JSON-RPC error body and ``WWW-Authenticate: Bearer``. Answers are single JSON responses
(``application/json``), which both generations allow and the SDK's client reads.

Era detection, per request, as the SDK's own server does it: an ``MCP-Protocol-Version`` header naming a version
that is not a handshake one selects the 2026-07-28 path; no header, or a handshake version, the 2025-11-25 path.

- 2026-07-28 (stateless): the request's ``_meta`` envelope and its routing headers (``Mcp-Method``,
  ``Mcp-Name``: the tool a policy decides on is the body's, and the header must name it) are checked by the SDK's
  ``classify_inbound_request``; a refusal is its JSON-RPC error at the status of ``ERROR_CODE_HTTP_STATUS``.
  ``server/discover`` answers the version and capabilities; results carry ``resultType``, the ``serverInfo``
  ``_meta`` stamp, and ``ttlMs``/``cacheScope: private`` where cacheable. ``Mcp-Param-*`` headers of a tool
  whose schema declares them are checked against the arguments.
- 2025-11-25 (sessions): ``initialize`` answers with a signed ``Mcp-Session-Id`` (:mod:`ferrogate.mcp.session`:
  no server-side state, valid on any instance sharing the master key); every later request must carry it (none:
  400; invalid, expired or another key's: 404, so the client initialises again). ``DELETE`` answers 200.

Notifications are acknowledged with 202. Tool calls go through :class:`~ferrogate.mcp.calls.ToolCalls`; failures
are mapped by :mod:`ferrogate.mcp.errors` (a denied tool is answered like an unknown one).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import orjson
from granian.rsgi import HTTPProtocol, Scope
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    unsupported_protocol_version_rejection,
)
from mcp_types import SERVER_INFO_META_KEY
from mcp_types.jsonrpc import HEADER_MISMATCH, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR
from mcp_types.methods import CACHEABLE_METHODS
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

from ferrogate import __version__
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.mcp.calls import ToolCalls
from ferrogate.mcp.errors import RpcFailure, error_body, result_body
from ferrogate.mcp.methods import Methods
from ferrogate.mcp.session import SessionSigner
from ferrogate.pipeline.phases import read_body

if TYPE_CHECKING:
    from ferrogate.auth.identity import Identity

log = logging.getLogger("ferrogate.mcp")

SESSION_HEADER: Final = "mcp-session-id"
#: What the gateway says it is (``serverInfo``).
SERVER_INFO: Final = {"name": "ferrogate", "version": __version__}
#: Capabilities: tools, resources and prompts, no list-changed notifications (the lists are the key's view).
LEGACY_CAPABILITIES: Final = {
    "tools": {"listChanged": False},
    "resources": {"subscribe": False, "listChanged": False},
    "prompts": {"listChanged": False},
}
#: How long a client may keep a cacheable answer (0: fresh each time: a policy change shows at once).
TTL_MS: Final = 0
#: The body of a request beyond its tool arguments (the envelope, ``_meta``).
_ENVELOPE_BYTES: Final = 64 * 1024
_JSON = ("content-type", "application/json")
_ALLOW = ("allow", "POST, DELETE")


def is_modern(protocol_header: str | None) -> bool:
    """Whether a request with this ``MCP-Protocol-Version`` header takes the 2026-07-28 (stateless) path.

    Example:
        >>> is_modern(None), is_modern("2025-11-25"), is_modern("2026-07-28"), is_modern("2099-01-01")
        (False, False, True, True)
    """
    return protocol_header is not None and protocol_header not in HANDSHAKE_PROTOCOL_VERSIONS


def negotiate(requested: Any) -> str:
    """The handshake version ``initialize`` answers: the client's when the gateway speaks it, else the latest.

    Example:
        >>> negotiate("2025-06-18"), negotiate("1999-01-01"), negotiate(None)
        ('2025-06-18', '2025-11-25', '2025-11-25')
    """
    return requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION


def frame(message: Any) -> tuple[str | int | None, str, dict[str, Any]] | RpcFailure:
    """``(id, method, params)`` of a JSON-RPC request, or the failure to answer (``id`` is ``None`` for a
    notification, which has none).

    Example:
        >>> frame({"jsonrpc": "2.0", "id": 1, "method": "ping"})
        (1, 'ping', {})
        >>> frame([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]).code
        -32600
    """
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return RpcFailure(INVALID_REQUEST, "Body must be a single JSON-RPC 2.0 request or notification object")
    method = message.get("method")
    if not isinstance(method, str):
        return RpcFailure(INVALID_REQUEST, "The message has no method (responses are not expected here)")
    rid = message.get("id")
    if "id" in message and (isinstance(rid, bool) or not isinstance(rid, str | int)):
        return RpcFailure(INVALID_REQUEST, "The request id must be a string or an integer")
    params = message.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        return RpcFailure(INVALID_PARAMS, "params must be an object", request_id=rid)
    return rid, method, params


def envelope(method: str, result: dict[str, Any], modern: bool) -> dict[str, Any]:
    """A result as the era wants it: at 2026-07-28 with ``resultType``, the ``serverInfo`` stamp and, for the
    cacheable methods, ``ttlMs``/``cacheScope``; before it without them.

    Example:
        >>> envelope("tools/list", {"tools": []}, True)["cacheScope"], envelope("ping", {"resultType": "x"}, False)
        ('private', {})
    """
    if not modern:
        result.pop("resultType", None)
        return result
    result.setdefault("resultType", "complete")
    if method in CACHEABLE_METHODS:
        result.setdefault("ttlMs", TTL_MS)
        result.setdefault("cacheScope", "private")
    meta = result.get("_meta")
    stamp = {SERVER_INFO_META_KEY: SERVER_INFO}
    result["_meta"] = {**meta, **stamp} if isinstance(meta, dict) else stamp  # a copy: _meta may be shared
    return result


class McpEndpoint:
    """The RSGI handler of ``/mcp`` (``POST``, ``GET``, ``DELETE``)."""

    __slots__ = ("calls", "methods", "signer")

    def __init__(self, calls: ToolCalls) -> None:
        self.calls = calls
        self.methods = Methods(calls)
        self.signer = SessionSigner(calls.deps.master_key)

    async def __call__(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """Serve one HTTP request of ``/mcp``."""
        deps = self.calls.deps
        if not deps.settings.enabled:
            body = error_body(None, METHOD_NOT_FOUND, "The MCP gateway is not enabled")
            proto.response_bytes(404, [_JSON, *headers], body)
            return
        if scope.method == "DELETE":  # the end of a handshake-era session: nothing is kept, nothing to forget
            proto.response_empty(200, headers)
            return
        if scope.method != "POST":  # no server-to-client stream: answers come on each POST
            proto.response_empty(405, [_ALLOW, *headers])
            return
        try:
            status, body, extra = await self._post(scope, proto, rid)
        except GatewayError as err:  # the key or the body refused before any method ran
            status, body, extra = err.status, error_body(None, _code_of(err), err.message), err.headers
            if err.status == 401:
                extra = [("www-authenticate", 'Bearer realm="ferrogate"'), *extra]
        except Exception:
            log.exception("MCP request %s failed", rid)
            status, body, extra = 500, error_body(None, -32603, f"internal error (request id {rid})"), []
        if body:
            proto.response_bytes(status, [_JSON, *headers, *extra], body)
        else:
            proto.response_empty(status, [*headers, *extra])

    async def _post(self, scope: Scope, proto: HTTPProtocol, rid: str) -> tuple[int, bytes, list[tuple[str, str]]]:
        """Authenticate, read and frame one message, then answer it in its era."""
        deps = self.calls.deps
        identity = await deps.auth.identify(scope)
        raw = await read_body(scope, proto, deps.settings.max_argument_bytes + _ENVELOPE_BYTES)
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return 400, error_body(None, PARSE_ERROR, "Parse error"), []
        framed = frame(message)
        if isinstance(framed, RpcFailure):
            return 400, error_body(framed.request_id, framed.code, framed.message), []
        request_id, method, params = framed
        version = scope.headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if is_modern(version):
            return await self._modern(scope, identity, message, request_id, method, params, rid)
        return await self._legacy(scope, identity, request_id, method, params, rid, "id" not in message)

    async def _modern(
        self, scope: Scope, identity: Identity, message: dict[str, Any], request_id: str | int | None, method: str,
        params: dict[str, Any], rid: str,
    ) -> tuple[int, bytes, list[tuple[str, str]]]:  # fmt: skip
        """A 2026-07-28 message: the envelope and routing headers checked, then the method."""
        got = scope.headers
        if "id" not in message:  # a notification: nothing to act on at this revision (cancel is a closed stream)
            refused = unsupported_protocol_version_rejection(got.get(MCP_PROTOCOL_VERSION_HEADER, ""))
            if refused is not None:
                return _rejected(None, refused)
            return 202, b"", []
        duplicated = find_duplicated_routing_header(got.items())
        if duplicated is not None:
            return _rejected(request_id, InboundLadderRejection(HEADER_MISMATCH, f"{duplicated} header appears twice"))
        routing = {
            name: value
            for name in (MCP_PROTOCOL_VERSION_HEADER, MCP_METHOD_HEADER, MCP_NAME_HEADER)
            if (value := got.get(name)) is not None
        }
        verdict = classify_inbound_request(message, headers=routing)
        if isinstance(verdict, InboundLadderRejection):
            return _rejected(request_id, verdict)
        assert request_id is not None
        try:
            result, extra = await self.methods.dispatch(identity, method, params, rid, modern=True, headers=got)
        except RpcFailure as failure:
            status = ERROR_CODE_HTTP_STATUS.get(failure.code, 200)
            return status, error_body(request_id, failure.code, failure.message, failure.data), failure.headers
        return 200, result_body(request_id, envelope(method, result, True)), extra

    async def _legacy(
        self, scope: Scope, identity: Identity, request_id: str | int | None, method: str, params: dict[str, Any],
        rid: str, notification: bool,
    ) -> tuple[int, bytes, list[tuple[str, str]]]:  # fmt: skip
        """A handshake-era message: ``initialize`` opens a signed session, every other request needs it."""
        if notification:
            return 202, b"", []
        assert request_id is not None
        key_id = identity.key_id or "anonymous"
        if method == "initialize":
            version = negotiate(params.get("protocolVersion"))
            session = self.signer.issue(key_id, version)
            result = {"protocolVersion": version, "capabilities": LEGACY_CAPABILITIES, "serverInfo": SERVER_INFO}
            return 200, result_body(request_id, result), [(SESSION_HEADER, session)]
        session = scope.headers.get(SESSION_HEADER)
        if session is None:
            return 400, error_body(request_id, INVALID_REQUEST, "Bad Request: Missing session ID"), []
        if self.signer.verify(session, key_id) is None:
            return 404, error_body(request_id, INVALID_REQUEST, "Not Found: Invalid or expired session ID"), []
        echo = [(SESSION_HEADER, session)]
        try:
            result, extra = await self.methods.dispatch(identity, method, params, rid, modern=False, headers=None)
        except RpcFailure as failure:
            return 200, error_body(request_id, failure.code, failure.message, failure.data), [*echo, *failure.headers]
        return 200, result_body(request_id, envelope(method, result, False)), [*echo, *extra]


def _rejected(request_id: str | int | None, rejection: InboundLadderRejection) -> tuple[int, bytes, list[Any]]:
    status = ERROR_CODE_HTTP_STATUS.get(rejection.code, 400)
    return status, error_body(request_id, rejection.code, rejection.message, rejection.data), []


def _code_of(err: GatewayError) -> int:
    """The JSON-RPC code of an HTTP-level refusal (401, 413, 503...)."""
    if err.kind in (ErrorKind.INVALID_JSON, ErrorKind.INVALID_FIELD):
        return PARSE_ERROR if err.kind is ErrorKind.INVALID_JSON else INVALID_REQUEST
    return INVALID_REQUEST if 400 <= err.status < 500 else -32603
