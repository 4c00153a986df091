"""Whether this worker can reach its store: the last store call's outcome, shared by the data plane.

The authenticator, the budget ledger and the worker's probe (``Gateway``, once a second) report each call's
outcome here; ``/metrics`` (``ferrogate_store_up``) and ``/ready`` say what it holds. While the store is
known to be down, the authenticator answers from its expired cache entries at once (within the
stale-if-error window) instead of waiting on the store per request.

Example:
    >>> health = StoreHealth()
    >>> health.failed(OSError("connection refused"))
    >>> health.up, health.last_error
    (False, 'OSError: connection refused')
    >>> health.ok()
    >>> health.up
    True
"""

from __future__ import annotations

import logging
import time

from ferrogate.store.errors import StoreError

log = logging.getLogger("ferrogate.store")

#: What a store call raises when the store cannot answer (unreachable, link lost, timed out). ``NotFound`` and
#: the other typed refusals are answers, not faults: callers handle them before this.
STORE_FAULTS: tuple[type[Exception], ...] = (StoreError, OSError, TimeoutError)


class StoreHealth:
    """The store's reachability as this worker last saw it (``up``; ``down_since``, a monotonic time)."""

    __slots__ = ("down_since", "failed_at", "last_error", "up")

    def __init__(self) -> None:
        self.up = True
        self.down_since = 0.0
        self.failed_at = 0.0  # monotonic time of the last failure
        self.last_error: str | None = None

    def recently_failed(self, within_s: float = 1.0) -> bool:
        """Down, and a call failed less than ``within_s`` ago: a caller may skip the store (the worker's probe
        and the next call after that window find out when it is back)."""
        return not self.up and time.monotonic() - self.failed_at < within_s

    def ok(self) -> None:
        """A store call answered."""
        if not self.up:
            self.up = True
            log.warning("store reachable again after %.1f s", time.monotonic() - self.down_since)

    def failed(self, exc: BaseException) -> None:
        """A store call failed with ``exc`` (a connection error or a timeout)."""
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.failed_at = time.monotonic()
        if self.up:
            self.up = False
            self.down_since = time.monotonic()
            log.warning("store unreachable (%s): the data plane answers from cached keys", self.last_error)
