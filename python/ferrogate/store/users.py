"""Users: people in a team, each with one role (admin, team_admin, auditor, member).

Example:
    >>> # user = await store.users.create(team.id, "ana", role="team_admin", email="ana@example.com")
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ferrogate.store.fields import UPDATABLE, check, json_value
from ferrogate.store.records import Page, User, new_id
from ferrogate.store.sql import Row, Table

if TYPE_CHECKING:
    from ferrogate.store.sql import SqlStore

USERS = Table(
    "users",
    "user",
    (
        "id",
        "team_id",
        "name",
        "email",
        "role",
        "rpm",
        "tpm",
        "budget",
        "budget_period",
        "metadata",
        "created_at",
        "updated_at",
    ),
)


class SqlUsers:
    """``store.users``: create, get, update, delete and list users."""

    def __init__(self, db: SqlStore) -> None:
        self._db = db

    def _record(self, row: Row) -> User:
        return User(
            id=row["id"],
            team_id=row["team_id"],
            name=row["name"],
            email=row["email"],
            role=row["role"],
            rpm=row["rpm"],
            tpm=row["tpm"],
            budget=row["budget"],
            budget_period=row["budget_period"],
            metadata=json_value(row["metadata"]),
            created_at=self._db.ts_out(row["created_at"]),
            updated_at=self._db.ts_out(row["updated_at"]),
        )

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
    ) -> User:
        """Create a user in a team (names are unique within a team).

        Raises:
            InvalidReference: no team ``team_id``.
            Conflict: the team already has a user with this name.
            InvalidValue: a refused value (e.g. an unknown role).

        Example:
            >>> # user = await store.users.create(team.id, "ana", role="auditor")
        """
        values = check(
            "user",
            {
                "team_id": team_id,
                "name": name,
                "email": email,
                "role": role,
                "metadata": dict(metadata or {}),
                "rpm": rpm,
                "tpm": tpm,
                "budget": budget,
                "budget_period": budget_period,
            },
        )
        now = datetime.now(UTC)
        row = await self._db.insert(USERS, {"id": new_id("usr"), **values, "created_at": now, "updated_at": now})
        return self._record(row)

    async def get(self, user_id: str) -> User:
        """The user with ``user_id``.

        Raises:
            NotFound: no such user.

        Example:
            >>> # (await store.users.get("usr_0123456789abcdef")).role
        """
        return self._record(await self._db.get(USERS, user_id))

    async def update(self, user_id: str, changes: Mapping[str, Any]) -> User:
        """Set ``team_id``, ``name``, ``email``, ``role``, ``rpm``, ``tpm``, ``budget``, ``budget_period`` and/or
        ``metadata``; the others keep their values.

        Raises:
            NotFound: no such user.
            Conflict: the (new) team already has a user with this name.
            InvalidReference: the new ``team_id`` does not exist.
            InvalidValue: an unknown field or a refused value.

        Example:
            >>> # await store.users.update(user.id, {"role": "team_admin"})
        """
        values = check("user", changes, UPDATABLE["user"])
        return self._record(await self._db.update(USERS, user_id, values, datetime.now(UTC)))

    async def delete(self, user_id: str) -> None:
        """Delete a user who owns no keys.

        Raises:
            NotFound: no such user.
            InUse: keys still belong to the user.

        Example:
            >>> # await store.users.delete(user.id)
        """
        await self._db.delete(USERS, user_id)

    async def list(
        self, *, team_id: str | None = None, role: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[User]:
        """One page of users ordered by ``(created_at, id)``, optionally of one team and/or one role.

        Example:
            >>> # page = await store.users.list(team_id=team.id, role="member", limit=100)
        """
        filters: list[tuple[str, list[Any]]] = []
        if team_id is not None:
            filters.append(("team_id = ?", [team_id]))
        if role is not None:
            filters.append(("role = ?", [check("user", {"role": role})["role"]]))
        rows, next_cursor = await self._db.page(USERS, filters, limit, cursor)
        return Page([self._record(r) for r in rows], next_cursor)
