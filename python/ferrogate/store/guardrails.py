"""Guardrail policy overrides: one JSON document per scope, and a version that counts every change.

A scope is ``global``, ``team:<team id>`` or ``key:<key id>`` (:func:`scope_of`). The store keeps the documents
as given; what they may hold is checked before they get here (``Guardrails.validate``, by the admin API). Every
:meth:`~SqlGuardrails.put` and :meth:`~SqlGuardrails.delete` raises :meth:`~SqlGuardrails.version` by one in
the same transaction, so a worker that reads a new version and then :meth:`~SqlGuardrails.all` sees that
change (or a later one). Deleting a team or a key drops its override in the same transaction
(:func:`drop_statements`, run by ``store.teams.delete`` and ``store.keys.delete``).

Example:
    >>> scope_of("team", "team_0123456789abcdef")
    'team:team_0123456789abcdef'
    >>> # await store.guardrails.put("global", {"actions": {"pii": "redact"}}, actor="master")
    >>> # await store.guardrails.version()  # 1
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson

from ferrogate.store.errors import InvalidValue
from ferrogate.store.fields import json_value
from ferrogate.store.sql import Row, Statement

if TYPE_CHECKING:
    from ferrogate.store.sql import SqlStore

GLOBAL = "global"
_COLUMNS = "scope, doc, updated_at, updated_by"
_BUMP = "UPDATE guardrail_version SET version = version + 1 WHERE id = 1"
_BUMP_IF_ANY = f"{_BUMP} AND EXISTS (SELECT 1 FROM guardrail_policies WHERE scope = ?)"  # noqa: S608 (constant)


@dataclass(frozen=True, slots=True)
class GuardrailPolicy:
    """A stored policy document: its scope, the document, when and by whom it was last set."""

    scope: str
    doc: dict[str, Any]
    updated_at: datetime
    updated_by: str


def scope_of(kind: Literal["team", "key"], id: str) -> str:
    """The scope of a team's or a key's override.

    Example:
        >>> scope_of("key", "key_00")
        'key:key_00'
    """
    return f"{kind}:{id}"


def check_scope(scope: str) -> str:
    """``scope`` when it is ``global``, ``team:<id>`` or ``key:<id>``.

    Raises:
        InvalidValue: any other text.

    Example:
        >>> check_scope("team:")
        Traceback (most recent call last):
        ...
        ferrogate.store.errors.InvalidValue: scope 'team:' is invalid: expected global, team:<id> or key:<id>
    """
    kind, sep, id = scope.partition(":") if isinstance(scope, str) else ("", "", "")
    if scope == GLOBAL or (sep and kind in ("team", "key") and id):
        return scope
    raise InvalidValue("scope", scope, "global, team:<id> or key:<id>")


def drop_statements(scope: str) -> list[Statement]:
    """The statements that drop ``scope``'s override inside another write (a team's or a key's delete); the
    version goes up only when there was one.

    Example:
        >>> [sql.split()[0] for sql, _ in drop_statements("team:team_00")]
        ['UPDATE', 'DELETE']
    """
    return [
        (_BUMP_IF_ANY, (scope,)),
        ("DELETE FROM guardrail_policies WHERE scope = ?", (scope,)),
    ]


class SqlGuardrails:
    """``store.guardrails``: the policy documents by scope, and their version."""

    def __init__(self, db: SqlStore) -> None:
        self._db = db

    def _record(self, row: Row) -> GuardrailPolicy:
        doc = json_value(row["doc"])
        return GuardrailPolicy(row["scope"], doc, self._db.ts_out(row["updated_at"]), row["updated_by"])

    async def all(self) -> dict[str, dict[str, Any]]:
        """Every stored document by scope (read :meth:`version` first: a change between the two reads is then
        seen again at the next version check, never missed).

        Example:
            >>> # await store.guardrails.all()  # {"global": {...}, "team:team_...": {...}}
        """
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch("SELECT scope, doc FROM guardrail_policies ORDER BY scope")
        return {row["scope"]: json_value(row["doc"]) for row in rows}

    async def get(self, scope: str) -> GuardrailPolicy | None:
        """The document of ``scope``, or ``None`` when it has none.

        Raises:
            InvalidValue: ``scope`` is not ``global``, ``team:<id>`` or ``key:<id>``.

        Example:
            >>> # (await store.guardrails.get("global")).doc
        """
        async with self._db.transaction(write=False) as tx:
            sql = f"SELECT {_COLUMNS} FROM guardrail_policies WHERE scope = ?"  # noqa: S608 (constant columns)
            rows = await tx.fetch(sql, check_scope(scope))
        return self._record(rows[0]) if rows else None

    async def put(self, scope: str, doc: Mapping[str, Any], actor: str) -> GuardrailPolicy:
        """Set the document of ``scope`` (replacing any), recording ``actor``; the version goes up by one.

        Raises:
            InvalidValue: a bad scope, or ``doc`` is not a JSON object.

        Example:
            >>> # await store.guardrails.put("team:team_00", {"actions": {"pii": "block"}}, actor="key_00")
        """
        check_scope(scope)
        if not isinstance(doc, Mapping):
            raise InvalidValue("doc", doc, "a JSON object")
        try:
            text = orjson.dumps(dict(doc)).decode()
        except TypeError:
            raise InvalidValue("doc", doc, "a JSON-serialisable object") from None
        now = self._db.ts_in(datetime.now(UTC))
        async with self._db.transaction() as tx:
            rows = await tx.fetch(
                "INSERT INTO guardrail_policies (scope, doc, updated_at, updated_by) VALUES (?, ?, ?, ?)"  # noqa: S608
                " ON CONFLICT (scope) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at,"
                f" updated_by = excluded.updated_by RETURNING {_COLUMNS}",
                scope,
                text,
                now,
                actor,
            )
            await tx.execute(_BUMP)
        return self._record(rows[0])

    async def delete(self, scope: str) -> bool:
        """Drop the document of ``scope``; whether there was one (the version goes up only then).

        Raises:
            InvalidValue: a bad scope.

        Example:
            >>> # await store.guardrails.delete("key:key_00")  # True
        """
        check_scope(scope)
        async with self._db.transaction() as tx:
            gone = await tx.execute("DELETE FROM guardrail_policies WHERE scope = ?", scope)
            if gone:
                await tx.execute(_BUMP)
        return bool(gone)

    async def version(self) -> int:
        """The number of changes made so far (one indexed read: cheap enough to poll twice a second).

        Example:
            >>> # await store.guardrails.version()  # 0 on a new store
        """
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch("SELECT version FROM guardrail_version WHERE id = 1")
        return int(rows[0]["version"]) if rows else 0
