"""The store's interface: what the rest of ferrogate may ask of any backend.

Both backends (:class:`~ferrogate.store.sqlite.SqliteStore`, :class:`~ferrogate.store.postgres.PostgresStore`)
implement it through :class:`~ferrogate.store.sql.SqlStore` and pass the same test suite. Every write is one
transaction; every list is a keyset page ordered by ``(created_at, id)``.

Example:
    >>> # store = open_store("sqlite:///.ferrogate/ferrogate.db")
    >>> # await store.migrate(); await store.check_schema()
    >>> # team = await store.teams.create("ml")
    >>> # page = await store.keys.list(team_id=team.id, limit=100)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from ferrogate.store.audit import AuditEvent, AuditRecord, RequestFacts
from ferrogate.store.budgets import Balance, Hold, Reservation
from ferrogate.store.guardrails import GuardrailPolicy
from ferrogate.store.mcp import StoredPolicy, StoredServer
from ferrogate.store.records import Key, KeyMatch, Page, Team, User
from ferrogate.store.routing import Kind, RoutingOverride, RoutingOverrides
from ferrogate.store.usage import GroupBy, UsageRecord, UsageRow


class Teams(Protocol):
    """``store.teams`` (see :class:`~ferrogate.store.teams.SqlTeams` for each method's errors)."""

    async def create(
        self,
        name: str,
        *,
        allowed_models: Sequence[str] = ("*",),
        rpm: int | None = None,
        tpm: int | None = None,
        budget: float | None = None,
        budget_period: str | None = None,
        classification: str = "internal",
        metadata: Mapping[str, Any] | None = None,
    ) -> Team: ...
    async def get(self, team_id: str) -> Team: ...
    async def update(self, team_id: str, changes: Mapping[str, Any]) -> Team: ...
    async def delete(self, team_id: str) -> None: ...
    async def list(
        self, *, name_prefix: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[Team]: ...


class Users(Protocol):
    """``store.users`` (see :class:`~ferrogate.store.users.SqlUsers`)."""

    async def create(
        self,
        team_id: str,
        name: str,
        *,
        role: str = "member",
        email: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: float | None = None,
        budget_period: str | None = None,
    ) -> User: ...
    async def get(self, user_id: str) -> User: ...
    async def update(self, user_id: str, changes: Mapping[str, Any]) -> User: ...
    async def delete(self, user_id: str) -> None: ...
    async def list(
        self, *, team_id: str | None = None, role: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[User]: ...


class Keys(Protocol):
    """``store.keys`` (see :class:`~ferrogate.store.keys.SqlKeys`)."""

    async def create(
        self,
        key_hash: str,
        prefix: str,
        *,
        role: str = "member",
        name: str = "",
        team_id: str | None = None,
        user_id: str | None = None,
        allowed_models: Sequence[str] | None = None,
        expires_at: datetime | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        budget_period: str | None = None,
    ) -> Key: ...
    async def get(self, key_id: str) -> Key: ...
    async def get_by_hash(self, key_hash: str, *, now: datetime | None = None) -> KeyMatch | None: ...
    async def list(
        self,
        *,
        team_id: str | None = None,
        user_id: str | None = None,
        role: str | None = None,
        revoked: bool | None = None,
        name_prefix: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Key]: ...
    async def update(self, key_id: str, changes: Mapping[str, Any]) -> Key: ...
    async def revoke(self, key_id: str, *, at: datetime | None = None) -> Key: ...
    async def rotate(self, key_id: str, new_hash: str, new_prefix: str, grace_until: datetime) -> Key: ...
    async def touch_last_used(self, key_ids: Iterable[str], at: datetime) -> None: ...
    async def delete(self, key_id: str) -> None: ...


class Usage(Protocol):
    """``store.usage`` (see :class:`~ferrogate.store.usage.SqlUsage`)."""

    async def insert_many(
        self, records: Iterable[UsageRecord], *, validate: bool = True, fresh: bool = False
    ) -> int: ...
    async def get(self, request_id: str) -> UsageRecord: ...
    async def summary(
        self,
        *,
        team_id: str | None = None,
        key_id: str | None = None,
        user_id: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: GroupBy | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[UsageRow]: ...


class Budgets(Protocol):
    """``store.budgets`` (see :class:`~ferrogate.store.budgets.SqlBudgets`)."""

    async def reserve(
        self,
        request_id: str,
        holds: Sequence[Hold],
        amount_usd: float,
        *,
        now: datetime,
        ttl_s: float,
        soft_fraction: float | None = None,
    ) -> Reservation: ...
    async def balances(self, holds: Sequence[Hold], *, now: datetime) -> list[Balance]: ...
    async def release(self, request_id: str) -> None: ...


class Audit(Protocol):
    """``store.audit`` (see :class:`~ferrogate.store.audit.SqlAudit`)."""

    async def append_many(
        self, events: Iterable[AuditEvent | RequestFacts], *, validate: bool = True, fresh: bool = False
    ) -> int: ...
    async def list(
        self,
        *,
        actor: str | None = None,
        team_id: str | None = None,
        action: str | None = None,
        kind: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[AuditRecord]: ...
    async def scan(self, after: int | None = None, limit: int = 1000) -> Sequence[AuditRecord]: ...


class Guardrails(Protocol):
    """``store.guardrails``: guardrail policy documents by scope (see
    :class:`~ferrogate.store.guardrails.SqlGuardrails`).

    A scope is ``global``, ``team:<team id>`` or ``key:<key id>``; every ``put`` and ``delete`` raises ``version``.
    """

    async def all(self) -> dict[str, dict[str, Any]]: ...
    async def get(self, scope: str) -> GuardrailPolicy | None: ...
    async def put(self, scope: str, doc: Mapping[str, Any], actor: str) -> GuardrailPolicy: ...
    async def delete(self, scope: str) -> bool: ...
    async def version(self) -> int: ...


class Routing(Protocol):
    """``store.routing``: admin overrides of upstreams, model groups and the routing rules (see
    :class:`~ferrogate.store.routing.SqlRouting`).

    Every ``put`` and ``delete`` raises ``version``; given ``expect_version``, one made on top of another change is
    refused (``Conflict``).
    """

    async def overrides(self) -> RoutingOverrides: ...
    async def get(self, kind: Kind, name: str) -> RoutingOverride | None: ...
    async def put(
        self, kind: Kind, name: str, doc: Mapping[str, Any] | None, actor: str, *, expect_version: int | None = None
    ) -> RoutingOverride: ...
    async def delete(self, kind: Kind, name: str, *, expect_version: int | None = None) -> bool: ...
    async def version(self) -> int: ...


class Mcp(Protocol):
    """``store.mcp``: MCP servers added through the admin API (credentials sealed), tool policies by team, approved
    tool pins by server (see :class:`~ferrogate.store.mcp.SqlMcp`).

    Every write raises ``version``; ``all`` is what the change feed applies.
    """

    async def version(self) -> int: ...
    async def all(self) -> dict[str, dict[str, Any]]: ...
    async def servers(self) -> list[StoredServer]: ...
    async def get_server(self, server_id: str) -> StoredServer | None: ...
    async def put_server(
        self, server_id: str, doc: Mapping[str, Any], sealed: str | None, actor: str, *, create: bool = False
    ) -> StoredServer: ...
    async def delete_server(self, server_id: str, actor: str) -> bool: ...
    async def get_policy(self, team_id: str) -> StoredPolicy | None: ...
    async def put_policy(self, team_id: str, doc: Mapping[str, Any], actor: str) -> StoredPolicy: ...
    async def delete_policy(self, team_id: str) -> bool: ...
    async def approve(
        self, server_id: str, hashes: Mapping[str, str], actor: str, *, first_use: bool = False
    ) -> bool: ...
    async def pins(self, server_id: str) -> dict[str, str]: ...
    async def approved(self, server_id: str) -> dict[str, str] | None: ...


class Store(Protocol):
    """A store backend: entity repositories, schema management and health."""

    #: ``"sqlite"`` or ``"postgres"`` (shown by ``/ready``).
    kind: str

    @property
    def teams(self) -> Teams:
        """Team operations."""
        ...

    @property
    def users(self) -> Users:
        """User operations."""
        ...

    @property
    def keys(self) -> Keys:
        """Key operations."""
        ...

    @property
    def usage(self) -> Usage:
        """Usage records: batched inserts and summaries."""
        ...

    @property
    def budgets(self) -> Budgets:
        """The budget ledger: reservations and balances."""
        ...

    @property
    def audit(self) -> Audit:
        """The hash-chained audit trail: appends, filtered pages, the whole chain in order."""
        ...

    @property
    def guardrails(self) -> Guardrails:
        """Guardrail policy overrides (global, per team, per key) and their change counter."""
        ...

    @property
    def routing(self) -> Routing:
        """Admin overrides of upstreams, model groups and routing rules, and their change counter."""
        ...

    @property
    def mcp(self) -> Mcp:
        """MCP servers, tool policies and tool pins set through the admin API, and their change counter."""
        ...

    async def ping(self) -> str | None:
        """``None`` when the database answers, else a short description of the fault."""
        ...

    async def close(self) -> None:
        """Release connections (idempotent)."""
        ...

    async def migrate(self) -> list[int]:
        """Apply pending migrations in order; the versions applied now (``[]`` when up to date).

        Raises:
            SchemaError: the database is newer than the code, or a migration failed (and was rolled back).
        """
        ...

    async def schema_version(self) -> int:
        """The newest applied migration (0 for an empty database)."""
        ...

    async def check_schema(self) -> None:
        """Refuse to run against a schema that does not match the code.

        Raises:
            SchemaError: the database is newer (upgrade ferrogate) or migrations are pending (run
                ``ferrogate migrate``).
        """
        ...
