"""Teams: the unit that owns users, keys, model access, limits and a budget.

Example:
    >>> # team = await store.teams.create("ml", allowed_models=["gpt-4o*"], rpm=600)
    >>> # await store.teams.update(team.id, {"budget": 100.0, "budget_period": "monthly"})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ferrogate.store.fields import UPDATABLE, check, json_value
from ferrogate.store.guardrails import drop_statements, scope_of
from ferrogate.store.mcp import drop_policy_statements
from ferrogate.store.records import Page, Team, new_id
from ferrogate.store.sql import Row, Table

if TYPE_CHECKING:
    from ferrogate.store.sql import SqlStore

TEAMS = Table(
    "teams",
    "team",
    (
        "id",
        "name",
        "allowed_models",
        "rpm",
        "tpm",
        "budget",
        "budget_period",
        "classification",
        "metadata",
        "created_at",
        "updated_at",
    ),
)


def name_prefix_filter(prefix: str) -> tuple[str, list[Any]]:
    """A case-sensitive ``name`` prefix filter that reads the same in SQLite and PostgreSQL.

    Example:
        >>> name_prefix_filter("ml-")
        ('substr(name, 1, ?) = ?', [3, 'ml-'])
    """
    return "substr(name, 1, ?) = ?", [len(prefix), prefix]


class SqlTeams:
    """``store.teams``: create, get, update, delete and list teams."""

    def __init__(self, db: SqlStore) -> None:
        self._db = db

    def _record(self, row: Row) -> Team:
        return Team(
            id=row["id"],
            name=row["name"],
            allowed_models=tuple(json_value(row["allowed_models"])),
            rpm=row["rpm"],
            tpm=row["tpm"],
            budget=row["budget"],
            budget_period=row["budget_period"],
            classification=row["classification"],
            metadata=json_value(row["metadata"]),
            created_at=self._db.ts_out(row["created_at"]),
            updated_at=self._db.ts_out(row["updated_at"]),
        )

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
    ) -> Team:
        """Create a team.

        Raises:
            Conflict: a team with this name exists.
            InvalidValue: a field is refused (e.g. ``budget_period`` not daily/weekly/monthly/total).

        Example:
            >>> # team = await store.teams.create("ml", rpm=600, budget=50.0, budget_period="monthly")
        """
        values = check(
            "team",
            {
                "name": name,
                "allowed_models": allowed_models,
                "rpm": rpm,
                "tpm": tpm,
                "budget": budget,
                "budget_period": budget_period,
                "classification": classification,
                "metadata": dict(metadata or {}),
            },
        )
        now = datetime.now(UTC)
        row = await self._db.insert(TEAMS, {"id": new_id("team"), **values, "created_at": now, "updated_at": now})
        return self._record(row)

    async def get(self, team_id: str) -> Team:
        """The team with ``team_id``.

        Raises:
            NotFound: no such team.

        Example:
            >>> # (await store.teams.get("team_0123456789abcdef")).name
        """
        return self._record(await self._db.get(TEAMS, team_id))

    async def update(self, team_id: str, changes: Mapping[str, Any]) -> Team:
        """Set the fields in ``changes`` (any of the create arguments); the others keep their values.

        Raises:
            NotFound: no such team.
            Conflict: the new name is taken.
            InvalidValue: an unknown field or a refused value.

        Example:
            >>> # await store.teams.update(team.id, {"rpm": None, "metadata": {"owner": "ana"}})
        """
        values = check("team", changes, UPDATABLE["team"])
        return self._record(await self._db.update(TEAMS, team_id, values, datetime.now(UTC)))

    async def delete(self, team_id: str) -> None:
        """Delete a team that has no users and no keys, its guardrail override and its MCP tool policy (one
        transaction).

        Raises:
            NotFound: no such team.
            InUse: users or keys still belong to it.

        Example:
            >>> # await store.teams.delete(team.id)
        """
        await self._db.delete(
            TEAMS, team_id, [*drop_statements(scope_of("team", team_id)), *drop_policy_statements(team_id)]
        )

    async def list(self, *, name_prefix: str | None = None, limit: int = 100, cursor: str | None = None) -> Page[Team]:
        """One page of teams ordered by ``(created_at, id)``.

        Example:
            >>> # page = await store.teams.list(name_prefix="ml-", limit=50)
            >>> # more = await store.teams.list(name_prefix="ml-", limit=50, cursor=page.next_cursor)
        """
        filters = [name_prefix_filter(name_prefix)] if name_prefix is not None else []
        rows, next_cursor = await self._db.page(TEAMS, filters, limit, cursor)
        return Page([self._record(r) for r in rows], next_cursor)
