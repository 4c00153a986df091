"""The PostgreSQL backend (``postgresql://...``): an asyncpg pool, shared by the instances of a deployment.

The pool is created on first use, in the event loop of the worker that uses it (each Granian worker has its
own). Migrations run under a session advisory lock, so instances starting together apply each one once.

Example:
    >>> store = PostgresStore("postgresql://postgres@127.0.0.1:5432/ferrogate")
    >>> store.kind
    'postgres'
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

from ferrogate.store.errors import SchemaError, StoreError
from ferrogate.store.migrate import Migration, load_migrations, refuse_newer
from ferrogate.store.sql import IntegrityFault, Row, SqlStore, Statement

T = TypeVar("T")
#: ``pg_advisory_lock`` key held while migrating (any constant; "fgmigr" in ASCII).
MIGRATION_LOCK = 0x66676D696772
_KEY = re.compile(r"Key \(([^)]*)\)=")
_MARK = re.compile(r"\?")

#: The longest a connection's reset may take when it goes back to the pool.
_RELEASE_TIMEOUT_S = 5.0


@functools.lru_cache(maxsize=512)
def _numbered(sql: str) -> str:
    """``?`` placeholders as asyncpg's ``$1, $2, ...``."""
    counter = iter(range(1, 1 << 16))
    return _MARK.sub(lambda _: f"${next(counter)}", sql)


