"""Routing overrides: upstreams and model groups set through the admin API (by name), the routing rules text, and a
version that counts every change.

An override replaces the configuration file's upstream or model group of the same name, or adds one the file does
not have; a tombstone (``doc`` ``None``) deletes one the file defines. The rules text, when stored, replaces the
file's routing rules. The store keeps the documents as given (an upstream's ``api_key`` only ever as a
``${ENV_VAR}`` reference: the admin API refuses anything else); whether they make a valid configuration together
with the file is checked before they get here (``routing.reload.ConfigReloader.propose``). Every
:meth:`~SqlRouting.put` and :meth:`~SqlRouting.delete` raises :meth:`~SqlRouting.version` by one in the same
transaction; given ``expect_version``, a write is refused (:class:`~ferrogate.store.errors.Conflict`) when another
change came first, so a configuration validated against version ``n`` is stored only on top of version ``n``.

Example:
    >>> RoutingOverrides().with_change("upstream", "eu", {"name": "eu", "provider": "mock"}).upstreams
    {'eu': {'name': 'eu', 'provider': 'mock'}}
    >>> # await store.routing.put("upstream", "eu", {"name": "eu", "provider": "mock"}, actor="master")
    >>> # await store.routing.version()  # 1
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson

from ferrogate.store.errors import Conflict, InvalidValue
from ferrogate.store.fields import json_value
from ferrogate.store.sql import Row

if TYPE_CHECKING:
    from ferrogate.store.sql import SqlStore, Tx

#: What an override overrides: an upstream, a model group, or the routing rules (one row, named :data:`RULES`).
Kind = Literal["upstream", "model_group", "rules"]
KINDS: tuple[Kind, ...] = ("upstream", "model_group", "rules")
#: The name of the routing rules' row (its document: ``{"text": "<Cedar policies>"}``).
RULES = "rules"
_COLUMNS = "kind, name, doc, updated_at, updated_by"


@dataclass(frozen=True, slots=True)
class RoutingOverride:
    """A stored override: what it overrides, its document (``None``: a tombstone), when and by whom it was set."""

    kind: Kind
    name: str
    doc: dict[str, Any] | None
    updated_at: datetime
    updated_by: str

    @property
    def deleted(self) -> bool:
        """Whether this is a tombstone (the file's entry of this name is deleted)."""
        return self.doc is None


@dataclass(frozen=True, slots=True)
class RoutingOverrides:
    """Every stored override, as the configuration merge takes them: documents (``None``: tombstones) by name, the
    rules text (``None``: the file's rules), and the store version they were read at."""

    upstreams: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)
    model_groups: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)
    rules: str | None = None
    version: int = 0

    def with_change(
        self, kind: Kind, name: str, doc: Mapping[str, Any] | None, *, drop: bool = False
    ) -> RoutingOverrides:
        """These overrides with one change: ``doc`` set for ``name`` (``None``: a tombstone), or with ``drop`` the
        stored entry removed (the file's entry, if any, applies again). For ``rules`` the document is
        ``{"text": ...}``.

        Example:
            >>> RoutingOverrides(model_groups={"a": None}).with_change("model_group", "a", None, drop=True)
            RoutingOverrides(upstreams={}, model_groups={}, rules=None, version=0)
        """
        if kind == "rules":
            return replace(self, rules=None if drop or doc is None else str(doc["text"]))
        current = self.upstreams if kind == "upstream" else self.model_groups
        changed = {k: v for k, v in current.items() if k != name}
        if not drop:
            changed[name] = None if doc is None else dict(doc)
        if kind == "upstream":
            return replace(self, upstreams=changed)
        return replace(self, model_groups=changed)


def check_kind(kind: str) -> Kind:
    """``kind`` when it is one of :data:`KINDS`.

    Raises:
        InvalidValue: any other text.

    Example:
        >>> check_kind("route")
        Traceback (most recent call last):
        ...
        ferrogate.store.errors.InvalidValue: kind 'route' is invalid: expected upstream, model_group or rules
    """
    if kind in KINDS:
        return kind
    raise InvalidValue("kind", kind, "upstream, model_group or rules")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 128:
        raise InvalidValue("name", name, "a name of 1 to 128 characters")
    return name


