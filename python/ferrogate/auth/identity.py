"""Who a data-plane request speaks for, as the authenticate phase caches it."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any


class Limits:
    """Requests and tokens per minute for a key, its user and its team (``None``: no limit at that level).

    ``any`` is computed once: the limit phase reads it on every request.

    Example:
        >>> Limits(None, 100, None, None, None, None).any
        True
    """

    __slots__ = ("any", "key_rpm", "key_tpm", "team_rpm", "team_tpm", "user_rpm", "user_tpm")

    def __init__(
        self,
        key_rpm: int | None,
        key_tpm: int | None,
        user_rpm: int | None,
        user_tpm: int | None,
        team_rpm: int | None,
        team_tpm: int | None,
    ) -> None:
        self.key_rpm = key_rpm
        self.key_tpm = key_tpm
        self.user_rpm = user_rpm
        self.user_tpm = user_tpm
        self.team_rpm = team_rpm
        self.team_tpm = team_tpm
        self.any = any(v is not None for v in (key_rpm, key_tpm, user_rpm, user_tpm, team_rpm, team_tpm))


NO_LIMITS = Limits(None, None, None, None, None, None)


class BudgetRef:
    """One budget on a request's chain: ``scope`` ("key", "user", "team"), its owner's id, the limit in
    USD per ``period`` ("daily", "weekly", "monthly", "total").

    Example:
        >>> BudgetRef("team", "team_1", 100.0, "monthly").scope
        'team'
    """

    __slots__ = ("limit_usd", "owner_id", "period", "scope")

    def __init__(self, scope: str, owner_id: str, limit_usd: float, period: str) -> None:
        self.scope = scope
        self.owner_id = owner_id
        self.limit_usd = limit_usd
        self.period = period

    def __repr__(self) -> str:
        return f"BudgetRef({self.scope!r}, {self.owner_id!r}, {self.limit_usd!r}, {self.period!r})"


class Identity:
    """A usable virtual key with what authorize needs, flattened for the hot path.

    ``valid_until`` is the epoch second the key stops working (expiry, or the end of a
    rotation grace period when the old secret was used); ``None`` for no end. ``limits`` are
    the rpm/tpm of the key, its user and its team; ``budgets`` the budgets on its chain.
    Model decisions are memoised per model name (the set of names is the configured groups).
    """

    __slots__ = (
        "_decisions",
        "budgets",
        "key_id",
        "key_models",
        "limits",
        "rate_plan",
        "team_id",
        "team_models",
        "user_id",
        "valid_until",
    )

    def __init__(
        self,
        key_id: str,
        team_id: str | None,
        user_id: str | None,
        team_models: tuple[str, ...],
        key_models: tuple[str, ...] | None,
        valid_until: float | None,
    ) -> None:
        self.key_id = key_id
        self.team_id = team_id
        self.user_id = user_id
        self.team_models = team_models
        self.key_models = key_models
        self.valid_until = valid_until
        self.limits = NO_LIMITS
        self.budgets: tuple[BudgetRef, ...] = ()
        self.rate_plan: Any = None  # the limit phase's buckets of these limits (ferrogate.pipeline.limit)
        self._decisions: dict[str, bool] = {}

    def allows(self, model: str) -> bool:
        """Whether both the team's and the key's globs admit ``model``.

        Example:
            >>> Identity("k", "t", None, ("gpt-*",), None, None).allows("gpt-4o")
            True
        """
        decision = self._decisions.get(model)
        if decision is None:
            decision = any(fnmatchcase(model, g) for g in self.team_models) and (
                self.key_models is None or any(fnmatchcase(model, g) for g in self.key_models)
            )
            if len(self._decisions) < 4096:
                self._decisions[model] = decision
        return decision


#: The identity of unauthenticated callers of a server started with ``--dev`` (every model).
DEV_IDENTITY = Identity("dev", None, None, ("*",), None, None)
