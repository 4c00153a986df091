"""The store's typed errors: every failure a caller can act on has its own class.

Example:
    >>> try:
    ...     raise NotFound("team", "team_0123456789abcdef")
    ... except StoreError as exc:
    ...     print(exc)
    team team_0123456789abcdef not found
"""

from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """Base of every store error; also raised when the store cannot be opened (bad URL, unwritable path)."""


class NotFound(StoreError):
    """No ``entity`` with this id.

    Example:
        >>> NotFound("key", "key_00").id
        'key_00'
    """

    def __init__(self, entity: str, id: str) -> None:
        super().__init__(f"{entity} {id} not found")
        self.entity = entity
        self.id = id


class Conflict(StoreError):
    """A unique field already holds ``value`` (duplicate team name, user name within a team, key hash).

    Example:
        >>> str(Conflict("team", "name", "ml"))
        "team with name 'ml' already exists"
    """

    def __init__(self, entity: str, field: str, value: Any, message: str | None = None) -> None:
        super().__init__(message or f"{entity} with {field} {value!r} already exists")
        self.entity = entity
        self.field = field
        self.value = value


class InUse(Conflict):
    """A row cannot be deleted while others refer to it (a team with users or keys; a user with keys).

    Example:
        >>> str(InUse("team", "team_00"))
        'team team_00 is still referenced (by users or keys): delete or move those first'
    """

    def __init__(self, entity: str, id: str) -> None:
        super().__init__(
            entity, "id", id, f"{entity} {id} is still referenced (by users or keys): delete or move those first"
        )


class InvalidReference(StoreError):
    """A foreign key names a row that does not exist (unknown ``team_id``, ``user_id``).

    Example:
        >>> str(InvalidReference("team_id", "team_00"))
        "team_id 'team_00' does not exist"
    """

    def __init__(self, field: str, value: Any) -> None:
        super().__init__(f"{field} {value!r} does not exist")
        self.field = field
        self.value = value


class InvalidValue(StoreError):
    """A field holds a value the store refuses (unknown role, naive datetime, bad cursor, unknown field).

    Example:
        >>> str(InvalidValue("role", "root", "one of admin, team_admin, auditor, member"))
        "role 'root' is invalid: expected one of admin, team_admin, auditor, member"
    """

    def __init__(self, field: str, value: Any, expected: str) -> None:
        super().__init__(f"{field} {value!r} is invalid: expected {expected}")
        self.field = field
        self.value = value


class SchemaError(StoreError):
    """The database schema does not match this ferrogate (migrations pending, or the database is newer).

    Example:
        >>> str(SchemaError("run `ferrogate migrate`"))
        'run `ferrogate migrate`'
    """
