"""The SQLite backend: one file in WAL mode, shared by the instance's workers (the embedded default).

``sqlite3`` calls run on one dedicated thread per store, so the event loop never waits on disk; an
``asyncio.Lock`` keeps one transaction at a time on the store's connection, and write transactions start
with ``BEGIN IMMEDIATE`` so concurrent workers queue on ``busy_timeout`` instead of failing on a lock
upgrade. Short programs (a budget hold: a few indexed statements) run instead on the event loop's own
connection when the write lock is free at once (``busy_timeout=0``; else they take the thread like the
rest): the thread hop costs more CPU than the statements. That connection never checkpoints (a checkpoint
may fsync); the store's thread runs a checkpoint after every ``CHECKPOINT_EVERY`` of its commits.

Example:
    >>> store = SqliteStore(":memory:")
    >>> store.kind
    'sqlite'
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ferrogate.store.errors import SchemaError, StoreError
from ferrogate.store.fields import stamp
from ferrogate.store.migrate import Migration, load_migrations, refuse_newer
from ferrogate.store.sql import IntegrityFault, Program, Row, SqlStore

T = TypeVar("T")
_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)$")
#: Commits of short programs on the loop's connection between two checkpoints run on the store's thread.
CHECKPOINT_EVERY = 256
_BUSY = object()  # the write lock was taken: run on the store's thread instead


def _fault(exc: sqlite3.Error) -> Exception:
    """The typed form of a sqlite3 error raised by a statement."""
    name = getattr(exc, "sqlite_errorname", "")
    if isinstance(exc, sqlite3.IntegrityError):
        if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
            match = _UNIQUE.search(str(exc))
            cols = tuple(c.strip().split(".")[-1] for c in match[1].split(",")) if match else None
            return IntegrityFault("unique", cols, str(exc))
        if name == "SQLITE_CONSTRAINT_FOREIGNKEY" or "FOREIGN KEY constraint failed" in str(exc):  # RESTRICT: _TRIGGER
            return IntegrityFault("fk", None, str(exc))
        return IntegrityFault("other", None, str(exc))
    if "no such table" in str(exc):
        return SchemaError(f"sqlite: {exc}: the schema is missing, run `ferrogate migrate`")
    return StoreError(f"sqlite: {exc}")


class _Tx:
    """Statements on the store's connection, each run on the store's thread."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        conn = self._store.conn
        return await self._store.run(lambda: conn.execute(sql, args).fetchall())

    async def execute(self, sql: str, *args: Any) -> int:
        conn = self._store.conn
        return await self._store.run(lambda: conn.execute(sql, args).rowcount)

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        conn = self._store.conn
        await self._store.run(lambda: conn.executemany(sql, args))


