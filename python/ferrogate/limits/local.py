"""The per-instance limiter: Rust GCRA buckets in a shared-memory file mapped by every worker.

Every worker process of an instance opens the same file (the first one creates it); decisions are
compare-and-swap updates of 128-bit slots in it, so N workers on one key admit no more than the limit.
A decision takes well under a microsecond and runs inline (no thread pool, GIL kept).

Example:
    >>> import asyncio, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "limits")
    >>> limiter = LocalLimiter(path, capacity=1024)
    >>> d = asyncio.run(limiter.check("rpm:key:1", 1, 60.0))
    >>> d.allowed, asyncio.run(limiter.check("rpm:key:1", 1, 60.0)).allowed
    (True, False)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ferrogate._core import LimiterError, RateLimiter
from ferrogate.limits.decision import Decision


def default_table_path(instance: str) -> Path:
    """Where an instance's shared table lives: ``/dev/shm`` when present (memory only), else the temp dir.

    The name holds the user id, and :class:`LocalLimiter` refuses a file owned by another user (the file
    is created with mode 0600), so another local user cannot pre-create or share it.

    Args:
        instance: A name unique to the instance on this host (e.g. its port or config hash), so two
            instances on one host do not share buckets by accident.

    Returns:
        The file path (not created here).

    Example:
        >>> default_table_path("8080").name == f"ferrogate-limits-{os.getuid()}-8080"
        True
    """
    shm = "/dev/shm"  # noqa: S108 (per-user name, mode 0600, owner checked on open)
    base = Path(shm) if os.path.isdir(shm) else Path(tempfile.gettempdir())
    return base / f"ferrogate-limits-{os.getuid()}-{instance}"


class LocalLimiter:
    """:class:`~ferrogate.limits.decision.Limiter` over ``ferrogate._core.RateLimiter``.

    Args:
        path: The shared table file (see :func:`default_table_path`); ``None`` keeps the table in this
            process only (tests, a single worker).
        capacity: Slots in the table (the most keys held at once; 16 bytes each). Every process opening
            the file must pass the same value, else ``LimiterError``.

    Raises:
        ferrogate._core.LimiterError: The file cannot be created or mapped, has another layout, or belongs
            to another user.
    """

    def __init__(self, path: str | os.PathLike[str] | None, capacity: int = 65536) -> None:
        self._core = RateLimiter(path, capacity)
        if path is not None and (owner := os.stat(path).st_uid) != os.getuid():
            raise LimiterError(f"limiter table {os.fspath(path)!r} belongs to uid {owner}, not to this user")
        #: The Rust table, for synchronous calls on the hot path (see :class:`Limiter`); an attribute,
        #: not a property: the limit phase reads it on every request.
        self.sync_core: RateLimiter = self._core

    @property
    def core(self) -> RateLimiter:
        """The underlying Rust table."""
        return self._core

    async def check(self, key: str, limit: float, period_s: float, cost: float = 1.0) -> Decision:
        """Decide ``cost`` units for ``key`` (see :meth:`Limiter.check`)."""
        allowed, remaining, retry_after_s, reset_s = self._core.check(key, limit, period_s, cost)
        return Decision(allowed, remaining, retry_after_s, reset_s, limit)

    async def refund(self, key: str, limit: float, period_s: float, cost: float) -> None:
        """Give ``cost`` units back to ``key`` (see :meth:`Limiter.refund`)."""
        self._core.refund(key, limit, period_s, cost)

    async def charge(self, key: str, limit: float, period_s: float, cost: float) -> None:
        """Take ``cost`` units from ``key`` even into debt (see :meth:`Limiter.charge`)."""
        self._core.charge(key, limit, period_s, cost)

    async def peek(self, key: str, limit: float, period_s: float) -> tuple[float, float]:
        """``(remaining, reset_s)`` of ``key`` (see :meth:`Limiter.peek`)."""
        return self._core.peek(key, limit, period_s)
