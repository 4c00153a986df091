"""Admin API request and response models (pydantic): the one source of validation and of the OpenAPI schemas.

Requests forbid unknown fields, so a typo is a 400 that names the field. Every request field is bounded:
integers to what the store's BIGINT columns hold (signed 64-bit), money to a finite amount, strings, lists
and metadata to a length, so no value reaches the store that it would refuse with an internal error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

RoleName = Literal["admin", "team_admin", "auditor", "member"]
Period = Literal["daily", "weekly", "monthly", "total"]
#: The largest integer a BIGINT column holds.
INT64_MAX = 2**63 - 1
Name = Annotated[str, Field(min_length=1, max_length=200)]
Glob = Annotated[str, Field(min_length=1, max_length=200)]
Globs = Annotated[list[Glob], Field(max_length=1000)]
#: An id given in a body or query (``team_id``, ``key_id``...), a filter value, a page cursor.
Ref = Annotated[str, Field(max_length=200)]
Filter = Annotated[str, Field(max_length=200)]
Cursor = Annotated[str, Field(max_length=1000)]
PositiveInt = Annotated[int, Field(ge=1, le=INT64_MAX)]
Money = Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False)]
Metadata = Annotated[dict[Annotated[str, Field(max_length=200)], Any], Field(max_length=256)]


def _in_utc_range(value: datetime) -> datetime:
    """A time the store can hold: one that has a UTC form (``9999-12-31T23:59:59-23:00`` has none)."""
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("the time is outside the years 1 to 9999 in UTC") from None
    return value


#: A time given to the admin API (expiries, query bounds).
Instant = Annotated[datetime, AfterValidator(_in_utc_range)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---- teams ---------------------------------------------------------------------------------


class TeamCreate(_In):
    """A new team."""

    name: Name
    allowed_models: Globs = Field(default_factory=lambda: ["*"], description="model globs, e.g. gpt-4o*")
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    budget: Money | None = Field(None, description="USD per budget_period")
    budget_period: Period | None = None
    classification: str = Field("internal", min_length=1, max_length=64)
    metadata: Metadata = Field(default_factory=dict)


class TeamUpdate(_In):
    """Fields to change on a team (only those given change)."""

    name: Name | None = None
    allowed_models: Globs | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    budget: Money | None = None
    budget_period: Period | None = None
    classification: str | None = Field(None, min_length=1, max_length=64)
    metadata: Metadata | None = None


class TeamOut(_Out):
    """A team."""

    id: str
    name: str
    allowed_models: list[str]
    rpm: int | None
    tpm: int | None
    budget: float | None
    budget_period: Period | None
    classification: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class TeamList(BaseModel):
    """One page of teams; pass ``next_cursor`` as ``cursor`` for the next."""

    data: list[TeamOut]
    next_cursor: str | None


class TeamQuery(_In):
    """Filters and paging of the team list."""

    name_prefix: Filter | None = None
    limit: int = Field(100, ge=1, le=1000)
    cursor: Cursor | None = None


# ---- users ---------------------------------------------------------------------------------


class UserCreate(_In):
    """A new user of a team."""

    team_id: Ref
    name: Name
    email: str | None = Field(None, max_length=320)
    role: RoleName = "member"
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    budget: Money | None = Field(None, description="USD per budget_period (default period: total)")
    budget_period: Period | None = None
    metadata: Metadata = Field(default_factory=dict)


class UserUpdate(_In):
    """Fields to change on a user."""

    name: Name | None = None
    email: str | None = Field(None, max_length=320)
    role: RoleName | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    budget: Money | None = None
    budget_period: Period | None = None
    metadata: Metadata | None = None


class UserOut(_Out):
    """A user."""

    id: str
    team_id: str
    name: str
    email: str | None
    role: RoleName
    rpm: int | None
    tpm: int | None
    budget: float | None
    budget_period: Period | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class UserList(BaseModel):
    """One page of users."""

    data: list[UserOut]
    next_cursor: str | None


class UserQuery(_In):
    """Filters and paging of the user list."""

    team_id: Filter | None = None
    role: RoleName | None = None
    limit: int = Field(100, ge=1, le=1000)
    cursor: Cursor | None = None


# ---- keys ----------------------------------------------------------------------------------


class KeyCreate(_In):
    """A new key: a virtual key (role ``member``) or an admin key (``admin``, ``team_admin``, ``auditor``)."""

    name: Name
    team_id: Ref | None = Field(None, description="required for member and team_admin keys")
    user_id: Ref | None = None
    role: RoleName = "member"
    allowed_models: Globs | None = Field(None, description="narrows the team's; null = the team's")
    expires_at: Instant | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    budget: Money | None = Field(None, description="USD per budget_period (default period: total)")
    budget_period: Period | None = None
    metadata: Metadata = Field(default_factory=dict)


class KeyUpdate(_In):
    """Fields to change on a key."""

    name: Name | None = None
    allowed_models: Globs | None = None
    expires_at: Instant | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    budget: Money | None = None
    budget_period: Period | None = None
    metadata: Metadata | None = None


class KeyRotate(_In):
    """How long the old secret keeps working after a rotation."""

    grace_period_s: int = Field(86_400, ge=0, le=30 * 86_400)


class KeyOut(_Out):
    """A key as listed: never its secret, only its display prefix."""

    id: str
    prefix: str
    name: str
    team_id: str | None
    user_id: str | None
    role: RoleName
    allowed_models: list[str] | None
    expires_at: datetime | None
    rpm: int | None
    tpm: int | None
    budget: float | None
    budget_period: Period | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    previous_expires_at: datetime | None = Field(description="the old secret of a rotation works until then")


class KeySecret(KeyOut):
    """A key with its secret: returned once, by create and rotate."""

    key: str = Field(description="the secret; shown only now, store it safely")


class KeyList(BaseModel):
    """One page of keys."""

    data: list[KeyOut]
    next_cursor: str | None


class KeyQuery(_In):
    """Filters and paging of the key list."""

    team_id: Filter | None = None
    user_id: Filter | None = None
    role: RoleName | None = None
    revoked: bool | None = None
    name_prefix: Filter | None = None
    limit: int = Field(100, ge=1, le=1000)
    cursor: Cursor | None = None


# ---- shared --------------------------------------------------------------------------------


class Deleted(BaseModel):
    """The answer to a delete."""

    id: str
    deleted: bool = True


class Empty(_In):
    """No parameters."""


# ---- usage ---------------------------------------------------------------------------------


class UsageQuery(_In):
    """Filters, grouping and paging of usage sums (``from`` inclusive, ``to`` exclusive, ISO-8601)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    team_id: Filter | None = None
    key_id: Filter | None = None
    user_id: Filter | None = None
    model: Filter | None = None
    since: Instant | None = Field(None, alias="from")
    until: Instant | None = Field(None, alias="to")
    group_by: Literal["model", "day", "key"] | None = None
    limit: int = Field(100, ge=1, le=1000)
    cursor: Cursor | None = None


