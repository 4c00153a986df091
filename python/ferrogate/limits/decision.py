"""The result of a limit check and the interface every limiter implements.

Example:
    >>> d = Decision(allowed=False, remaining=0.4, retry_after_s=1.5, reset_s=59.0, limit=100.0)
    >>> d.allowed, d.retry_after_s
    (False, 1.5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ferrogate._core import RateLimiter


@dataclass(frozen=True, slots=True)
class Decision:
    """One limit decision, with what OpenAI's ``x-ratelimit-*`` headers and ``Retry-After`` need.

    Attributes:
        allowed: Whether the cost was admitted (and consumed).
        remaining: Units left in the bucket after this decision (``0 <= remaining <= limit``; a float,
            floor it for a header).
        retry_after_s: 0 when allowed; else seconds until the cost would fit; ``math.inf`` when the cost
            exceeds the whole limit and never fits.
        reset_s: Seconds until the bucket is full again.
        limit: The limit the decision was made against (units per period).
    """

    allowed: bool
    remaining: float
    retry_after_s: float
    reset_s: float
    limit: float


class Limiter(Protocol):
    """A GCRA limiter: ``limit`` units per ``period_s`` per key, burst ``limit``.

    ``sync_core`` is the Rust table when the limiter is the local one: the limit phase then calls its
    synchronous ``check``/``refund``/``charge`` directly (bare tuples, no coroutine, no :class:`Decision`);
    ``None`` for limiters that must be awaited (Redis).
    """

    @property
    def sync_core(self) -> RateLimiter | None:
        """The synchronous Rust table behind this limiter, or ``None`` (use the async methods)."""
        ...

    async def check(self, key: str, limit: float, period_s: float, cost: float = 1.0) -> Decision:
        """Decide ``cost`` units for ``key``, consuming them when allowed.

        Args:
            key: The bucket's name (e.g. ``"tpm:team:42"``).
            limit: Units per period (> 0).
            period_s: The period in seconds (> 0).
            cost: Units this request takes (>= 0): 1 for requests, the token estimate for tokens.

        Returns:
            The decision.
        """
        ...

    async def refund(self, key: str, limit: float, period_s: float, cost: float) -> None:
        """Give ``cost`` units back to ``key`` (settling a reservation); never more than a full bucket.

        Args:
            key: The bucket's name.
            limit: Units per period, as in the check.
            period_s: The period, as in the check.
            cost: Units to give back (reserved minus used).
        """
        ...

    async def charge(self, key: str, limit: float, period_s: float, cost: float) -> None:
        """Take ``cost`` units from ``key`` even when they do not fit (settling a request that used more
        than it reserved); the bucket may go into debt, at most ``MAX_DEBT_PERIODS`` (2) periods ahead of
        now, and later requests wait until it has refilled.

        Args:
            key: The bucket's name.
            limit: Units per period, as in the check.
            period_s: The period, as in the check.
            cost: Units to take (used minus reserved).
        """
        ...

    async def peek(self, key: str, limit: float, period_s: float) -> tuple[float, float]:
        """``(remaining, reset_s)`` of ``key`` without consuming (for response headers).

        Args:
            key: The bucket's name.
            limit: Units per period.
            period_s: The period in seconds.

        Returns:
            Units left and seconds until full.
        """
        ...