class SqlRouting:
    """``store.routing``: the routing overrides by kind and name, and their version."""

    def __init__(self, db: SqlStore) -> None:
        self._db = db

    def _record(self, row: Row) -> RoutingOverride:
        doc = json_value(row["doc"])
        return RoutingOverride(row["kind"], row["name"], doc, self._db.ts_out(row["updated_at"]), row["updated_by"])

    async def overrides(self) -> RoutingOverrides:
        """Every stored override, with the version read first (a change between the two reads is then seen again at
        the next version check, never missed).

        Example:
            >>> # (await store.routing.overrides()).upstreams  # {"eu": {...}, "old": None}
        """
        version = await self.version()
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch("SELECT kind, name, doc FROM routing_overrides ORDER BY kind, name")
        upstreams: dict[str, dict[str, Any] | None] = {}
        groups: dict[str, dict[str, Any] | None] = {}
        rules: str | None = None
        for row in rows:
            doc = json_value(row["doc"])
            if row["kind"] == "upstream":
                upstreams[row["name"]] = doc
            elif row["kind"] == "model_group":
                groups[row["name"]] = doc
            elif doc is not None:
                rules = str(doc.get("text", ""))
        return RoutingOverrides(upstreams, groups, rules, version)

    async def get(self, kind: Kind, name: str) -> RoutingOverride | None:
        """The override of ``kind`` ``name`` (a tombstone included), or ``None`` when there is none.

        Raises:
            InvalidValue: an unknown kind or an empty name.

        Example:
            >>> # (await store.routing.get("upstream", "eu")).doc
        """
        check_kind(kind)
        async with self._db.transaction(write=False) as tx:
            sql = f"SELECT {_COLUMNS} FROM routing_overrides WHERE kind = ? AND name = ?"  # noqa: S608 (constant)
            rows = await tx.fetch(sql, kind, _check_name(name))
        return self._record(rows[0]) if rows else None

    async def put(
        self, kind: Kind, name: str, doc: Mapping[str, Any] | None, actor: str, *, expect_version: int | None = None
    ) -> RoutingOverride:
        """Set the override of ``kind`` ``name`` (replacing any; ``doc`` ``None``: a tombstone), recording
        ``actor``; the version goes up by one.

        Raises:
            InvalidValue: a bad kind or name, ``doc`` not a JSON object, or a rules document without ``text``.
            Conflict: ``expect_version`` is given and the store's version is another (nothing is written).

        Example:
            >>> # await store.routing.put("rules", RULES, {"text": "permit(principal, action, resource);"}, "master")
        """
        check_kind(kind)
        _check_name(name)
        text: str | None = None
        if doc is not None:
            if not isinstance(doc, Mapping):
                raise InvalidValue("doc", doc, "a JSON object")
            if kind == "rules" and not isinstance(doc.get("text"), str):
                raise InvalidValue("doc", doc, 'a JSON object {"text": "<rules>"}')
            try:
                text = orjson.dumps(dict(doc)).decode()
            except TypeError:
                raise InvalidValue("doc", doc, "a JSON-serialisable object") from None
        now = self._db.ts_in(datetime.now(UTC))
        async with self._db.transaction() as tx:
            await self._bump(tx, expect_version)
            rows = await tx.fetch(
                "INSERT INTO routing_overrides (kind, name, doc, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)"  # noqa: S608
                " ON CONFLICT (kind, name) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at,"
                f" updated_by = excluded.updated_by RETURNING {_COLUMNS}",
                kind,
                name,
                text,
                now,
                actor,
            )
        return self._record(rows[0])

    async def delete(self, kind: Kind, name: str, *, expect_version: int | None = None) -> bool:
        """Drop the override of ``kind`` ``name`` (a tombstone too: the file's entry applies again); whether there
        was one (the version goes up only then).

        Raises:
            InvalidValue: a bad kind or name.
            Conflict: there was one, ``expect_version`` is given and the store's version is another (nothing is
                dropped).

        Example:
            >>> # await store.routing.delete("model_group", "fast")  # True
        """
        check_kind(kind)
        _check_name(name)
        async with self._db.transaction() as tx:
            gone = await tx.execute("DELETE FROM routing_overrides WHERE kind = ? AND name = ?", kind, name)
            if gone:
                await self._bump(tx, expect_version)
        return bool(gone)

    async def version(self) -> int:
        """The number of changes made so far (one indexed read: cheap enough to poll twice a second).

        Example:
            >>> # await store.routing.version()  # 0 on a new store
        """
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch("SELECT version FROM routing_version WHERE id = 1")
        return int(rows[0]["version"]) if rows else 0

    @staticmethod
    async def _bump(tx: Tx, expect_version: int | None) -> None:
        """Raise the version by one (only from ``expect_version`` when given: else :class:`Conflict`, and the
        transaction is rolled back)."""
        if expect_version is None:
            await tx.execute("UPDATE routing_version SET version = version + 1 WHERE id = 1")
            return
        if not await tx.execute(
            "UPDATE routing_version SET version = version + 1 WHERE id = 1 AND version = ?", expect_version
        ):
            raise Conflict(
                "routing", "version", expect_version, f"the routing overrides changed since version {expect_version}"
            )
