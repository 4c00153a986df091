"""The store: where durable state lives. SQLite (one file, WAL) is the embedded default.

Example:
    >>> store = open_store("sqlite:///:memory:")
    >>> store.kind
    'sqlite'
"""

from __future__ import annotations

from typing import Protocol

from ferrogate.store.sqlite import SqliteStore

#: Where the embedded store lives when ``FERROGATE_DATABASE_URL`` is unset (relative to the working directory).
DEFAULT_DATABASE_URL = "sqlite:///.ferrogate/ferrogate.db"


class StoreError(Exception):
    """The store cannot be opened (bad URL, unwritable path)."""


class Store(Protocol):
    """What the server needs of a store backend."""

    kind: str

    async def ping(self) -> str | None:
        """``None`` when reachable, else a short description of the fault."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_store(url: str | None) -> Store:
    """Open the store named by ``url`` (``sqlite:///path``; default :data:`DEFAULT_DATABASE_URL`).

    Raises:
        StoreError: the URL's scheme is not supported or the file cannot be opened.
    """
    url = url or DEFAULT_DATABASE_URL
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "sqlite":
        raise StoreError(f"FERROGATE_DATABASE_URL: unsupported scheme {scheme!r} (supported: sqlite:///PATH)")
    path = rest[1:] if rest.startswith("/") else rest
    try:
        return SqliteStore(path or ":memory:")
    except OSError as exc:
        raise StoreError(f"FERROGATE_DATABASE_URL: cannot open {path!r}: {exc}") from None
