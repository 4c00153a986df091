"""Roles and permissions of the admin plane: deny by default.

Every admin route declares one :class:`Permission` in the route table; a principal may call
it only when its role's set holds that permission. ``team_admin`` principals are further
scoped to their own team by the handlers (another team's objects are 404 to them).

Example:
    >>> allowed(Role.AUDITOR, Permission.USAGE_READ), allowed(Role.AUDITOR, Permission.KEYS_WRITE)
    (True, False)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    """Who a credential speaks for."""

    ADMIN = "admin"
    TEAM_ADMIN = "team_admin"
    AUDITOR = "auditor"
    MEMBER = "member"


class Permission(enum.StrEnum):
    """What an admin route needs."""

    PUBLIC = "public"  # no credential needed (the OpenAPI document)
    TEAMS_READ = "teams:read"
    TEAMS_WRITE = "teams:write"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    KEYS_READ = "keys:read"
    KEYS_WRITE = "keys:write"
    LLM_READ = "llm:read"
    LLM_WRITE = "llm:write"
    USAGE_READ = "usage:read"
    AUDIT_READ = "audit:read"
    GUARDRAILS_READ = "guardrails:read"
    GUARDRAILS_WRITE = "guardrails:write"
    MCP_READ = "mcp:read"
    MCP_WRITE = "mcp:write"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.TEAM_ADMIN: frozenset(
        {
            Permission.PUBLIC,
            Permission.TEAMS_READ,
            Permission.USERS_READ,
            Permission.USERS_WRITE,
            Permission.KEYS_READ,
            Permission.KEYS_WRITE,
            Permission.LLM_READ,
            Permission.USAGE_READ,
            Permission.GUARDRAILS_READ,
            Permission.MCP_READ,
        }
    ),
    Role.AUDITOR: frozenset(
        {
            Permission.PUBLIC,
            Permission.USAGE_READ,
            Permission.AUDIT_READ,
            Permission.GUARDRAILS_READ,
            Permission.LLM_READ,
            Permission.MCP_READ,
        }
    ),
    Role.MEMBER: frozenset({Permission.PUBLIC}),
}


def allowed(role: Role, permission: Permission) -> bool:
    """Whether ``role`` holds ``permission``."""
    return permission in GRANTS[role]


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of an admin route: its role, and its team when the role is team-scoped."""

    role: Role
    team_id: str | None = None
    key_id: str | None = None  # None for the master key

    @property
    def actor(self) -> str:
        """How the audit trail names this caller."""
        return self.key_id or "master"

    def sees_team(self, team_id: str | None) -> bool:
        """Whether objects of ``team_id`` are visible to this caller."""
        return self.role is not Role.TEAM_ADMIN or (team_id is not None and team_id == self.team_id)
