"""What both SQL backends share: the transaction contract, row CRUD, keyset pages and fault mapping.

A backend (``sqlite.py``, ``postgres.py``) supplies a transaction that runs ``?``-placeholder SQL and raises
:class:`IntegrityFault` for constraint violations, plus timestamp conversion and the migration runner. All SQL
text lives here and in the entity modules, written once for both dialects.

Example:
    >>> decode_cursor(encode_cursor(datetime(2025, 1, 1, tzinfo=UTC), "key_00"))
    (datetime.datetime(2025, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), 'key_00')
"""

from __future__ import annotations

import base64
import binascii
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from ferrogate.store.errors import Conflict, InUse, InvalidReference, InvalidValue, NotFound, StoreError
from ferrogate.store.migrate import Migration, check_versions

T = TypeVar("T")

#: The tables a foreign-key column points at.
REFERENCES = {"team_id": "teams", "user_id": "users"}
MAX_LIMIT = 1000


class Row(Protocol):
    """A result row, read by column name (``sqlite3.Row`` and ``asyncpg.Record`` both qualify)."""

    def __getitem__(self, key: str, /) -> Any: ...


class Tx(Protocol):
    """One connection inside one transaction (or autocommit, for reads). SQL uses ``?`` placeholders."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Rows of a query."""
        ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per argument tuple."""
        ...


#: One SQL statement with ``?`` placeholders and its arguments.
Statement = tuple[str, Sequence[Any]]
#: A transaction written as a generator: yields statements, receives their rows, returns its result.
Program = Generator[Statement, list[Row], T]


class IntegrityFault(Exception):
    """A constraint violation, as the backend saw it: ``unique`` or ``fk``, with the columns when known."""

    def __init__(self, kind: Literal["unique", "fk", "other"], columns: tuple[str, ...] | None, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.columns = columns


@dataclass(frozen=True, slots=True)
class Table:
    """An entity's table: its SQL name, the entity word used in errors, and its columns in record order."""

    name: str
    entity: str
    columns: tuple[str, ...]

    @property
    def select(self) -> str:
        """The column list for ``SELECT``/``RETURNING``."""
        return ", ".join(self.columns)


