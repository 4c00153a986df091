"""The request and response models of ``/admin/v1/mcp/*`` (:mod:`ferrogate.admin.mcp`): the one source of their
validation and of their OpenAPI schemas; and what the handlers need of the worker's MCP gateway (:class:`McpAdmin`).

A server's body is the configuration's own ``McpServer`` model (an HTTP or a stdio server, by ``transport``); a
policy's is the gateway's ``ToolPolicy``. No answer carries a credential: header and environment variable names
only, and whether a bearer token is set.

Example:
    >>> McpServerIn.model_validate({"id": "docs", "transport": "http", "url": "https://h/mcp"}).root.url
    'https://h/mcp'
    >>> McpServerIn.model_validate({"id": "docs", "transport": "http"})
    Traceback (most recent call last):
    ...
    ferrogate.errors.GatewayError: url: Field required
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, ValidatorFunctionWrapHandler
from pydantic import model_validator as _model_validator

from ferrogate.config.mcp import McpServer
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.mcp.policy import ToolPolicy
from ferrogate.mcp.secrets import Sealer

_TRANSPORTS = ("http", "stdio")


class McpServerIn(RootModel[McpServer]):
    """An MCP server to add or replace: an HTTP one (``url``, ``headers``, ``bearer_token``) or a stdio one
    (``command``, ``args``, ``env``, ``cwd``). Credentials (header values, the bearer token, environment values)
    are literal values here, stored sealed under the master key; they are never shown again.

    A refusal is a 400 naming the field as the document spells it (``url``, ``headers.X-Api-Key``), not pydantic's
    tagged path (``http.url``).
    """

    @_model_validator(mode="wrap")
    @classmethod
    def _named(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = [str(p) for p in first["loc"]]
            if loc and loc[0] in _TRANSPORTS:  # the discriminated union's tag
                loc = loc[1:]
            param = ".".join(loc) or ("transport" if "tag" in first["msg"] else "")
            message = f"{param}: {first['msg']}" if param else first["msg"]
            raise GatewayError(ErrorKind.INVALID_FIELD, message, param=param or None) from None


class McpStatusOut(BaseModel):
    """A server as this worker's catalog sees it (each worker answers for itself)."""

    model_config = ConfigDict(extra="allow")

    state: str = Field(description="connecting, ready, unavailable or disabled")
    protocol_version: str | None = Field(None, description='negotiated ("2026-07-28", "2025-11-25"...)')
    last_error: str | None = None
    tools: int = Field(0, description="tools listed (hidden ones left out)")
    flagged: list[str] = Field(default_factory=list, description="tools whose definition changed since approval")


class McpServerOut(BaseModel):
    """An MCP server in force: its definition without credentials, where it comes from, and its live status."""

    id: str
    title: str | None
    transport: Literal["http", "stdio"]
    source: Literal["config", "store"] = Field(description="config: the configuration file's (read-only here)")
    enabled: bool
    timeout_s: float
    refresh_s: float
    on_change: Literal["flag", "hide"]
    url: str | None = Field(description="http servers")
    command: str | None = Field(description="stdio servers")
    args: list[str] | None = Field(description="stdio servers")
    cwd: str | None = Field(description="stdio servers")
    header_names: list[str] = Field(description="static headers sent (their values are never shown)")
    env_names: list[str] = Field(description="environment variables given to a stdio server (values never shown)")
    bearer_token: Literal["set"] | None = Field(description='"set": a bearer token is sent (never shown)')
    credentials: Literal["none", "sealed", "config", "unreadable"] = Field(
        description="sealed: stored encrypted; unreadable: sealed under another master key (re-enter them)"
    )
    status: McpStatusOut | None = Field(description="null: this worker's catalog does not hold the server")
    updated_at: datetime | None = Field(description="null: the configuration file's")
    updated_by: str | None


class McpServerList(BaseModel):
    """Every MCP server in force: the configuration file's, then those added through this API."""

    data: list[McpServerOut]


class McpApprovalOut(BaseModel):
    """What an approval stored: the pinned hash of each tool the server lists now."""

    server_id: str
    pins: dict[str, str] = Field(description="tool name -> pin hash (sha256 of its name, description and schemas)")
    cleared: list[str] = Field(description="tools that were flagged and are approved now")
    version: int = Field(description="the store's MCP version: it rises with every change")


class McpChangedTool(BaseModel):
    """A tool whose definition differs from its approval."""

    server_id: str
    tool: str
    approved_hash: str | None = Field(description="null: the tool was added after the approval")
    seen_hash: str


class McpChangedList(BaseModel):
    """The tools flagged by this worker's catalog, by server and tool."""

    data: list[McpChangedTool]


class McpPolicyOut(BaseModel):
    """A team's stored tool policy."""

    team_id: str
    policy: ToolPolicy
    updated_at: datetime
    updated_by: str
    version: int = Field(description="the store's MCP version: it rises with every change")


# ---- what the admin plane needs of the worker's MCP gateway ----------------------------------------------------


class CatalogView(Protocol):
    """The worker's catalog (``mcp.catalog.Catalog``)."""

    def status(self) -> list[dict[str, Any]]:
        """One status per server: ``{id, title, transport, state, protocol_version, last_error, tools, flagged}``."""
        ...


class PinsView(Protocol):
    """The worker's tool pins (``mcp.pins.Pins``)."""

    def seen(self, server_id: str) -> Mapping[str, str]:
        """Tool name -> the hash of its current definition (what an approval stores)."""
        ...

    def flagged(self) -> Mapping[str, Mapping[str, tuple[str, str]]]:
        """Server -> tool -> (approved hash, seen hash) of the tools that differ from their approval."""
        ...


class PolicyCheck(Protocol):
    """The worker's tool policies (``mcp.policy.Policies``)."""

    def validate(self, team_id: str, doc: Any) -> object:
        """Raise ``ValueError`` (with ``.param``, e.g. ``allow[2]``) when ``doc`` cannot be ``team_id``'s policy."""
        ...


class ChangeFeed(Protocol):
    """The change feed of ``store.mcp`` (a ``guardrails.sync.PolicySync`` over it)."""

    async def changed(self) -> None:
        """Apply the store's MCP state in this worker now and announce the change to the others."""
        ...


class McpAdmin(Protocol):
    """What the admin handlers need of the worker's MCP gateway (:class:`McpParts` is one)."""

    @property
    def catalog(self) -> CatalogView: ...
    @property
    def pins(self) -> PinsView: ...
    @property
    def policies(self) -> PolicyCheck: ...
    @property
    def sealer(self) -> Sealer: ...
    @property
    def sync(self) -> ChangeFeed: ...


@dataclass(frozen=True, slots=True)
class McpParts:
    """The worker's MCP gateway as the admin plane takes it (``AdminService(..., mcp=McpParts(...))``)."""

    catalog: CatalogView
    pins: PinsView
    policies: PolicyCheck
    sealer: Sealer
    sync: ChangeFeed
