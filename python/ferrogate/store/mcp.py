"""The MCP gateway's stored state: servers added through the admin API, tool policies per team, the approved pins
of each server's tools, and a version that counts every change.

A server is kept as its document (the ``McpServer`` configuration model as JSON, without its credentials) and the
sealed credentials (``mcp.secrets.Sealer``: the store never sees them in clear); what the documents may hold is
checked before they get here (the admin API validates them as the configuration model, and a policy with
``Policies.validate``). A server's pins are replaced whole by :meth:`~SqlMcp.approve` (an approval of no tools
still counts as an approval: the server is then no longer trusted on first use). Every write raises
:meth:`~SqlMcp.version` by one in the same transaction, so a worker that reads a new version and then
:meth:`~SqlMcp.all` sees that change (or a later one): ``guardrails.sync.PolicySync`` over this section keeps every
worker's catalog, policies and pins equal to the store's.

Example:
    >>> check_server_id("github")
    'github'
    >>> # await store.mcp.put_server("github", {"id": "github", "transport": "http", "url": "..."}, sealed, "master")
    >>> # await store.mcp.version()  # 1
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict

import orjson

from ferrogate.store.errors import Conflict, InvalidValue
from ferrogate.store.fields import json_value
from ferrogate.store.sql import Row, Statement

if TYPE_CHECKING:
    from ferrogate.store.sql import SqlStore

_SERVER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_BUMP = "UPDATE mcp_version SET version = version + 1 WHERE id = 1"
_BUMP_IF_POLICY = f"{_BUMP} AND EXISTS (SELECT 1 FROM mcp_policies WHERE team_id = ?)"  # noqa: S608 (constant)
#: The tool name of the row that marks a server as approved (MCP tool names are 1 to 128 characters: never "").
APPROVED = ""
_MAX_TOOLS = 10_000


class StoredServer(TypedDict):
    """A stored server: its id, document (no credentials), sealed credentials (``None``: none), when and by whom
    it was last set."""

    id: str
    doc: dict[str, Any]
    sealed: str | None
    updated_at: datetime
    updated_by: str


class StoredPolicy(TypedDict):
    """A team's stored tool policy document, when and by whom it was last set."""

    team_id: str
    doc: dict[str, Any]
    updated_at: datetime
    updated_by: str


def check_server_id(server_id: str) -> str:
    """``server_id`` when it is a valid MCP server id (``^[a-z0-9][a-z0-9-]{0,31}$``: no ``_``, so ``__`` separates a
    server and a tool in a namespaced tool name).

    Raises:
        InvalidValue: any other text.

    Example:
        >>> check_server_id("my_server")
        Traceback (most recent call last):
        ...
        ferrogate.store.errors.InvalidValue: server_id 'my_server' is invalid: expected 1 to 32 of a-z, 0-9 and -, \
starting with a letter or digit
    """
    if isinstance(server_id, str) and _SERVER_ID.fullmatch(server_id):
        return server_id
    raise InvalidValue("server_id", server_id, "1 to 32 of a-z, 0-9 and -, starting with a letter or digit")


def _check_team(team_id: str) -> str:
    if not isinstance(team_id, str) or not 1 <= len(team_id) <= 128:
        raise InvalidValue("team_id", team_id, "a team id")
    return team_id


def _json(field: str, doc: Mapping[str, Any]) -> str:
    if not isinstance(doc, Mapping):
        raise InvalidValue(field, doc, "a JSON object")
    try:
        return orjson.dumps(dict(doc)).decode()
    except TypeError:
        raise InvalidValue(field, doc, "a JSON-serialisable object") from None


def _check_hashes(hashes: Mapping[str, str]) -> list[tuple[str, str]]:
    if not isinstance(hashes, Mapping) or len(hashes) > _MAX_TOOLS:
        raise InvalidValue("hashes", "...", f"a mapping of at most {_MAX_TOOLS} tool names to hashes")
    pairs = []
    for tool, digest in hashes.items():
        if not isinstance(tool, str) or not 1 <= len(tool) <= 128:
            raise InvalidValue("hashes", tool, "tool names of 1 to 128 characters")
        if not isinstance(digest, str) or not 1 <= len(digest) <= 128:
            raise InvalidValue(f"hashes.{tool}", digest, "a hash of 1 to 128 characters")
        pairs.append((tool, digest))
    return sorted(pairs)


def drop_policy_statements(team_id: str) -> list[Statement]:
    """The statements that drop ``team_id``'s tool policy inside another write (a team's delete); the version goes
    up only when there was one.

    Example:
        >>> [sql.split()[0] for sql, _ in drop_policy_statements("team_00")]
        ['UPDATE', 'DELETE']
    """
    return [(_BUMP_IF_POLICY, (team_id,)), ("DELETE FROM mcp_policies WHERE team_id = ?", (team_id,))]


