"""What the store returns: frozen dataclasses with parsed JSON fields and aware UTC datetimes.

Example:
    >>> from datetime import UTC, datetime
    >>> t = datetime(2025, 1, 1, tzinfo=UTC)
    >>> team = Team("team_0123456789abcdef", "ml", ("*",), None, None, None, None, "internal", {}, t, t)
    >>> team.allowed_models
    ('*',)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

Role = Literal["admin", "team_admin", "auditor", "member"]
BudgetPeriod = Literal["daily", "weekly", "monthly", "total"]
ROLES: tuple[str, ...] = ("admin", "team_admin", "auditor", "member")
BUDGET_PERIODS: tuple[str, ...] = ("daily", "weekly", "monthly", "total")


def new_id(prefix: str) -> str:
    """A fresh id: ``prefix`` + ``_`` + 16 random hex characters.

    Example:
        >>> len(new_id("team"))
        21
    """
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class Team:
    """A team: the unit that owns users, keys, model access, limits and a budget."""

    id: str
    name: str
    allowed_models: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    budget: float | None
    budget_period: BudgetPeriod | None
    classification: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class User:
    """A person in a team, with one role."""

    id: str
    team_id: str
    name: str
    email: str | None
    role: Role
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    rpm: int | None = None
    tpm: int | None = None
    budget: float | None = None
    budget_period: BudgetPeriod | None = None


@dataclass(frozen=True, slots=True)
class Key:
    """A virtual key (role ``member``, data plane) or an admin key (``admin``/``team_admin``/``auditor``).

    The store holds only ``key_hash`` (HMAC-SHA256 hex, computed by the caller) and a display ``prefix``.
    ``None`` in ``allowed_models``/``rpm``/``tpm``/``budget`` means "no limit of the key's own" (the team's and
    the user's still apply). A key budget without ``budget_period`` is a ``total`` budget.
    """

    id: str
    key_hash: str
    prefix: str
    name: str
    team_id: str | None
    user_id: str | None
    role: Role
    allowed_models: tuple[str, ...] | None
    expires_at: datetime | None
    rpm: int | None
    tpm: int | None
    budget: float | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    previous_hash: str | None
    previous_expires_at: datetime | None
    budget_period: BudgetPeriod | None = None

    def usable(self, now: datetime) -> bool:
        """``True`` when the key is neither revoked nor expired at ``now``.

        Example:
            >>> from datetime import UTC, datetime
            >>> # key.usable(datetime.now(UTC))
        """
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """The answer of ``get_key_by_hash``: the key, and which hash matched (``previous`` = rotation grace)."""

    key: Key
    matched: Literal["current", "previous"]


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list, ordered by ``(created_at, id)``; pass ``next_cursor`` back for the next page.

    ``next_cursor`` is ``None`` on the last page.
    """

    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None
