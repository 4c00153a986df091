"""Tool policies: which tools a team's keys may list and call (deny by default), narrowed per key.

A policy holds ``allow`` and ``deny`` globs over ``server/tool`` (``fnmatch.fnmatchcase``); ``"server"`` alone
means ``"server/*"``, ``"*"`` every tool. A tool is allowed when an allow glob matches and no deny glob does; a
key's entry in ``keys`` narrows that further (its ``allow``, when set, must match too; its ``deny`` also
refuses). A team without a stored policy gets ``mcp.default_policy`` of the configuration (no tools unless set).

Example:
    >>> from ferrogate.config.mcp import McpSettings
    >>> policies = Policies(McpSettings())
    >>> policies.apply({"t1": {"allow": ["github", "docs/search"], "deny": ["github/delete_*"],
    ...                        "keys": {"k1": {"allow": ["github/*"]}}}})
    >>> allowed = policies.allows("t1", None)
    >>> allowed("github", "create_issue"), allowed("github", "delete_repo"), allowed("docs", "search")
    (True, False, True)
    >>> policies.allows("t1", "k1")("docs", "search")
    False
    >>> policies.allows("t2", None)("github", "create_issue")
    False
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ferrogate.config.errors import yaml_path
from ferrogate.config.mcp import Glob, McpSettings

#: ``allowed(server_id, tool_name)``: the caller's policy test.
Allowed = Callable[[str, str], bool]
#: Memo bounds: (team, key) predicates, and (server, tool) answers per predicate.
_MAX_PREDICATES = 10_000
_MAX_ANSWERS = 100_000


class PolicyError(ValueError):
    """A policy document is invalid; ``param`` names the field (``allow[2]``, ``keys.k1.deny[0]``)."""

    def __init__(self, param: str, message: str, team_id: str | None = None) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message
        self.team_id = team_id


class KeyToolPolicy(BaseModel):
    """One key's narrowing of its team's policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[Glob] | None = Field(None, description="None: the team's allow list; a list: a tool must match both")
    deny: list[Glob] = Field(default_factory=list)
    tool_calls_per_minute: int | None = Field(None, ge=1, le=1_000_000)


class ToolPolicy(BaseModel):
    """A team's tool policy: the document ``POST /admin/v1/mcp/policies/{team_id}`` takes and ``GET`` returns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[Glob] = Field(default_factory=list, description='globs "server/tool"; "server" means "server/*"')
    deny: list[Glob] = Field(default_factory=list, description="deny wins over allow")
    tool_calls_per_minute: int | None = Field(None, ge=1, le=1_000_000)
    keys: dict[str, KeyToolPolicy] = Field(default_factory=dict, description="key id -> narrowing")


def _matcher(globs: Sequence[str]) -> Callable[[str], bool]:
    """One compiled regex for a list of globs (``server`` alone means ``server/*``)."""
    if not globs:
        return lambda _name: False
    pattern = re.compile("|".join(fnmatch.translate(g if "/" in g else g + "/*") for g in globs))
    return lambda name: pattern.match(name) is not None


class _Compiled:
    """A policy's globs compiled, with its key narrowings compiled on first use."""

    def __init__(self, policy: ToolPolicy) -> None:
        self.policy = policy
        self.allow = _matcher(policy.allow)
        self.deny = _matcher(policy.deny)

    def test(self, key: KeyToolPolicy | None) -> Callable[[str], bool]:
        allow, deny = self.allow, self.deny
        if key is None:
            return lambda name: allow(name) and not deny(name)
        key_allow = None if key.allow is None else _matcher(key.allow)
        key_deny = _matcher(key.deny)
        if key_allow is None:
            return lambda name: allow(name) and not deny(name) and not key_deny(name)
        narrowed = key_allow
        return lambda name: allow(name) and narrowed(name) and not deny(name) and not key_deny(name)


class Policies:
    """Every team's tool policy of this worker (from the store), with memoised per-key predicates."""

    def __init__(self, settings: McpSettings) -> None:
        self._settings = settings
        default = settings.default_policy
        self._default = _Compiled(ToolPolicy(allow=default.allow, deny=default.deny))
        self._teams: dict[str, _Compiled] = {}
        self._predicates: dict[tuple[str | None, str | None], Allowed] = {}

    def apply(self, docs: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace every team's policy (team id -> document, as stored); all are validated before any applies.

        Raises:
            PolicyError: a document is invalid (``team_id`` says whose); nothing changed.
        """
        teams = {team: _Compiled(self.validate(team, doc)) for team, doc in docs.items()}
        self._teams = teams
        self._predicates = {}

    def validate(self, team_id: str, doc: Any) -> ToolPolicy:
        """``doc`` as a :class:`ToolPolicy`.

        Raises:
            PolicyError: naming the first invalid field (``allow[2]``, ``keys.k1.tool_calls_per_minute``).
        """
        if isinstance(doc, ToolPolicy):
            return doc
        if not isinstance(doc, Mapping):
            raise PolicyError("(body)", "must be a JSON object", team_id)
        try:
            return ToolPolicy.model_validate(doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            message = str(first["msg"]).removeprefix("Value error, ")
            raise PolicyError(yaml_path(tuple(first["loc"])), message, team_id) from None

    def allows(self, team_id: str | None, key_id: str | None) -> Allowed:
        """The policy test of a key of a team: ``allowed(server, tool)``.

        Memoised per (team, key) until the next :meth:`apply`; the predicate memoises per (server, tool), so
        the same callable (a stable identity callers may cache on) answers a key's every request.
        """
        memo_key = (team_id, key_id)
        predicate = self._predicates.get(memo_key)
        if predicate is None:
            if len(self._predicates) >= _MAX_PREDICATES:
                self._predicates = {}
            predicate = self._predicates[memo_key] = self._predicate(team_id, key_id)
        return predicate

    def calls_per_minute(self, team_id: str | None, key_id: str | None) -> int | None:
        """The key's tool calls per minute: its own limit, else its team's, else ``mcp.tool_calls_per_minute``."""
        policy = self._compiled(team_id).policy
        key = policy.keys.get(key_id) if key_id is not None else None
        if key is not None and key.tool_calls_per_minute is not None:
            return key.tool_calls_per_minute
        if policy.tool_calls_per_minute is not None:
            return policy.tool_calls_per_minute
        return self._settings.tool_calls_per_minute

    def doc(self, team_id: str) -> ToolPolicy | None:
        """The stored policy of a team (None: it has none; the default applies)."""
        compiled = self._teams.get(team_id)
        return None if compiled is None else compiled.policy

    def _compiled(self, team_id: str | None) -> _Compiled:
        if team_id is None:
            return self._default
        return self._teams.get(team_id, self._default)

    def _predicate(self, team_id: str | None, key_id: str | None) -> Allowed:
        compiled = self._compiled(team_id)
        key = compiled.policy.keys.get(key_id) if key_id is not None else None
        test = compiled.test(key)
        answers: dict[tuple[str, str], bool] = {}

        def allowed(server: str, tool: str) -> bool:
            pair = (server, tool)
            answer = answers.get(pair)
            if answer is None:
                if len(answers) >= _MAX_ANSWERS:
                    answers.clear()
                answer = answers[pair] = test(f"{server}/{tool}")
            return answer

        return allowed