def _fault(exc: Exception) -> Exception:
    """The typed form of an asyncpg error raised by a statement."""
    if isinstance(exc, asyncpg.UniqueViolationError | asyncpg.ForeignKeyViolationError):
        match = _KEY.search(exc.detail or "")
        cols = tuple(c.strip() for c in match[1].split(",")) if match else None
        if isinstance(exc, asyncpg.UniqueViolationError):
            return IntegrityFault("unique", cols, str(exc))
        return IntegrityFault("fk", cols, str(exc))
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityFault("other", None, str(exc))
    if isinstance(exc, asyncpg.UndefinedTableError):
        return SchemaError(f"postgres: {exc}: the schema is missing, run `ferrogate migrate`")
    return StoreError(f"postgres: {exc}")


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` may leave its connection unusable: a cancelled statement, a link fault (not a refusal the
    server answered, such as a constraint violation, nor an error of the caller's own code)."""
    return isinstance(exc, asyncio.CancelledError | TimeoutError) or type(exc) is StoreError


async def _call(coro: Awaitable[T]) -> T:
    try:
        return await coro
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise _fault(exc) from None


class _Tx:
    """Statements on one pooled connection."""

    def __init__(self, conn: asyncpg.pool.PoolConnectionProxy[Any]) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await _call(self._conn.fetch(_numbered(sql), *args)))

    async def execute(self, sql: str, *args: Any) -> int:
        status = await _call(self._conn.execute(_numbered(sql), *args))
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        await _call(self._conn.executemany(_numbered(sql), args))


class PostgresStore(SqlStore):
    """The shared store (``postgresql://`` or ``postgres://`` URL, anything asyncpg accepts).

    Args:
        dsn: the connection URL.
        min_size: connections the pool keeps open.
        max_size: the most connections the pool opens (per worker process).
        migrations: the migrations to apply and check against (default: the packaged ones).
    """

    kind = "postgres"

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 10, migrations: Sequence[Migration] | None = None
    ) -> None:
        super().__init__(load_migrations("postgres") if migrations is None else migrations)
        self._dsn = dsn
        self._sizes = (min_size, max_size)
        self._pool: asyncpg.Pool[Any] | None = None
        self._opening: asyncio.Lock | None = None

    async def pool(self) -> asyncpg.Pool[Any]:
        """The connection pool, opened on first use.

        Raises:
            StoreError: the server cannot be reached or refuses the login.
        """
        pool = self._pool
        if pool is None:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                pool = self._pool
                if pool is None:
                    low, high = self._sizes
                    created: asyncpg.Pool[Any] = await _call(
                        # a statement may take a minute at most (a link that black-holes must not hold a
                        # pooled connection for the kernel's retransmission timeout)
                        asyncpg.create_pool(self._dsn, min_size=low, max_size=high, command_timeout=60)
                    )
                    self._pool = pool = created
        return pool

    @asynccontextmanager
    async def transaction(self, write: bool = True) -> AsyncIterator[_Tx]:
        """A pooled connection, inside a transaction for writes (rolled back on error).

        A connection whose statement was cancelled (a caller's timeout) or whose link failed is terminated,
        not handed back to the pool: cleaning it up would wait on a server that may not answer (the pool opens
        a new one). Connection faults (acquire, BEGIN, COMMIT) raise :class:`StoreError`.
        """
        pool = await self.pool()
        try:
            conn = await pool.acquire()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:  # a dead server: no connection
            raise _fault(exc) from None
        try:
            tx = conn.transaction() if write else None
            if tx is not None:
                await _call(tx.start())
            try:
                yield _Tx(conn)
            except BaseException as exc:
                if tx is not None and not _lost(exc):
                    await _call(tx.rollback())
                raise
            if tx is not None:
                await _call(tx.commit())
        except BaseException as exc:
            if _lost(exc):
                with contextlib.suppress(asyncpg.InterfaceError):  # a link that closed is already back in the pool
                    conn.terminate()
            raise
        finally:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                # a link lost after the last statement: asyncpg has closed it; its reset must not wait forever
                await pool.release(conn, timeout=_RELEASE_TIMEOUT_S)

    def lock_sql(self, name: str) -> Statement:
        """A transaction-scoped advisory lock on the 64-bit hash of ``name`` (released at commit/rollback)."""
        return ("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (name,))

    def ts_in(self, value: datetime) -> datetime:
        """timestamptz takes the aware datetime as is."""
        return value

    def ts_out(self, raw: Any) -> datetime:
        """asyncpg returns timestamptz as an aware datetime; normalise to UTC."""
        value: datetime = raw.astimezone(UTC)
        return value

    def utc_day(self, column: str) -> str:
        """The UTC date of a timestamptz column, as ``YYYY-MM-DD`` text."""
        return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    async def ping(self) -> str | None:
        """``None`` when ``SELECT 1`` answers within 5 s, else the error text."""
        try:
            async with asyncio.timeout(5):
                pool = await self.pool()
                await _call(pool.fetchval("SELECT 1"))
        except (StoreError, TimeoutError) as exc:
            return str(exc) or "timed out"
        return None

    async def close(self) -> None:
        """Close the pool (waits for connections in use to be released)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def applied_versions(self) -> set[int]:
        """The versions recorded in ``schema_migrations``."""
        async with self.transaction(write=False) as tx:
            if not (await tx.fetch("SELECT to_regclass('schema_migrations') IS NOT NULL AS present"))[0]["present"]:
                return set()
            return {row["version"] for row in await tx.fetch("SELECT version FROM schema_migrations")}

    async def _apply(self, migrations: Sequence[Migration]) -> list[int]:
        pool = await self.pool()
        async with pool.acquire() as conn:
            await _call(conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK))
            try:
                return await self._apply_locked(conn, migrations)
            finally:
                await _call(conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK))

    async def _apply_locked(
        self, conn: asyncpg.pool.PoolConnectionProxy[Any], migrations: Sequence[Migration]
    ) -> list[int]:
        run: Callable[..., Awaitable[Any]] = lambda sql, *args: _call(conn.execute(sql, *args))  # noqa: E731
        await run(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        applied = {r["version"] for r in await _call(conn.fetch("SELECT version FROM schema_migrations"))}
        refuse_newer(applied, migrations)
        done: list[int] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        datetime.now(UTC),
                    )
            except asyncpg.PostgresError as exc:
                raise SchemaError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from None
            done.append(migration.version)
        return done
