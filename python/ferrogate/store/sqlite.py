"""The SQLite backend: one file in WAL mode, shared by the instance's workers."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class SqliteStore:
    """The embedded store. Queries are short and local; nothing on the hot path touches it."""

    kind = "sqlite"

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise OSError(str(exc)) from None

    async def ping(self) -> str | None:
        """``None`` when a trivial query succeeds, else the error text."""
        try:
            self._conn.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            return str(exc)
        return None

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
