"""The MCP tool gateway on the admin plane (``/admin/v1/mcp/*``): upstream servers, tool approvals and team tool
policies.

Servers come from the configuration file (``mcp.servers``: listed here, read-only, 409 ``defined_in_config`` to a
change) or from this API (stored in ``store.mcp``). A server's credentials (header values, a bearer token, the
environment of a stdio command) are literal values, unlike an LLM upstream's ``${ENV}``-only key: they are sealed
with AES-256-GCM under the master key before they are stored (:class:`~ferrogate.mcp.secrets.Sealer`), never
returned (header and variable names only, ``bearer_token: "set"``), never audited. A ``PUT`` replaces the whole
server, credentials included (a credential left out is dropped).

An approval (``POST .../servers/{id}/approve``) pins the hash of every tool the server lists now, as this worker's
catalog sees it; a tool whose definition changes afterwards is flagged (``GET /admin/v1/mcp/tools/changed``) and,
with the server's ``on_change: hide``, hidden until approved again.

A team's tool policy (allow and deny globs over ``server/tool``, a calls-per-minute limit, per-key narrowing) is
checked as the gateway's ``ToolPolicy`` and by ``Policies.validate`` (a 400 naming the field, e.g. ``allow.2``)
before it is stored.

Every write is stored, audited (``mcp.server.create|update|delete|approve``, ``mcp.policy.update|delete``: no
credential in the record) and then applied in this worker at once and announced to the others (the change feed's
``changed()``). The live parts (status, approvals, flagged tools) and every write need the worker's MCP gateway
(:class:`~ferrogate.admin.mcp_models.McpAdmin`): without it they answer 503, and listings show ``status: null``.

Example:
    >>> public_view({"id": "gh", "transport": "http", "url": "https://h/mcp", "headers": {"X-Key": "s"}})["headers"]
    ['X-Key']
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from ferrogate.admin import models as m
from ferrogate.admin.mcp_models import (
    McpAdmin,
    McpApprovalOut,
    McpChangedList,
    McpChangedTool,
    McpPolicyOut,
    McpServerIn,
    McpServerList,
    McpServerOut,
    McpStatusOut,
)
from ferrogate.admin.table import Call
from ferrogate.audit.events import admin_event
from ferrogate.config import Config
from ferrogate.config.mcp import McpHttpServer, McpServer, McpStdioServer
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.mcp.policy import ToolPolicy
from ferrogate.mcp.secrets import SealError, merge_credentials, split_credentials
from ferrogate.store.mcp import StoredServer, check_server_id

if TYPE_CHECKING:
    from ferrogate.admin.service import AdminService


# ---- servers -------------------------------------------------------------------------------------------------


async def list_servers(service: AdminService, call: Call) -> McpServerList:
    """``GET /admin/v1/mcp/servers``: the configuration's servers, then the stored ones, with live status."""
    status = _status(service)
    out = [_config_out(s, status) for s in _config_servers(service).values()]
    out += [_stored_out(service, row, status) for row in await service.store.mcp.servers()]
    return McpServerList(data=out)


async def get_server(service: AdminService, call: Call) -> McpServerOut:
    """``GET /admin/v1/mcp/servers/{id}`` (404 when neither the configuration nor the store has it)."""
    server_id = call.params["id"]
    configured = _config_servers(service).get(server_id)
    if configured is not None:
        return _config_out(configured, _status(service))
    return _stored_out(service, await _stored(service, server_id), _status(service))


async def create_server(service: AdminService, call: Call) -> McpServerOut:
    """``POST /admin/v1/mcp/servers``: add a server (409 when its id is taken, in the configuration or the store)."""
    spec = _body(call)
    _not_configured(service, spec.id, "is defined in the configuration file")
    doc, sealed = _sealed(_admin(service), spec)
    row = await service.store.mcp.put_server(spec.id, doc, sealed, call.principal.actor, create=True)
    await _audited(service, call, "mcp.server.create", spec.id, None, public_view(_plain(spec)))
    await _admin(service).sync.changed()
    return _stored_out(service, row, _status(service))


