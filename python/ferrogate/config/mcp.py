"""The MCP part of the configuration: upstream MCP servers and the tool gateway's defaults (docs/mcp.md).

An upstream server is reached over Streamable HTTP (``transport: http``, either protocol generation, negotiated)
or started as a child process speaking stdio (``transport: stdio``). Credentials (header values, the bearer
token, environment values) are secrets: ``${ENV}`` references are interpolated by the loader, the values are
never logged nor returned by the admin API.

Example:
    >>> s = McpSettings.model_validate({"servers": [{"id": "docs", "transport": "http", "url": "http://h/mcp"}]})
    >>> s.servers[0].transport, s.servers[0].timeout_s
    ('http', 30.0)
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

#: A server id: lowercase letters, digits and ``-`` (no ``_``, so ``<server>__<tool>`` splits unambiguously).
SERVER_ID = r"^[a-z0-9][a-z0-9-]{0,31}$"
#: The characters of a policy glob (``server/tool`` patterns matched with :func:`fnmatch.fnmatchcase`).
_GLOB = re.compile(r"^[A-Za-z0-9_.*?\-/\[\]]{1,200}$")
#: An HTTP header name (RFC 9110 token).
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")


def check_glob(glob: str) -> str:
    """``glob`` if it is a valid policy pattern (1-200 characters of ``[A-Za-z0-9_.*?-/[]]``), else ValueError.

    Example:
        >>> check_glob("github/*")
        'github/*'
    """
    if not _GLOB.match(glob):
        raise ValueError(f"{glob[:60]!r} is not a tool pattern: 1-200 characters of A-Z a-z 0-9 _ . * ? - / [ ]")
    return glob


#: A policy glob, validated by :func:`check_glob` (each item of a list names its index in errors).
Glob = Annotated[str, AfterValidator(check_glob)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class McpServerBase(_Strict):
    """What every upstream MCP server has, whatever its transport."""

    id: str = Field(pattern=SERVER_ID, description="names the server: tools are listed as <id>__<tool>")
    title: str | None = Field(None, max_length=200, description="a human-readable name")
    timeout_s: float = Field(
        30.0, gt=0, le=3600, description="one call's limit: past it the call is cancelled upstream (504)"
    )
    refresh_s: float = Field(300.0, gt=0, le=86_400, description="tools, resources and prompts listed again this often")
    on_change: Literal["flag", "hide"] = Field(
        "flag", description="a tool whose definition changed since approval: flagged only, or hidden until approved"
    )
    enabled: bool = Field(True, description="off: not connected, its tools not listed")


class McpHttpServer(McpServerBase):
    """An MCP server reached over Streamable HTTP (2025-11-25 sessions or 2026-07-28 stateless, negotiated)."""

    transport: Literal["http"]
    url: str = Field(description="the MCP endpoint, e.g. https://mcp.example.com/mcp")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="static headers (values are secret)")
    bearer_token: SecretStr | None = Field(None, description="sent as Authorization: Bearer <token>")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name in value:
            if not _HEADER.match(name):
                raise ValueError(f"{name[:60]!r} is not an HTTP header name")
        return value

    @model_validator(mode="after")
    def _one_authorization(self) -> McpHttpServer:
        if self.bearer_token is not None and any(n.lower() == "authorization" for n in self.headers):
            raise ValueError("headers.Authorization and bearer_token both set the Authorization header")
        return self


class McpStdioServer(McpServerBase):
    """An MCP server started as a child process of each worker, speaking JSON-RPC on its stdin and stdout.

    The child gets only a safe subset of the worker's environment (HOME, PATH, ...) plus ``env``; it is restarted
    with a backoff when it exits.
    """

    transport: Literal["stdio"]
    command: str = Field(min_length=1, description="the executable")
    args: list[str] = Field(default_factory=list)
    env: dict[str, SecretStr] = Field(default_factory=dict, description="added to the child's environment (secret)")
    cwd: str | None = Field(None, description="the child's working directory (None: the worker's)")


#: One upstream MCP server of the configuration (or of the admin API), discriminated by ``transport``.
McpServer = Annotated[McpHttpServer | McpStdioServer, Field(discriminator="transport")]


class McpDefaultPolicy(_Strict):
    """The tool policy of a team that has none stored: ``allow``/``deny`` globs over ``server/tool``.

    The default allows nothing (deny by default). ``"server"`` alone means ``"server/*"``; ``"*"`` everything.
    """

    allow: list[Glob] = Field(default_factory=list)
    deny: list[Glob] = Field(default_factory=list)


class McpSettings(_Strict):
    """The MCP tool gateway: its upstream servers and the defaults of tool calls (docs/mcp.md)."""

    enabled: bool = Field(True, description="off: no upstream is connected, /mcp and /mcp/v1 answer 404")
    servers: list[McpServer] = Field(default_factory=list)
    tool_calls_per_minute: int | None = Field(
        None, ge=1, le=1_000_000, description="a key's tool calls per minute when no policy sets it (None: no limit)"
    )
    default_policy: McpDefaultPolicy = Field(
        default_factory=McpDefaultPolicy, description="for teams without a stored policy (default: no tools)"
    )
    max_argument_bytes: int = Field(
        1_048_576, ge=1024, le=64 * 1024 * 1024, description="a tool call's arguments (JSON) at most this"
    )
