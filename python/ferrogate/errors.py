"""The errors users see, in one family with one exhaustive table.

Every refusal and fault the gateway answers with is a :class:`GatewayError`. Its
:class:`ErrorKind` fixes the HTTP status, the OpenAI error ``type`` and ``code``, whether
a client may retry, and where the fault lies. The table :data:`KINDS` covers every kind
(a test checks it), so no error can reach a client as a 500 with a traceback.

Example:
    >>> err = GatewayError(ErrorKind.INVALID_FIELD, "max_tokens must be >= 1", param="max_tokens")
    >>> err.status, err.to_body()["error"]["param"]
    (400, 'max_tokens')
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import orjson


class Source(enum.Enum):
    """Where a fault lies: with the client, an upstream provider, or the gateway itself."""

    CLIENT = "client"
    UPSTREAM = "upstream"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class KindInfo:
    """What one error kind means on the wire."""

    status: int
    type: str
    code: str | None
    retryable: bool
    source: Source


class ErrorKind(enum.Enum):
    """Every kind of error the gateway answers with."""

    INVALID_JSON = "invalid_json"
    INVALID_FIELD = "invalid_field"
    UNAUTHORIZED = "unauthorized"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    PERMISSION_DENIED = "permission_denied"
    CONFLICT = "conflict"
    RATE_LIMITED_REQUESTS = "rate_limited_requests"
    RATE_LIMITED_TOKENS = "rate_limited_tokens"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    UNKNOWN_MODEL = "unknown_model"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BODY_TOO_LARGE = "body_too_large"
    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_PROTOCOL = "upstream_protocol"
    MODEL_UNPRICED = "model_unpriced"
    CONTENT_POLICY = "content_policy"
    CLASSIFICATION_NOT_CLEARED = "classification_not_cleared"
    STORE_UNAVAILABLE = "store_unavailable"
    NO_HEALTHY_DEPLOYMENT = "no_healthy_deployment"
    ROUTE_FORBIDDEN = "route_forbidden"
    SCHEMA_MISMATCH = "schema_mismatch"
    NOT_READY = "not_ready"
    TOOL_FORBIDDEN = "tool_forbidden"
    MCP_SERVER_NOT_FOUND = "mcp_server_not_found"
    MCP_TOOL_NOT_FOUND = "mcp_tool_not_found"
    MCP_UPSTREAM_UNAVAILABLE = "mcp_upstream_unavailable"
    MCP_UPSTREAM_TIMEOUT = "mcp_upstream_timeout"
    TOOL_CALLS_RATE_LIMITED = "tool_calls_rate_limited"
    INTERNAL = "internal"


KINDS: dict[ErrorKind, KindInfo] = {
    ErrorKind.INVALID_JSON: KindInfo(400, "invalid_request_error", "invalid_json", False, Source.CLIENT),
    ErrorKind.INVALID_FIELD: KindInfo(400, "invalid_request_error", "invalid_value", False, Source.CLIENT),
    ErrorKind.UNAUTHORIZED: KindInfo(401, "invalid_request_error", "invalid_api_key", False, Source.CLIENT),
    ErrorKind.MODEL_NOT_ALLOWED: KindInfo(403, "invalid_request_error", "model_not_allowed", False, Source.CLIENT),
    ErrorKind.PERMISSION_DENIED: KindInfo(403, "invalid_request_error", "permission_denied", False, Source.CLIENT),
    ErrorKind.CONFLICT: KindInfo(409, "invalid_request_error", "conflict", False, Source.CLIENT),
    ErrorKind.RATE_LIMITED_REQUESTS: KindInfo(429, "requests", "rate_limit_exceeded", True, Source.CLIENT),
    ErrorKind.RATE_LIMITED_TOKENS: KindInfo(429, "tokens", "rate_limit_exceeded", True, Source.CLIENT),
    ErrorKind.INSUFFICIENT_QUOTA: KindInfo(429, "insufficient_quota", "insufficient_quota", False, Source.CLIENT),
    ErrorKind.UNKNOWN_MODEL: KindInfo(404, "invalid_request_error", "model_not_found", False, Source.CLIENT),
    ErrorKind.NOT_FOUND: KindInfo(404, "invalid_request_error", "not_found", False, Source.CLIENT),
    ErrorKind.METHOD_NOT_ALLOWED: KindInfo(405, "invalid_request_error", "method_not_allowed", False, Source.CLIENT),
    ErrorKind.BODY_TOO_LARGE: KindInfo(413, "invalid_request_error", "request_too_large", False, Source.CLIENT),
    ErrorKind.UPSTREAM_UNREACHABLE: KindInfo(502, "upstream_error", "upstream_unreachable", True, Source.UPSTREAM),
    ErrorKind.UPSTREAM_TIMEOUT: KindInfo(504, "upstream_error", "upstream_timeout", True, Source.UPSTREAM),
    ErrorKind.UPSTREAM_PROTOCOL: KindInfo(502, "upstream_error", "upstream_bad_response", True, Source.UPSTREAM),
    ErrorKind.MODEL_UNPRICED: KindInfo(403, "invalid_request_error", "model_not_priced", False, Source.CLIENT),
    ErrorKind.CONTENT_POLICY: KindInfo(400, "invalid_request_error", "content_policy_violation", False, Source.CLIENT),
    ErrorKind.CLASSIFICATION_NOT_CLEARED: KindInfo(
        403, "invalid_request_error", "classification_not_cleared", False, Source.CLIENT
    ),
    ErrorKind.STORE_UNAVAILABLE: KindInfo(503, "server_error", "store_unavailable", True, Source.INTERNAL),
    ErrorKind.NO_HEALTHY_DEPLOYMENT: KindInfo(503, "upstream_error", "no_healthy_deployment", True, Source.UPSTREAM),
    ErrorKind.ROUTE_FORBIDDEN: KindInfo(403, "invalid_request_error", "no_deployment_allowed", False, Source.CLIENT),
    ErrorKind.SCHEMA_MISMATCH: KindInfo(502, "upstream_error", "response_schema_mismatch", True, Source.UPSTREAM),
    ErrorKind.NOT_READY: KindInfo(503, "server_error", "not_ready", True, Source.INTERNAL),
    # the MCP tool gateway (python/ferrogate/mcp/): its REST front answers these as they are; /mcp maps them to
    # JSON-RPC errors or isError results (mcp/errors.py)
    ErrorKind.TOOL_FORBIDDEN: KindInfo(403, "invalid_request_error", "tool_not_allowed", False, Source.CLIENT),
    ErrorKind.MCP_SERVER_NOT_FOUND: KindInfo(
        404, "invalid_request_error", "mcp_server_not_found", False, Source.CLIENT
    ),
    ErrorKind.MCP_TOOL_NOT_FOUND: KindInfo(404, "invalid_request_error", "mcp_tool_not_found", False, Source.CLIENT),
    ErrorKind.MCP_UPSTREAM_UNAVAILABLE: KindInfo(
        502, "upstream_error", "mcp_server_unavailable", True, Source.UPSTREAM
    ),
    ErrorKind.MCP_UPSTREAM_TIMEOUT: KindInfo(504, "upstream_error", "mcp_timeout", True, Source.UPSTREAM),
    ErrorKind.TOOL_CALLS_RATE_LIMITED: KindInfo(429, "tool_calls", "rate_limit_exceeded", True, Source.CLIENT),
    ErrorKind.INTERNAL: KindInfo(500, "server_error", "internal_error", True, Source.INTERNAL),
}


class GatewayError(Exception):
    """A refusal or fault, answered to the client in OpenAI's error shape.

    Args:
        kind: which row of :data:`KINDS` applies.
        message: a sentence for the user; names the field, model or upstream at fault.
        param: the request field at fault, if any (OpenAI's ``param``).
        headers: extra response headers (e.g. ``Allow`` on a 405).
        code: a more specific ``code`` than the kind's (e.g. which rate limit was hit).
    """

    __slots__ = ("code", "headers", "kind", "message", "param")

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        param: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.param = param
        self.headers = headers or []
        self.code = code

    @property
    def info(self) -> KindInfo:
        """The wire meaning of this error's kind."""
        return KINDS[self.kind]

    @property
    def wire_code(self) -> str | None:
        """The ``code`` the client receives (the specific one when given, else the kind's)."""
        return self.code or KINDS[self.kind].code

    @property
    def status(self) -> int:
        """The HTTP status the client receives."""
        return KINDS[self.kind].status

    def to_body(self) -> dict[str, Any]:
        """The OpenAI-shaped error object: ``{"error": {"message", "type", "param", "code"}}``."""
        info = KINDS[self.kind]
        return {"error": {"message": self.message, "type": info.type, "param": self.param, "code": self.wire_code}}

    def to_json(self) -> bytes:
        """The error body serialised."""
        return orjson.dumps(self.to_body())


class BudgetExhausted(GatewayError):
    """429 ``insufficient_quota``: the ``scope`` ("key", "user", "team") budget cannot cover the request.

    Example:
        >>> BudgetExhausted("team", "The team budget of $1 (monthly) cannot cover this request").wire_code
        'insufficient_quota'
    """

    __slots__ = ("scope",)

    def __init__(self, scope: str, message: str) -> None:
        super().__init__(ErrorKind.INSUFFICIENT_QUOTA, message)
        self.scope = scope


#: Seconds a client is asked to wait (``Retry-After``) when the store cannot be reached.
STORE_RETRY_AFTER_S = 5


def store_unavailable(message: str, retry_after_s: int = STORE_RETRY_AFTER_S) -> GatewayError:
    """503 ``store_unavailable`` with ``Retry-After``: the store could not be reached for what this request needs.

    Example:
        >>> err = store_unavailable("The key store is unreachable; try again shortly.")
        >>> err.status, err.wire_code, err.headers
        (503, 'store_unavailable', [('retry-after', '5')])
    """
    return GatewayError(ErrorKind.STORE_UNAVAILABLE, message, headers=[("retry-after", str(retry_after_s))])