async def put_server(service: AdminService, call: Call) -> McpServerOut:
    """``PUT /admin/v1/mcp/servers/{id}``: replace a stored server whole, credentials included (404 when unknown;
    409 ``defined_in_config`` for a configuration file's)."""
    server_id, spec = call.params["id"], _body(call)
    if spec.id != server_id:
        raise GatewayError(ErrorKind.INVALID_FIELD, f"id: {spec.id!r} is not the path's {server_id!r}", param="id")
    _not_configured(service, server_id, "is defined in the configuration file: edit it there")
    old = await _stored(service, server_id)
    doc, sealed = _sealed(_admin(service), spec)
    row = await service.store.mcp.put_server(server_id, doc, sealed, call.principal.actor)
    await _audited(service, call, "mcp.server.update", server_id, _stored_view(service, old), public_view(_plain(spec)))
    await _admin(service).sync.changed()
    return _stored_out(service, row, _status(service))


async def delete_server(service: AdminService, call: Call) -> m.Deleted:
    """``DELETE /admin/v1/mcp/servers/{id}``: drop a stored server and its approval (404 when unknown; 409
    ``defined_in_config`` for a configuration file's)."""
    server_id = call.params["id"]
    _not_configured(service, server_id, "is defined in the configuration file: remove it there")
    old = await _stored(service, server_id)
    admin = _admin(service)
    if not await service.store.mcp.delete_server(server_id, call.principal.actor):
        raise _unknown(server_id)
    await _audited(service, call, "mcp.server.delete", server_id, _stored_view(service, old), None)
    await admin.sync.changed()
    return m.Deleted(id=server_id)


async def approve_server(service: AdminService, call: Call) -> McpApprovalOut:
    """``POST /admin/v1/mcp/servers/{id}/approve``: pin every tool the server lists now (as this worker's catalog
    sees it), clearing its flags (409 when the server has not listed its tools here yet)."""
    server_id = call.params["id"]
    if server_id not in _config_servers(service):
        await _stored(service, server_id)  # 404 when unknown
    admin = _admin(service)
    state = _status(service).get(server_id)
    hashes = dict(admin.pins.seen(server_id))
    if not hashes and (state is None or state.state != "ready"):
        where = "is not in this worker's catalog" if state is None else f"is {state.state}"
        raise GatewayError(
            ErrorKind.CONFLICT,
            f"MCP server {server_id!r} {where}: nothing to approve until it has listed its tools",
            param="id",
            code="mcp_server_not_ready",
        )
    before = await service.store.mcp.approved(server_id)
    cleared = sorted(admin.pins.flagged().get(server_id, {}))
    await service.store.mcp.approve(server_id, hashes, call.principal.actor)
    if service.audit is not None:
        event = admin_event(call.principal.actor, "mcp.server.approve", server_id, None)
        event.data = {"before": before, "after": hashes, "cleared": cleared}
        await service.audit.record_and_flush(event)
    await admin.sync.changed()
    return McpApprovalOut(server_id=server_id, pins=hashes, cleared=cleared, version=await service.store.mcp.version())


async def changed_tools(service: AdminService, call: Call) -> McpChangedList:
    """``GET /admin/v1/mcp/tools/changed``: the tools this worker's catalog flags, by server and tool."""
    flagged = _admin(service).pins.flagged()
    return McpChangedList(
        data=[
            McpChangedTool(server_id=server, tool=tool, approved_hash=approved or None, seen_hash=seen)
            for server in sorted(flagged)
            for tool, (approved, seen) in sorted(flagged[server].items())
        ]
    )


# ---- policies ------------------------------------------------------------------------------------------------


async def get_policy(service: AdminService, call: Call) -> McpPolicyOut:
    """``GET /admin/v1/mcp/policies/{team_id}`` (404 for an unknown team, or one without a stored policy)."""
    team_id = await _team(service, call)
    stored = await service.store.mcp.get_policy(team_id)
    if stored is None:
        raise GatewayError(
            ErrorKind.NOT_FOUND,
            f"team {team_id} has no MCP tool policy (the configuration's mcp.default_policy applies)",
            param="team_id",
        )
    return McpPolicyOut(
        team_id=team_id,
        policy=ToolPolicy.model_validate(stored["doc"]),
        updated_at=stored["updated_at"],
        updated_by=stored["updated_by"],
        version=await service.store.mcp.version(),
    )


