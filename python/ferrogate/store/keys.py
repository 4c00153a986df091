"""Keys: virtual keys (role ``member``, data plane) and admin keys (``admin``/``team_admin``/``auditor``).

The store never sees a raw key: callers pass ``key_hash`` (HMAC-SHA256 hex) and a display ``prefix``.

Example:
    >>> # key = await store.keys.create(hmac_hex, "fg-AbCdE", team_id=team.id, name="ci")
    >>> # match = await store.keys.get_by_hash(hmac_hex)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ferrogate.store.errors import Conflict, InvalidValue
from ferrogate.store.fields import UPDATABLE, check, json_value, when
from ferrogate.store.guardrails import drop_statements, scope_of
from ferrogate.store.records import Key, KeyMatch, Page, new_id
from ferrogate.store.sql import Row, Table
from ferrogate.store.teams import name_prefix_filter

if TYPE_CHECKING:
    from ferrogate.store.sql import SqlStore

KEYS = Table(
    "keys",
    "key",
    (
        "id",
        "key_hash",
        "prefix",
        "name",
        "team_id",
        "user_id",
        "role",
        "allowed_models",
        "expires_at",
        "rpm",
        "tpm",
        "budget",
        "budget_period",
        "metadata",
        "created_at",
        "updated_at",
        "last_used_at",
        "revoked_at",
        "previous_hash",
        "previous_expires_at",
    ),
)
#: Roles whose keys must belong to a team.
TEAM_ROLES = ("member", "team_admin")


class SqlKeys:
    """``store.keys``: create, look up (by id or hash), list, update, revoke, rotate, touch and delete keys."""

    def __init__(self, db: SqlStore) -> None:
        self._db = db

    def _record(self, row: Row) -> Key:
        models = json_value(row["allowed_models"])
        ts, opt = self._db.ts_out, self._db.opt_ts
        return Key(
            id=row["id"],
            key_hash=row["key_hash"],
            prefix=row["prefix"],
            name=row["name"],
            team_id=row["team_id"],
            user_id=row["user_id"],
            role=row["role"],
            allowed_models=None if models is None else tuple(models),
            expires_at=opt(row["expires_at"]),
            rpm=row["rpm"],
            tpm=row["tpm"],
            budget=row["budget"],
            metadata=json_value(row["metadata"]),
            created_at=ts(row["created_at"]),
            updated_at=ts(row["updated_at"]),
            last_used_at=opt(row["last_used_at"]),
            revoked_at=opt(row["revoked_at"]),
            previous_hash=row["previous_hash"],
            previous_expires_at=opt(row["previous_expires_at"]),
            budget_period=row["budget_period"],
        )

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
    ) -> Key:
        """Store a new key. ``member`` and ``team_admin`` keys need a ``team_id``; ``None`` overrides inherit.

        Raises:
            Conflict: ``key_hash`` is already stored.
            InvalidReference: ``team_id`` or ``user_id`` does not exist.
            InvalidValue: a refused value (hash not 64 hex chars, naive ``expires_at``, unknown role, ...).

        Example:
            >>> # key = await store.keys.create(hmac_hex, "fg-AbCdE", team_id=team.id, rpm=60)
        """
        values = check(
            "key",
            {
                "key_hash": key_hash,
                "prefix": prefix,
                "name": name,
                "team_id": team_id,
                "user_id": user_id,
                "role": role,
                "allowed_models": allowed_models,
                "expires_at": expires_at,
                "rpm": rpm,
                "tpm": tpm,
                "budget": budget,
                "budget_period": budget_period,
                "metadata": dict(metadata or {}),
            },
        )
        if role in TEAM_ROLES and team_id is None:
            raise InvalidValue("team_id", None, f"a team id for a {role} key")
        now = datetime.now(UTC)
        row = await self._db.insert(KEYS, {"id": new_id("key"), **values, "created_at": now, "updated_at": now})
        return self._record(row)

    async def get(self, key_id: str) -> Key:
        """The key with ``key_id``.

        Raises:
            NotFound: no such key.

        Example:
            >>> # (await store.keys.get("key_0123456789abcdef")).prefix
        """
        return self._record(await self._db.get(KEYS, key_id))

    async def get_by_hash(self, key_hash: str, *, now: datetime | None = None) -> KeyMatch | None:
        """The key whose ``key_hash`` is ``key_hash``, or whose ``previous_hash`` is while its grace lasts.

        Revoked and expired keys are returned too (check :meth:`Key.usable`), so the caller can say why a
        key is refused. ``None`` when nothing matches.

        Example:
            >>> # match = await store.keys.get_by_hash(hmac_hex)
            >>> # match.matched  # "current", or "previous" during a rotation's grace period
        """
        at = datetime.now(UTC) if now is None else when("now", now)
        sql = (
            f"SELECT {KEYS.select} FROM keys "  # noqa: S608
            "WHERE key_hash = ? OR (previous_hash = ? AND previous_expires_at > ?)"
        )
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch(sql, key_hash, key_hash, self._db.ts_in(at))
        for row in rows:
            if row["key_hash"] == key_hash:
                return KeyMatch(self._record(row), "current")
        return KeyMatch(self._record(rows[0]), "previous") if rows else None

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
    ) -> Page[Key]:
        """One page of keys ordered by ``(created_at, id)``; every given filter must hold.

        Example:
            >>> # page = await store.keys.list(team_id=team.id, revoked=False, limit=100)
            >>> # while page.next_cursor: page = await store.keys.list(team_id=team.id, revoked=False,
            >>> #     limit=100, cursor=page.next_cursor)
        """
        filters: list[tuple[str, list[Any]]] = []
        if team_id is not None:
            filters.append(("team_id = ?", [team_id]))
        if user_id is not None:
            filters.append(("user_id = ?", [user_id]))
        if role is not None:
            filters.append(("role = ?", [check("key", {"role": role})["role"]]))
        if revoked is not None:
            filters.append((f"revoked_at IS {'NOT ' if revoked else ''}NULL", []))
        if name_prefix is not None:
            filters.append(name_prefix_filter(name_prefix))
        rows, next_cursor = await self._db.page(KEYS, filters, limit, cursor)
        return Page([self._record(r) for r in rows], next_cursor)

    async def update(self, key_id: str, changes: Mapping[str, Any]) -> Key:
        """Set ``name``, ``allowed_models``, ``expires_at``, ``rpm``, ``tpm``, ``budget``, ``budget_period`` and/or
        ``metadata``.

        The hash changes only through :meth:`rotate`; owner and role never change.

        Raises:
            NotFound: no such key.
            InvalidValue: an unknown or read-only field, or a refused value.

        Example:
            >>> # await store.keys.update(key.id, {"rpm": 120, "allowed_models": None})
        """
        values = check("key", changes, UPDATABLE["key"])
        return self._record(await self._db.update(KEYS, key_id, values, datetime.now(UTC)))

    async def revoke(self, key_id: str, *, at: datetime | None = None) -> Key:
        """Mark the key revoked (at ``at``, default now). Revoking twice keeps the first time.

        Raises:
            NotFound: no such key.

        Example:
            >>> # (await store.keys.revoke(key.id)).revoked_at is not None
        """
        stamp = self._db.ts_in(datetime.now(UTC) if at is None else when("at", at))
        sql = (
            f"UPDATE keys SET revoked_at = COALESCE(revoked_at, ?), updated_at = ? "  # noqa: S608
            f"WHERE id = ? RETURNING {KEYS.select}"
        )
        rows = await self._db.write(
            KEYS, {}, lambda tx: tx.fetch(sql, stamp, self._db.ts_in(datetime.now(UTC)), key_id)
        )
        if not rows:
            await self.get(key_id)  # raises NotFound
        return self._record(rows[0])

    async def rotate(self, key_id: str, new_hash: str, new_prefix: str, grace_until: datetime) -> Key:
        """Give the key a new hash; the old one keeps working (as ``previous``) until ``grace_until``.

        Raises:
            NotFound: no such key.
            Conflict: the key is revoked, or ``new_hash`` is already stored.
            InvalidValue: a refused hash or a naive ``grace_until``.

        Example:
            >>> # await store.keys.rotate(key.id, new_hmac_hex, "fg-XyZ12", datetime.now(UTC) + timedelta(hours=1))
        """
        values = check("key", {"key_hash": new_hash, "prefix": new_prefix})
        grace = self._db.ts_in(when("grace_until", grace_until))
        sql = (
            "UPDATE keys SET previous_hash = key_hash, previous_expires_at = ?, key_hash = ?, prefix = ?, "  # noqa: S608
            f"updated_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING {KEYS.select}"
        )
        args = (grace, values["key_hash"], values["prefix"], self._db.ts_in(datetime.now(UTC)), key_id)
        rows = await self._db.write(KEYS, values, lambda tx: tx.fetch(sql, *args))
        if not rows:
            await self.get(key_id)  # raises NotFound
            raise Conflict("key", "revoked_at", key_id, f"key {key_id} is revoked: it cannot be rotated")
        return self._record(rows[0])

    async def touch_last_used(self, key_ids: Iterable[str], at: datetime) -> None:
        """Record ``at`` as the last use of each key (never moving it back), in one transaction.

        Meant for the batched usage writer, off the hot path; unknown ids are ignored.

        Example:
            >>> # await store.keys.touch_last_used(["key_0123456789abcdef"], datetime.now(UTC))
        """
        stamp = self._db.ts_in(when("at", at))
        args = [(stamp, key_id, stamp) for key_id in dict.fromkeys(key_ids)]
        if not args:
            return
        sql = "UPDATE keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)"
        await self._db.write(KEYS, {}, lambda tx: tx.executemany(sql, args))

    async def delete(self, key_id: str) -> None:
        """Delete a key for good (prefer :meth:`revoke`, which keeps the audit trail), and its guardrail
        override (one transaction).

        Raises:
            NotFound: no such key.

        Example:
            >>> # await store.keys.delete(key.id)
        """
        await self._db.delete(KEYS, key_id, drop_statements(scope_of("key", key_id)))
