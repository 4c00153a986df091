"""Versioned SQL migrations, shipped as package data under ``store/migrations/<dialect>/NNNN_name.sql``.

Each backend applies the pending ones in order, each in its own transaction together with its row in
``schema_migrations`` (so a failed migration leaves nothing behind), and refuses a database whose schema is
newer than the code.

Example:
    >>> [m.version for m in load_migrations("sqlite")][:1]
    [1]
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib import resources

from ferrogate.store.errors import SchemaError

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration: ``version`` (from the file name's 4 digits), ``name`` and its SQL script."""

    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> tuple[Migration, ...]:
    """The migrations of ``dialect`` (``sqlite`` or ``postgres``), ordered by version.

    Raises:
        SchemaError: the versions are not 1, 2, 3, ... without gaps or duplicates (a packaging fault).

    Example:
        >>> load_migrations("postgres")[0].name
        'initial'
    """
    root = resources.files("ferrogate.store") / "migrations" / dialect
    found: list[Migration] = []
    for entry in root.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise SchemaError(f"migrations for {dialect} are not numbered 1..n: {[m.version for m in found]}")
    return tuple(found)


def check_versions(applied: Collection[int], known: Sequence[Migration]) -> None:
    """Raise when the database (``applied`` versions) does not match the code (``known`` migrations).

    Raises:
        SchemaError: the database is newer than the code, or migrations are pending.

    Example:
        >>> known = load_migrations("sqlite")
        >>> check_versions({m.version for m in known}, known)  # up to date: nothing to say
        >>> check_versions({1, 2}, known)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ferrogate.store.errors.SchemaError: database schema version 2 is older than this ferrogate ...
    """
    refuse_newer(applied, known)
    pending = [m.version for m in known if m.version not in applied]
    if pending:
        current = max(applied, default=0)
        raise SchemaError(
            f"database schema version {current} is older than this ferrogate (knows {len(known)}; "
            f"pending migrations: {', '.join(map(str, pending))}): run `ferrogate migrate`"
        )


def refuse_newer(applied: Collection[int], known: Sequence[Migration]) -> None:
    """Raise when the database holds a schema version this code does not know.

    Raises:
        SchemaError: ``max(applied)`` is above the newest known migration.

    Example:
        >>> refuse_newer({1}, load_migrations("sqlite"))
    """
    newest = max(applied, default=0)
    if newest > len(known):
        raise SchemaError(
            f"database schema version {newest} is newer than this ferrogate (knows {len(known)}): upgrade ferrogate"
        )