def encode_cursor(created_at: datetime, id: str) -> str:
    """The opaque cursor for the row after which the next page starts.

    Example:
        >>> encode_cursor(datetime(2025, 1, 1, tzinfo=UTC), "team_00")
        'MjAyNS0wMS0wMVQwMDowMDowMCswMDowMHx0ZWFtXzAw'
    """
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The ``(created_at, id)`` inside a cursor from :func:`encode_cursor`.

    Raises:
        InvalidValue: the cursor was not made by this store.

    Example:
        >>> decode_cursor("bad")
        Traceback (most recent call last):
        ...
        ferrogate.store.errors.InvalidValue: cursor 'bad' is invalid: expected a next_cursor returned by a list call
    """
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, sep, id = text.partition("|")
        at = datetime.fromisoformat(stamp)
        if not sep or not id or at.tzinfo is None:
            raise ValueError(cursor)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidValue("cursor", cursor, "a next_cursor returned by a list call") from None
    return at.astimezone(UTC), id


class SqlStore(ABC):
    """The store over SQL: repositories (``teams``, ``users``, ``keys``, ``usage``, ``budgets``, ``audit``,
    ``guardrails``, ``routing``, ``mcp``) plus schema management."""

    kind: str

    def __init__(self, migrations: Sequence[Migration]) -> None:
        from ferrogate.store.audit import SqlAudit
        from ferrogate.store.budgets import SqlBudgets
        from ferrogate.store.guardrails import SqlGuardrails
        from ferrogate.store.keys import SqlKeys
        from ferrogate.store.mcp import SqlMcp
        from ferrogate.store.routing import SqlRouting
        from ferrogate.store.teams import SqlTeams
        from ferrogate.store.usage import SqlUsage
        from ferrogate.store.users import SqlUsers

        self.migrations = tuple(migrations)
        self.teams = SqlTeams(self)
        self.users = SqlUsers(self)
        self.keys = SqlKeys(self)
        self.usage = SqlUsage(self)
        self.budgets = SqlBudgets(self)
        self.audit = SqlAudit(self)
        self.guardrails = SqlGuardrails(self)
        self.routing = SqlRouting(self)
        self.mcp = SqlMcp(self)

    # ---- what a backend provides -------------------------------------------------------------------------
    @abstractmethod
    def transaction(self, write: bool = True) -> AbstractAsyncContextManager[Tx]:
        """A connection in one transaction (``write``) or in autocommit (reads).

        Example:
            >>> # async with store.transaction() as tx:
            >>> #     await tx.execute("UPDATE keys SET name = ? WHERE id = ?", "ci", key_id)
        """

    @abstractmethod
    def ts_in(self, value: datetime) -> Any:
        """An aware UTC datetime in the form the backend stores."""

    @abstractmethod
    def ts_out(self, raw: Any) -> datetime:
        """A stored timestamp as an aware UTC datetime."""

    @abstractmethod
    def utc_day(self, column: str) -> str:
        """SQL for the UTC date (``YYYY-MM-DD`` text) of the timestamp ``column``.

        Example:
            >>> # store.utc_day("created_at")  # "substr(created_at, 1, 10)" on SQLite
        """

    @abstractmethod
    async def ping(self) -> str | None:
        """``None`` when the database answers, else a short description of the fault.

        Example:
            >>> # await store.ping()  # None
        """

    @abstractmethod
    async def close(self) -> None:
        """Release connections (idempotent).

        Example:
            >>> # await store.close()
        """

    @abstractmethod
    async def applied_versions(self) -> set[int]:
        """The versions in ``schema_migrations`` (empty when the table does not exist)."""

    @abstractmethod
    async def _apply(self, migrations: Sequence[Migration]) -> list[int]:
        """Apply the pending ``migrations`` under the backend's migration lock; the versions applied."""

    # ---- schema --------------------------------------------------------------------------------------------
    async def migrate(self) -> list[int]:
        """Apply pending migrations in order; idempotent. Returns the versions applied now (``[]`` if none).

        Raises:
            SchemaError: the database is newer than the code, or a migration failed (rolled back).

        Example:
            >>> # await store.migrate()  # [1] on an empty database, then []
        """
        return await self._apply(self.migrations)

    async def schema_version(self) -> int:
        """The newest applied migration version (0 for an empty database).

        Example:
            >>> # await store.schema_version()  # 1
        """
        return max(await self.applied_versions(), default=0)

    async def check_schema(self) -> None:
        """Raise :class:`SchemaError` when the schema is newer than the code or migrations are pending.

        Example:
            >>> # await store.check_schema()  # at start: refuse to serve against a mismatched schema
        """
        check_versions(await self.applied_versions(), self.migrations)

    # ---- helpers for the entity modules --------------------------------------------------------------------
    def lock_sql(self, name: str) -> Statement | None:
        """The statement that holds the lock ``name`` until the transaction ends (serialising a
        read-check-write across processes), or ``None`` when write transactions are serialised anyway
        (SQLite's ``BEGIN IMMEDIATE``)."""
        return None

    async def run_program(self, program: Program[T], *, short: bool = False) -> T:
        """Run ``program`` in one write transaction: each statement it yields is executed and its rows sent
        back; its return value is the result (rolled back if it raises).

        One program is written once for both backends; SQLite runs it whole on the store's thread (one
        thread hop instead of one per statement, ~35 µs of CPU each), PostgreSQL statement by statement.
        ``short``: a few indexed statements on the hot path (a budget hold); SQLite runs those on the
        caller's thread when the write lock is free at once (the hop would cost more than the work).

        Example:
            >>> def count() -> Program[int]:
            ...     rows = yield ("SELECT COUNT(*) AS n FROM teams", ())
            ...     return int(rows[0]["n"])
            >>> # await store.run_program(count())
        """
        async with self.transaction() as tx:
            try:
                sql, args = next(program)
                while True:
                    sql, args = program.send(await tx.fetch(sql, *args))
            except StopIteration as stop:
                result: T = stop.value
                return result

    def bind(self, value: Any) -> Any:
        """A parameter in the backend's form (datetimes converted, everything else as is)."""
        return self.ts_in(value) if isinstance(value, datetime) else value

    def opt_ts(self, raw: Any) -> datetime | None:
        """A nullable stored timestamp."""
        return None if raw is None else self.ts_out(raw)

    async def write(self, table: Table, values: Mapping[str, Any], op: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``op`` in one write transaction, turning constraint faults into typed errors about ``values``."""
        try:
            async with self.transaction() as tx:
                return await op(tx)
        except IntegrityFault as fault:
            raise await self._explain(table, values, fault) from None

    async def insert(self, table: Table, values: Mapping[str, Any]) -> Row:
        """Insert one row and return it as stored."""
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        sql = f"INSERT INTO {table.name} ({cols}) VALUES ({marks}) RETURNING {table.select}"  # noqa: S608
        rows = await self.write(table, values, lambda tx: tx.fetch(sql, *map(self.bind, values.values())))
        return rows[0]

    async def get(self, table: Table, id: str) -> Row:
        """The row with ``id``, or :class:`NotFound`."""
        async with self.transaction(write=False) as tx:
            rows = await tx.fetch(f"SELECT {table.select} FROM {table.name} WHERE id = ?", id)  # noqa: S608
        if not rows:
            raise NotFound(table.entity, id)
        return rows[0]

    async def update(self, table: Table, id: str, values: Mapping[str, Any], now: datetime) -> Row:
        """Set ``values`` (and ``updated_at``) on the row with ``id`` in one statement; the row as stored."""
        if not values:
            return await self.get(table, id)
        sets = ", ".join(f"{col} = ?" for col in [*values, "updated_at"])
        sql = f"UPDATE {table.name} SET {sets} WHERE id = ? RETURNING {table.select}"  # noqa: S608
        args = [*map(self.bind, values.values()), self.ts_in(now), id]
        rows = await self.write(table, values, lambda tx: tx.fetch(sql, *args))
        if not rows:
            raise NotFound(table.entity, id)
        return rows[0]

    async def delete(self, table: Table, id: str, also: Sequence[Statement] = ()) -> None:
        """Delete the row with ``id``: :class:`NotFound` if absent, :class:`InUse` if still referenced.

        ``also``: statements run in the same transaction once the row is gone (dropping what hangs off it).
        """
        try:
            async with self.transaction() as tx:
                count = await tx.execute(f"DELETE FROM {table.name} WHERE id = ?", id)  # noqa: S608
                if count:
                    for sql, args in also:
                        await tx.execute(sql, *args)
        except IntegrityFault as fault:
            if fault.kind == "fk":
                raise InUse(table.entity, id) from None
            raise StoreError(f"{table.entity} {id}: {fault}") from None
        if not count:
            raise NotFound(table.entity, id)

    async def page(
        self, table: Table, filters: Sequence[tuple[str, Sequence[Any]]], limit: int, cursor: str | None
    ) -> tuple[list[Row], str | None]:
        """One keyset page ordered by ``(created_at, id)``: the rows and the cursor of the next page.

        ``filters`` are ``(sql, args)`` pairs ANDed together.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidValue("limit", limit, f"an integer from 1 to {MAX_LIMIT}")
        where = [sql for sql, _ in filters]
        args: list[Any] = [a for _, part in filters for a in part]
        if cursor is not None:
            at, after = decode_cursor(cursor)
            where.append("(created_at, id) > (?, ?)")
            args += [self.ts_in(at), after]
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        sql = f"SELECT {table.select} FROM {table.name} {clause}ORDER BY created_at, id LIMIT ?"  # noqa: S608
        async with self.transaction(write=False) as tx:
            rows = await tx.fetch(sql, *args, limit + 1)
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], encode_cursor(self.ts_out(last["created_at"]), last["id"])

    async def _explain(self, table: Table, values: Mapping[str, Any], fault: IntegrityFault) -> StoreError:
        if fault.kind == "unique":
            field = fault.columns[-1] if fault.columns else "id"
            return Conflict(table.entity, field, values.get(field))
        if fault.kind == "fk":
            if fault.columns and len(fault.columns) == 1 and fault.columns[0] in REFERENCES:
                return InvalidReference(fault.columns[0], values.get(fault.columns[0]))
            # SQLite does not say which foreign key failed: look for the missing row
            async with self.transaction(write=False) as tx:
                for col, ref in REFERENCES.items():
                    value = values.get(col)
                    if value is not None and not await tx.fetch(f"SELECT 1 FROM {ref} WHERE id = ?", value):  # noqa: S608
                        return InvalidReference(col, value)
            return InvalidReference("/".join(c for c in REFERENCES if c in values), None)
        return InvalidValue(table.entity, dict(values), f"values the database accepts ({fault})")