async def put_policy(service: AdminService, call: Call) -> McpPolicyOut:
    """``POST /admin/v1/mcp/policies/{team_id}``: set the team's tool policy (replacing any)."""
    team_id = await _team(service, call)
    body: ToolPolicy = call.body
    admin = _admin(service)
    doc = body.model_dump(mode="json")
    try:
        admin.policies.validate(team_id, doc)
    except ValueError as exc:
        param = getattr(exc, "param", None)
        raise GatewayError(ErrorKind.INVALID_FIELD, str(exc), param=param) from None
    old = await service.store.mcp.get_policy(team_id)
    stored = await service.store.mcp.put_policy(team_id, doc, call.principal.actor)
    await _audited(service, call, "mcp.policy.update", team_id, None if old is None else old["doc"], doc, team_id)
    await admin.sync.changed()
    return McpPolicyOut(
        team_id=team_id,
        policy=body,
        updated_at=stored["updated_at"],
        updated_by=stored["updated_by"],
        version=await service.store.mcp.version(),
    )


async def delete_policy(service: AdminService, call: Call) -> m.Deleted:
    """``DELETE /admin/v1/mcp/policies/{team_id}``: drop the team's policy (the default applies again; 404 when
    none is stored)."""
    team_id = await _team(service, call)
    admin = _admin(service)
    old = await service.store.mcp.get_policy(team_id)
    if old is None or not await service.store.mcp.delete_policy(team_id):
        raise GatewayError(ErrorKind.NOT_FOUND, f"team {team_id} has no MCP tool policy", param="team_id")
    await _audited(service, call, "mcp.policy.delete", team_id, old["doc"], None, team_id)
    await admin.sync.changed()
    return m.Deleted(id=team_id)


# ---- helpers -------------------------------------------------------------------------------------------------


def public_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A server document as the audit trail and logs may hold it: credentials replaced by their names (headers,
    env) or by ``"set"`` (the bearer token).

    Example:
        >>> public_view({"id": "s", "transport": "stdio", "command": "x", "env": {"TOKEN": "v"}, "args": []})
        {'id': 's', 'transport': 'stdio', 'command': 'x', 'args': [], 'env': ['TOKEN']}
    """
    public, secret = split_credentials(doc)
    for name in ("headers", "env"):
        if name in secret:
            public[name] = sorted(secret[name])
    if "bearer_token" in secret:
        public["bearer_token"] = "set"  # noqa: S105 (a marker, not a credential)
    return public


def _plain(spec: McpHttpServer | McpStdioServer, *, whole: bool = False) -> dict[str, Any]:
    """The server document as given (``whole``: with every default), credentials in clear (only ever sealed, or
    reduced by :func:`public_view`)."""
    doc = spec.model_dump(mode="json", exclude_unset=not whole)
    doc["id"], doc["transport"] = spec.id, spec.transport
    if isinstance(spec, McpHttpServer):
        doc.pop("headers", None)
        doc.pop("bearer_token", None)
        if spec.headers:
            doc["headers"] = {k: v.get_secret_value() for k, v in spec.headers.items()}
        if spec.bearer_token is not None:
            doc["bearer_token"] = spec.bearer_token.get_secret_value()
    else:
        doc.pop("env", None)
        if spec.env:
            doc["env"] = {k: v.get_secret_value() for k, v in spec.env.items()}
    return doc


def _sealed(admin: McpAdmin, spec: McpHttpServer | McpStdioServer) -> tuple[dict[str, Any], str | None]:
    """The document the store keeps in clear, and the sealed credentials (``None``: the server has none)."""
    doc, secret = split_credentials(_plain(spec))
    return doc, admin.sealer.seal(secret) if secret else None


def _body(call: Call) -> McpHttpServer | McpStdioServer:
    body = call.body
    assert isinstance(body, McpServerIn)
    spec: McpHttpServer | McpStdioServer = body.root
    return spec


def _admin(service: AdminService) -> McpAdmin:
    if service.mcp is None:
        raise GatewayError(ErrorKind.NOT_READY, "this gateway's MCP tool gateway is not running")
    return service.mcp


def _config(service: AdminService) -> Config:
    return service.routing.config if service.routing is not None else service.config


def _config_servers(service: AdminService) -> dict[str, McpServer]:
    return {s.id: s for s in _config(service).mcp.servers}


def _not_configured(service: AdminService, server_id: str, why: str) -> None:
    if server_id in _config_servers(service):
        raise GatewayError(ErrorKind.CONFLICT, f"MCP server {server_id!r} {why}", param="id", code="defined_in_config")


def _unknown(server_id: str) -> GatewayError:
    return GatewayError(ErrorKind.NOT_FOUND, f"no MCP server {server_id!r}", param="id", code="mcp_server_not_found")


async def _stored(service: AdminService, server_id: str) -> StoredServer:
    try:
        check_server_id(server_id)
    except ValueError:
        raise _unknown(server_id) from None
    row = await service.store.mcp.get_server(server_id)
    if row is None:
        raise _unknown(server_id)
    return row


def _status(service: AdminService) -> dict[str, McpStatusOut]:
    if service.mcp is None:
        return {}
    return {str(s["id"]): McpStatusOut.model_validate(s) for s in service.mcp.catalog.status()}


def _credentials(service: AdminService, row: StoredServer) -> tuple[dict[str, Any], str]:
    """The stored server's credentials, and what the answer says of them (``unreadable``: another master key)."""
    if row["sealed"] is None:
        return {}, "none"
    if service.mcp is None:
        return {}, "sealed"
    try:
        return service.mcp.sealer.unseal(row["sealed"]), "sealed"
    except SealError:
        return {}, "unreadable"