class UsageRowOut(_Out):
    """Sums over a group of requests (``group`` is null when ungrouped)."""

    group: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float = Field(description="priced requests only; see unpriced_requests")
    unpriced_requests: int


class UsageList(BaseModel):
    """One page of usage sums."""

    data: list[UsageRowOut]
    next_cursor: str | None


# ---- audit ---------------------------------------------------------------------------------


class AuditQuery(_In):
    """Filters and paging of the audit trail (``from`` inclusive, ``to`` exclusive, ISO-8601; chain order)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    actor: Filter | None = Field(None, description='a key id, "master" or "cli" (admin events); a key id (requests)')
    team_id: Filter | None = None
    action: Filter | None = Field(None, description="e.g. team.create, key.revoke, chat.completions")
    kind: Literal["admin", "request"] | None = None
    target: Filter | None = Field(None, description="the id of the object changed, or the model requested")
    since: Instant | None = Field(None, alias="from")
    until: Instant | None = Field(None, alias="to")
    limit: int = Field(100, ge=1, le=1000)
    cursor: Cursor | None = None


class AuditOut(BaseModel):
    """One record of the audit trail, with its place in the hash chain."""

    seq: int = Field(description="position in the chain: 1, 2, 3, ...")
    event_id: str
    created_at: datetime
    kind: Literal["admin", "request"]
    actor: str
    action: str
    target: str | None
    team_id: str | None
    data: dict[str, Any] | str = Field(
        description="admin: before, after, changed (secrets removed); request: ids, model, status, tokens, cost, "
        "latency (no prompt or completion content)"
    )
    prev_hash: str
    hash: str = Field(description="SHA-256 over the record's fields and prev_hash (see docs/audit.md)")

    @classmethod
    def of(cls, record: Any) -> AuditOut:
        """The answer form of a :class:`~ferrogate.store.audit.AuditRecord` (its JSON data parsed)."""
        values = {name: getattr(record, name) for name in cls.model_fields}
        values["data"] = record.payload()
        return cls.model_validate(values)


class AuditList(BaseModel):
    """One page of the audit trail, in chain order; pass ``next_cursor`` as ``cursor`` for the next."""

    data: list[AuditOut]
    next_cursor: str | None
