"""The store: where durable state lives (teams, users, keys, usage). SQLite (one file, WAL) is the embedded default;
PostgreSQL is selected by ``FERROGATE_DATABASE_URL=postgresql://...``. See docs/store.md.

Example:
    >>> store = open_store("sqlite:///:memory:")
    >>> store.kind
    'sqlite'
"""

from __future__ import annotations

from ferrogate.store.base import Guardrails, Keys, Mcp, Routing, Store, Teams, Usage, Users
from ferrogate.store.errors import Conflict, InUse, InvalidReference, InvalidValue, NotFound, SchemaError, StoreError
from ferrogate.store.guardrails import GuardrailPolicy
from ferrogate.store.mcp import StoredPolicy, StoredServer
from ferrogate.store.records import Key, KeyMatch, Page, Team, User
from ferrogate.store.routing import RoutingOverride, RoutingOverrides
from ferrogate.store.usage import UsageRecord, UsageRow

__all__ = [
    "DEFAULT_DATABASE_URL",
    "Conflict",
    "GuardrailPolicy",
    "Guardrails",
    "InUse",
    "InvalidReference",
    "InvalidValue",
    "Key",
    "KeyMatch",
    "Keys",
    "Mcp",
    "NotFound",
    "Page",
    "Routing",
    "RoutingOverride",
    "RoutingOverrides",
    "SchemaError",
    "Store",
    "StoreError",
    "StoredPolicy",
    "StoredServer",
    "Team",
    "Teams",
    "Usage",
    "UsageRecord",
    "UsageRow",
    "User",
    "Users",
    "open_store",
]

#: Where the embedded store lives when ``FERROGATE_DATABASE_URL`` is unset (relative to the working directory).
DEFAULT_DATABASE_URL = "sqlite:///.ferrogate/ferrogate.db"
_FORMS = "sqlite:///relative/path, sqlite:////absolute/path, postgresql://user@host:port/db"


def open_store(url: str | None) -> Store:
    """Open the store named by ``url`` (default :data:`DEFAULT_DATABASE_URL`); no schema check yet.

    ``sqlite:///relative/path``, ``sqlite:////absolute/path`` and ``sqlite:///:memory:`` open the embedded
    store; ``postgresql://...`` or ``postgres://...`` a PostgreSQL pool (connected on first use).

    Raises:
        StoreError: the URL's scheme is not supported, or the SQLite file cannot be opened.

    Example:
        >>> open_store("postgres://postgres@127.0.0.1/ferrogate").kind
        'postgres'
    """
    url = url or DEFAULT_DATABASE_URL
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        from ferrogate.store.postgres import PostgresStore

        return PostgresStore(url)
    if not sep or scheme != "sqlite":
        raise StoreError(f"FERROGATE_DATABASE_URL: unsupported scheme {scheme!r} (use {_FORMS})")
    from ferrogate.store.sqlite import SqliteStore

    path = rest[1:] if rest.startswith("/") else rest
    try:
        return SqliteStore(path or ":memory:")
    except OSError as exc:
        raise StoreError(f"FERROGATE_DATABASE_URL: cannot open {path!r}: {exc}") from None