def _stored_view(service: AdminService, row: StoredServer) -> dict[str, Any]:
    secret, _ = _credentials(service, row)
    return public_view(merge_credentials(row["doc"], secret))


_SERVER = TypeAdapter(McpServer)


def _out(
    spec: McpHttpServer | McpStdioServer,
    source: str,
    credentials: str,
    status: dict[str, McpStatusOut],
    updated: tuple[datetime | None, str | None] = (None, None),
) -> McpServerOut:
    """One server's answer: its whole definition (defaults filled in) without a credential."""
    view = public_view(_plain(spec, whole=True))
    stdio = isinstance(spec, McpStdioServer)
    return McpServerOut(
        id=spec.id,
        title=spec.title,
        transport=spec.transport,
        source="config" if source == "config" else "store",
        enabled=spec.enabled,
        timeout_s=spec.timeout_s,
        refresh_s=spec.refresh_s,
        on_change=spec.on_change,
        url=None if stdio else view.get("url"),
        command=view.get("command"),
        args=view.get("args") if stdio else None,
        cwd=view.get("cwd"),
        header_names=view.get("headers", []),
        env_names=view.get("env", []),
        bearer_token="set" if view.get("bearer_token") else None,
        credentials=credentials,
        status=status.get(spec.id),
        updated_at=updated[0],
        updated_by=updated[1],
    )


def _config_out(spec: McpServer, status: dict[str, McpStatusOut]) -> McpServerOut:
    return _out(spec, "config", "config", status)


def _stored_out(service: AdminService, row: StoredServer, status: dict[str, McpStatusOut]) -> McpServerOut:
    secret, said = _credentials(service, row)
    spec: McpHttpServer | McpStdioServer = _SERVER.validate_python(merge_credentials(row["doc"], secret))
    return _out(spec, "store", said, status, (row["updated_at"], row["updated_by"]))


async def _audited(
    service: AdminService,
    call: Call,
    action: str,
    target: str,
    before: Any,
    after: Any,
    team_id: str | None = None,
) -> None:
    """The audit record of one change (``before``/``after`` never hold a credential: callers pass public views)."""
    if service.audit is not None:
        await service.audit.record_and_flush(admin_event(call.principal.actor, action, target, team_id, before, after))


async def _team(service: AdminService, call: Call) -> str:
    """The path's team: 404 when unknown, or another team's for a team admin."""
    team_id = call.params["team_id"]
    service.scope_team(call.principal, team_id, "team", team_id)
    await service.store.teams.get(team_id)  # NotFound: 404 naming team_id
    return team_id
