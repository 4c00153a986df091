"""The admin route table's shape: one :class:`AdminRoute` per (method, path), declaring its permission.

Dispatch, the RBAC check and the OpenAPI document are all built from the same table, so none
of the three can drift from the others.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ferrogate.admin.rbac import Permission, Principal

if TYPE_CHECKING:
    from ferrogate.admin.service import AdminService


@dataclass(slots=True)
class Call:
    """One admin request as a handler sees it: who calls, path parameters, validated body and query."""

    principal: Principal
    params: dict[str, str]
    body: Any = None
    query: Any = None


Handler = Callable[["AdminService", Call], Awaitable[BaseModel]]


@dataclass(frozen=True, slots=True)
class AdminRoute:
    """One admin route: method, path (``{name}`` parameters), permission, models and handler.

    A path parameter matches one segment, or with its name in ``slashes`` the rest of the path (a model group name
    such as ``openai/gpt-4o``, sent as ``openai%2Fgpt-4o``: the server decodes it before the match).
    """

    method: str
    path: str
    permission: Permission
    summary: str
    response: type[BaseModel]
    handler: Handler
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    status: int = 200
    slashes: tuple[str, ...] = ()
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>{'.+' if m[1] in self.slashes else '[^/]+'})", self.path)
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))
