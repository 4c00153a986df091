"""The admin plane's dispatcher: match -> authenticate -> RBAC check -> validate -> handler.

Deny by default: a request reaches a handler only when its credential resolves to a
principal whose role holds the route's permission. Credentials are the master key
(``FERROGATE_MASTER_KEY``) or an admin key (a key whose role is ``admin``, ``team_admin`` or
``auditor``), sent like data-plane keys (``Authorization: Bearer``, ``api-key``, ``x-api-key``).
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from granian.rsgi import HTTPProtocol, Scope
from pydantic import BaseModel, ValidationError

from ferrogate.admin.openapi import openapi_document
from ferrogate.admin.rbac import Permission, Principal, Role, allowed
from ferrogate.admin.routes import ROUTES
from ferrogate.admin.service import AdminService
from ferrogate.admin.table import AdminRoute, Call
from ferrogate.auth.authenticator import credential
from ferrogate.auth.keys import looks_like_key
from ferrogate.errors import ErrorKind, GatewayError, store_unavailable
from ferrogate.pipeline.chain import write_error
from ferrogate.pipeline.phases import read_body
from ferrogate.store.errors import Conflict, InvalidReference, InvalidValue, NotFound, StoreError

log = logging.getLogger("ferrogate.admin")

OPENAPI_PATH = "/admin/v1/openapi.json"
_JSON = ("content-type", "application/json")
_MAX_BODY = 1024 * 1024


class AdminApi:
    """Serves ``/admin/v1/*`` from :data:`~ferrogate.admin.routes.ROUTES`."""

    def __init__(self, service: AdminService, master_key: str) -> None:
        self.service = service
        self._master = master_key.encode()
        self.routes = ROUTES
        self._openapi = orjson.dumps(openapi_document(ROUTES, OPENAPI_PATH))

    def match(self, method: str, path: str) -> tuple[AdminRoute | None, dict[str, str], list[str]]:
        """The route for ``method path``, its path parameters, and the methods the path allows."""
        methods: list[str] = []
        for route in self.routes:
            found = route.pattern.match(path)
            if found is not None:
                methods.append(route.method)
                if route.method == method:
                    return route, found.groupdict(), methods
        return None, {}, methods

    async def __call__(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """Serve one admin request; every failure is an OpenAI-shaped error."""
        try:
            status, body = await self._serve(scope, proto)
        except GatewayError as err:
            write_error(proto, err, headers)
            return
        except StoreError as exc:
            write_error(proto, _store_error(exc), headers)
            return
        except (OSError, TimeoutError) as exc:  # the store's connection failed below the store layer
            log.warning("admin request %s: store unreachable: %s", rid, exc)
            write_error(proto, store_unavailable(f"The store cannot be reached right now: {exc}"), headers)
            return
        except Exception:
            log.exception("admin request %s failed", rid)
            write_error(proto, GatewayError(ErrorKind.INTERNAL, f"internal error (request id {rid})"), headers)
            return
        proto.response_bytes(status, [_JSON, *headers], body)

    async def _serve(self, scope: Scope, proto: HTTPProtocol) -> tuple[int, bytes]:
        if scope.path == OPENAPI_PATH and scope.method == "GET":
            return 200, self._openapi
        try:
            route, params, principal = await self._authorized(scope)
        except GatewayError as err:
            if _has_body(scope):  # refused before its body was read: the connection must not carry another request
                err.headers = [*err.headers, ("connection", "close")]
            raise
        call = Call(principal, params)
        if route.request is not None:
            raw = await read_body(scope, proto, _MAX_BODY)
            call.body = _validate(route.request, _json(raw) if raw.strip() else {}, "")
        if route.query is not None:
            call.query = _validate(route.query, dict(parse_qsl(scope.query_string)), "")
        result: BaseModel = await route.handler(self.service, call)
        return route.status, result.__pydantic_serializer__.to_json(result)

    async def _authorized(self, scope: Scope) -> tuple[AdminRoute, dict[str, str], Principal]:
        """The route, its path parameters and the caller, who must hold the route's permission (404, 405, 401,
        403 otherwise)."""
        route, params, methods = self.match(scope.method, scope.path)
        if route is None:
            if methods:
                allowed_methods = ", ".join(sorted(set(methods)))
                raise GatewayError(
                    ErrorKind.METHOD_NOT_ALLOWED,
                    f"method {scope.method} is not allowed on {scope.path} (allowed: {allowed_methods})",
                    headers=[("allow", allowed_methods)],
                )
            raise GatewayError(ErrorKind.NOT_FOUND, f"no route for {scope.method} {scope.path}")
        principal = await self.principal(scope)
        if not allowed(principal.role, route.permission):
            raise GatewayError(
                ErrorKind.PERMISSION_DENIED,
                f"role {principal.role.value} lacks {route.permission.value} for {route.method} {route.path}",
            )
        return route, params, principal

    async def principal(self, scope: Scope) -> Principal:
        """Who calls: the master key is ``admin``; an admin key carries its role and team.

        Raises:
            GatewayError: 401 for a missing or unknown credential, 403 for a data-plane key.
        """
        token = credential(scope)
        if token is None:
            raise GatewayError(ErrorKind.UNAUTHORIZED, "admin routes need a credential: 'Authorization: Bearer ...'")
        if hmac.compare_digest(token.encode(), self._master):
            return Principal(Role.ADMIN)
        if looks_like_key(token):
            match = await self.service.store.keys.get_by_hash(self.service.hasher.hash(token))
            if match is not None and match.key.usable(datetime.now(UTC)):
                key = match.key
                if key.role == "member":
                    raise GatewayError(ErrorKind.PERMISSION_DENIED, "a data-plane key cannot call admin routes")
                return Principal(Role(key.role), key.team_id, key.id)
        raise GatewayError(ErrorKind.UNAUTHORIZED, "Incorrect API key provided.")


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(ErrorKind.INVALID_JSON, f"the request body is not valid JSON: {exc}") from None


def _validate(model: type[BaseModel], data: Any, where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or where
        message = f"{param}: {first['msg']}" if param else first["msg"]
        raise GatewayError(ErrorKind.INVALID_FIELD, message, param=param or None) from None


def _has_body(scope: Scope) -> bool:
    """Whether the request declares a body (a non-zero ``content-length``, or a chunked one)."""
    length = scope.headers.get("content-length")
    return (length is not None and length.strip() not in ("", "0")) or "transfer-encoding" in scope.headers


def _store_error(exc: StoreError) -> GatewayError:
    if isinstance(exc, NotFound):
        return GatewayError(ErrorKind.NOT_FOUND, str(exc), param=f"{exc.entity}_id")
    if isinstance(exc, Conflict):
        return GatewayError(ErrorKind.CONFLICT, str(exc), param=exc.field)
    if isinstance(exc, InvalidReference | InvalidValue):
        return GatewayError(ErrorKind.INVALID_FIELD, str(exc), param=exc.field)
    # anything else is the store failing (unreachable, a lost connection): a 503 the client may retry
    return store_unavailable(f"The store cannot be reached right now: {exc}")


__all__ = ["OPENAPI_PATH", "AdminApi", "Permission"]