class SqlMcp:
    """``store.mcp``: stored servers, tool policies by team, approved pins by server, and their version."""

    def __init__(self, db: SqlStore) -> None:
        self._db = db

    def _server(self, row: Row) -> StoredServer:
        return StoredServer(
            id=row["id"],
            doc=json_value(row["doc"]),
            sealed=row["sealed"],
            updated_at=self._db.ts_out(row["updated_at"]),
            updated_by=row["updated_by"],
        )

    def _policy(self, row: Row) -> StoredPolicy:
        return StoredPolicy(
            team_id=row["team_id"],
            doc=json_value(row["doc"]),
            updated_at=self._db.ts_out(row["updated_at"]),
            updated_by=row["updated_by"],
        )

    async def version(self) -> int:
        """The number of changes made so far (one indexed read: cheap enough to poll twice a second).

        Example:
            >>> # await store.mcp.version()  # 0 on a new store
        """
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch("SELECT version FROM mcp_version WHERE id = 1")
        return int(rows[0]["version"]) if rows else 0

    async def all(self) -> dict[str, dict[str, Any]]:
        """Everything stored, as the change feed applies it (read :meth:`version` first: a change between the two
        reads is then seen again at the next version check, never missed)::

            {"servers": {id: {"doc": {...}, "sealed": "v1..." | None}},
             "policies": {team_id: {...}},
             "pins": {server_id: {tool: hash}}}   # a server approved with no tools: {}

        Example:
            >>> # (await store.mcp.all())["pins"]  # {"github": {"create_issue": "9f2c..."}}
        """
        async with self._db.transaction(write=False) as tx:
            servers = await tx.fetch("SELECT id, doc, sealed FROM mcp_servers ORDER BY id")
            policies = await tx.fetch("SELECT team_id, doc FROM mcp_policies ORDER BY team_id")
            pins = await tx.fetch("SELECT server_id, tool, hash FROM mcp_pins ORDER BY server_id, tool")
        approved: dict[str, dict[str, str]] = {}
        for row in pins:
            tools = approved.setdefault(row["server_id"], {})
            if row["tool"] != APPROVED:
                tools[row["tool"]] = row["hash"]
        return {
            "servers": {row["id"]: {"doc": json_value(row["doc"]), "sealed": row["sealed"]} for row in servers},
            "policies": {row["team_id"]: json_value(row["doc"]) for row in policies},
            "pins": approved,
        }

    # ---- servers ---------------------------------------------------------------------------------------------

    async def servers(self) -> list[StoredServer]:
        """Every stored server, by id.

        Example:
            >>> # [s["id"] for s in await store.mcp.servers()]  # ["github", "search"]
        """
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch("SELECT id, doc, sealed, updated_at, updated_by FROM mcp_servers ORDER BY id")
        return [self._server(row) for row in rows]

    async def get_server(self, server_id: str) -> StoredServer | None:
        """The stored server ``server_id``, or ``None``.

        Raises:
            InvalidValue: a malformed id.

        Example:
            >>> # (await store.mcp.get_server("github"))["doc"]["url"]
        """
        check_server_id(server_id)
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch(
                "SELECT id, doc, sealed, updated_at, updated_by FROM mcp_servers WHERE id = ?", server_id
            )
        return self._server(rows[0]) if rows else None

    async def put_server(
        self, server_id: str, doc: Mapping[str, Any], sealed: str | None, actor: str, *, create: bool = False
    ) -> StoredServer:
        """Set the server ``server_id`` (replacing any; with ``create``, only a new one): its document without
        credentials, and the sealed credentials (``None``: none); the version goes up by one.

        Raises:
            InvalidValue: a malformed id, ``doc`` not a JSON object, or ``sealed`` not text.
            Conflict: ``create`` and a server ``server_id`` is stored already (nothing is written).

        Example:
            >>> # await store.mcp.put_server("search", doc, sealer.seal({"bearer_token": t}), actor="master")
        """
        check_server_id(server_id)
        text = _json("doc", doc)
        if sealed is not None and not isinstance(sealed, str):
            raise InvalidValue("sealed", "...", "a sealed token (text) or null")
        now = self._db.ts_in(datetime.now(UTC))
        on_conflict = (
            "DO NOTHING"
            if create
            else "DO UPDATE SET doc = excluded.doc, sealed = excluded.sealed, updated_at = excluded.updated_at,"
            " updated_by = excluded.updated_by"
        )
        async with self._db.transaction() as tx:
            rows = await tx.fetch(
                "INSERT INTO mcp_servers (id, doc, sealed, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)"  # noqa: S608
                f" ON CONFLICT (id) {on_conflict} RETURNING id, doc, sealed, updated_at, updated_by",
                server_id,
                text,
                sealed,
                now,
                actor,
            )
            if not rows:
                raise Conflict("mcp server", "id", server_id, f"MCP server {server_id!r} already exists")
            await tx.execute(_BUMP)
        return self._server(rows[0])

    async def delete_server(self, server_id: str, actor: str) -> bool:
        """Drop the stored server ``server_id`` and its pins (a server added again under that id is trusted on first
        use); whether there was one (the version goes up only then). ``actor`` is for the audit trail, kept by the
        caller.

        Raises:
            InvalidValue: a malformed id.

        Example:
            >>> # await store.mcp.delete_server("search", actor="master")  # True
        """
        check_server_id(server_id)
        async with self._db.transaction() as tx:
            gone = await tx.execute("DELETE FROM mcp_servers WHERE id = ?", server_id)
            if gone:
                await tx.execute("DELETE FROM mcp_pins WHERE server_id = ?", server_id)
                await tx.execute(_BUMP)
        return bool(gone)

    # ---- policies --------------------------------------------------------------------------------------------

    async def get_policy(self, team_id: str) -> StoredPolicy | None:
        """The tool policy of ``team_id``, or ``None`` (the configuration's default policy applies).

        Example:
            >>> # (await store.mcp.get_policy(team.id))["doc"]["allow"]  # ["github/*"]
        """
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch(
                "SELECT team_id, doc, updated_at, updated_by FROM mcp_policies WHERE team_id = ?", _check_team(team_id)
            )
        return self._policy(rows[0]) if rows else None

    async def put_policy(self, team_id: str, doc: Mapping[str, Any], actor: str) -> StoredPolicy:
        """Set the tool policy of ``team_id`` (replacing any); the version goes up by one.

        Raises:
            InvalidValue: an empty team id, or ``doc`` not a JSON object.

        Example:
            >>> # await store.mcp.put_policy(team.id, {"allow": ["github/*"], "deny": []}, actor="master")
        """
        _check_team(team_id)
        text = _json("doc", doc)
        now = self._db.ts_in(datetime.now(UTC))
        async with self._db.transaction() as tx:
            rows = await tx.fetch(
                "INSERT INTO mcp_policies (team_id, doc, updated_at, updated_by) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (team_id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at,"
                " updated_by = excluded.updated_by RETURNING team_id, doc, updated_at, updated_by",
                team_id,
                text,
                now,
                actor,
            )
            await tx.execute(_BUMP)
        return self._policy(rows[0])

    async def delete_policy(self, team_id: str) -> bool:
        """Drop the tool policy of ``team_id``; whether there was one (the version goes up only then).

        Example:
            >>> # await store.mcp.delete_policy(team.id)  # True
        """
        _check_team(team_id)
        async with self._db.transaction() as tx:
            gone = await tx.execute("DELETE FROM mcp_policies WHERE team_id = ?", team_id)
            if gone:
                await tx.execute(_BUMP)
        return bool(gone)

    # ---- pins ------------------------------------------------------------------------------------------------

    async def approve(self, server_id: str, hashes: Mapping[str, str], actor: str, *, first_use: bool = False) -> bool:
        """Replace the approved pins of ``server_id`` by ``hashes`` (tool name -> pin hash; ``{}``: approved with no
        tools); the version goes up by one. ``first_use``: only when the server was never approved (the first
        listing's trust, which every worker of every instance may offer at once: one of them is stored, in one
        transaction with the check). Whether the pins were stored.

        Raises:
            InvalidValue: a malformed server id, tool name or hash.

        Example:
            >>> # await store.mcp.approve("github", pins.seen("github"), actor="master")
        """
        check_server_id(server_id)
        pairs = _check_hashes(hashes)
        now = self._db.ts_in(datetime.now(UTC))
        rows = [(server_id, tool, digest, now, actor) for tool, digest in [(APPROVED, ""), *pairs]]
        async with self._db.transaction() as tx:
            if first_use:  # the approval marker row, unless one is there: the primary key decides the race
                marker = "INSERT INTO mcp_pins (server_id, tool, hash, approved_at, approved_by) VALUES (?, ?, ?, ?, ?)"
                if not await tx.execute(marker + " ON CONFLICT DO NOTHING", *rows[0]):
                    return False
                rows = rows[1:]
            else:
                await tx.execute("DELETE FROM mcp_pins WHERE server_id = ?", server_id)
            await tx.executemany(
                "INSERT INTO mcp_pins (server_id, tool, hash, approved_at, approved_by) VALUES (?, ?, ?, ?, ?)", rows
            )
            await tx.execute(_BUMP)
        return True

    async def pins(self, server_id: str) -> dict[str, str]:
        """The approved pins of ``server_id`` (tool name -> hash; ``{}`` also when never approved: see
        :meth:`approved`).

        Example:
            >>> # await store.mcp.pins("github")  # {"create_issue": "9f2c..."}
        """
        approved = await self.approved(server_id)
        return approved or {}

    async def approved(self, server_id: str) -> dict[str, str] | None:
        """The approved pins of ``server_id``, or ``None`` when it was never approved.

        Example:
            >>> # await store.mcp.approved("new-server")  # None
        """
        check_server_id(server_id)
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch("SELECT tool, hash FROM mcp_pins WHERE server_id = ? ORDER BY tool", server_id)
        if not rows:
            return None
        return {row["tool"]: row["hash"] for row in rows if row["tool"] != APPROVED}