class SqliteStore(SqlStore):
    """The embedded store (``sqlite:///path``). Queries are short and local; the hot path never waits on it.

    Args:
        path: the database file (created with its directory if missing), or ``:memory:``.
        migrations: the migrations to apply and check against (default: the packaged ones).

    Raises:
        OSError: the file cannot be created or opened.
    """

    kind = "sqlite"

    def __init__(self, path: str, *, migrations: Sequence[Migration] | None = None) -> None:
        super().__init__(load_migrations("sqlite") if migrations is None else migrations)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self.conn.execute("PRAGMA busy_timeout=5000")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise OSError(str(exc)) from None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferrogate-sqlite")
        self._lock = asyncio.Lock()
        self._closed = False
        self._inline: sqlite3.Connection | None = None  # short programs on the event loop (files only)
        self._inline_commits = 0
        self._checkpoints: set[asyncio.Task[None]] = set()
        if path != ":memory:" and str(mode).lower() == "wal":  # without WAL a COMMIT may meet readers: BUSY
            try:
                inline = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                inline.row_factory = sqlite3.Row
                inline.execute("PRAGMA busy_timeout=0")  # a taken lock answers at once: then the thread waits
                inline.execute("PRAGMA foreign_keys=ON")
                inline.execute("PRAGMA synchronous=NORMAL")
                inline.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints (fsync) stay off the event loop
            except sqlite3.Error as exc:
                raise OSError(str(exc)) from None
            self._inline = inline

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the store's thread, translating sqlite3 errors."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn)
        except sqlite3.Error as exc:
            raise _fault(exc) from None

    def _begin(self) -> None:
        if self.conn.in_transaction:  # left open by a cancelled caller
            self.conn.execute("ROLLBACK")
        self.conn.execute("BEGIN IMMEDIATE")

    def _end(self, commit: bool) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT" if commit else "ROLLBACK")

    @asynccontextmanager
    async def transaction(self, write: bool = True) -> AsyncIterator[_Tx]:
        """The connection inside ``BEGIN IMMEDIATE`` (writes; rolled back on error), or in autocommit (reads)."""
        async with self._lock:
            if not write:
                yield _Tx(self)
                return
            await self.run(self._begin)
            try:
                yield _Tx(self)
            except BaseException:
                await asyncio.shield(self.run(functools.partial(self._end, False)))
                raise
            await self.run(functools.partial(self._end, True))

    async def run_program(self, program: Program[T], *, short: bool = False) -> T:
        """Run ``program`` whole inside ``BEGIN IMMEDIATE`` (see the base class): on the store's thread, or
        (``short``, the write lock free at once) on the caller's thread."""
        if short and self._inline is not None and not self._checkpoints and not self._closed:
            done = self._run_inline(program)
            if done is not _BUSY:
                return done  # type: ignore[return-value]

        def go() -> T:
            self._begin()
            try:
                result = _drive(self.conn, program)
            except BaseException:
                self._end(False)
                raise
            self._end(True)
            return result

        async with self._lock:
            return await self.run(go)

    def _run_inline(self, program: Program[T]) -> T | object:
        """``program`` on the loop's connection, or ``_BUSY`` (nothing run) when the write lock is taken."""
        conn = self._inline
        assert conn is not None
        try:
            if conn.in_transaction:  # left open by a failed ROLLBACK: it would hold the write lock
                conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:  # BUSY and its extended codes
                return _BUSY
            raise _fault(exc) from None
        except sqlite3.Error as exc:
            raise _fault(exc) from None
        try:
            result = _drive(conn, program)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # retried before the next BEGIN
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _fault(exc) from None
            raise
        self._inline_commits += 1
        if self._inline_commits >= CHECKPOINT_EVERY and not self._checkpoints:  # one at a time
            self._inline_commits = 0
            task = asyncio.get_running_loop().create_task(self._checkpoint())
            self._checkpoints.add(task)
            task.add_done_callback(self._checkpoints.discard)
        return result

    async def _checkpoint(self) -> None:
        """A checkpoint on the store's thread (the loop's connection never runs one, it may fsync). While it
        is pending, short programs take the thread too (queued behind it): no write of this process races
        it, so it copies the whole WAL back and the next write starts the WAL over instead of growing it."""
        async with self._lock:
            if not self._closed:  # a failure: the next one catches up; a failing store shows on the next write
                with contextlib.suppress(StoreError):
                    await self.run(lambda: self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())

    def ts_in(self, value: datetime) -> str:
        """Fixed-width ISO-8601 UTC text, so text order is time order.

        Example:
            >>> SqliteStore.ts_in(None, datetime(2025, 1, 31, 12, tzinfo=UTC))  # type: ignore[arg-type]
            '2025-01-31T12:00:00.000000Z'
        """
        return stamp(value)

    def ts_out(self, raw: Any) -> datetime:
        """Parse the stored text (``fromisoformat`` reads the trailing ``Z`` as UTC)."""
        return datetime.fromisoformat(raw)

    def utc_day(self, column: str) -> str:
        """The date part of the stored fixed-width UTC text."""
        return f"substr({column}, 1, 10)"

    async def ping(self) -> str | None:
        """``None`` when a trivial query succeeds, else the error text."""
        try:
            await self.run(lambda: self.conn.execute("SELECT 1").fetchone())
        except StoreError as exc:
            return str(exc)
        return None

    async def close(self) -> None:
        """Close the connections and stop the store's thread."""
        if not self._closed:
            self._closed = True
            if self._checkpoints:
                await asyncio.gather(*self._checkpoints, return_exceptions=True)
            if self._inline is not None:
                self._inline.close()
            await self.run(self.conn.close)
            self._thread.shutdown(wait=True)

    def _versions(self) -> set[int]:
        found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
        if not found.fetchone():
            return set()
        return {row[0] for row in self.conn.execute("SELECT version FROM schema_migrations")}

    async def applied_versions(self) -> set[int]:
        """The versions recorded in ``schema_migrations``."""
        async with self._lock:
            return await self.run(self._versions)

    async def _apply(self, migrations: Sequence[Migration]) -> list[int]:
        async with self._lock:
            return await self.run(functools.partial(self._apply_sync, migrations))

    def _apply_sync(self, migrations: Sequence[Migration]) -> list[int]:
        conn = self.conn
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        done: list[int] = []
        for migration in migrations:
            applied = self._versions()
            refuse_newer(applied, migrations)
            if migration.version in applied:
                continue
            stamp = self.ts_in(datetime.now(UTC))
            # the version row goes first: a worker that loses the race fails on it and rolls back
            script = (
                "BEGIN IMMEDIATE;\n"
                f"INSERT INTO schema_migrations VALUES ({migration.version}, '{migration.name}', '{stamp}');\n"
                f"{migration.sql}\n;\nCOMMIT;"
            )
            try:
                conn.executescript(script)
            except sqlite3.Error as exc:
                self._end(False)
                if isinstance(exc, sqlite3.IntegrityError) and migration.version in self._versions():
                    continue
                raise SchemaError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from None
            done.append(migration.version)
        return done


def _drive(conn: sqlite3.Connection, program: Program[T]) -> T:
    """Execute each statement ``program`` yields on ``conn`` and send its rows back; its return value."""
    try:
        sql, args = next(program)
        while True:
            sql, args = program.send(conn.execute(sql, args).fetchall())
    except StopIteration as stop:
        result: T = stop.value
        return result
