"""Budget reservations for the ``budget`` phase: the worst-case cost of a request held on every budget of
its chain (key, user, team) before it goes upstream, or a 429 ``insufficient_quota``.

The arithmetic and the concurrency live in the store (:mod:`ferrogate.store.budgets`): one transaction per
request checks and holds all of its budgets, serialised per budget across workers and instances, so
concurrent requests never overshoot. The hold is replaced by the real cost when the request's usage record
is stored. Periods are UTC calendar periods (day; week from Monday; month from the 1st; ``total`` never
resets): a period's spend is the sum of its days, so a new period starts at zero on its own.

Example:
    >>> # ledger = BudgetLedger(store, BudgetSettings(), notifier)
    >>> # await ledger.reserve("req_1", identity.budgets, 0.12)   # raises GatewayError(429) when refused
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ferrogate.auth.identity import BudgetRef
from ferrogate.errors import BudgetExhausted, store_unavailable
from ferrogate.store.budgets import Balance, Hold
from ferrogate.store.errors import StoreError
from ferrogate.store.health import STORE_FAULTS, StoreHealth

if TYPE_CHECKING:
    from ferrogate.budgets.notify import WebhookNotifier
    from ferrogate.config.model import BudgetSettings
    from ferrogate.store import Store

log = logging.getLogger("ferrogate.budgets")

#: ``since_day`` of a ``total`` budget: before any day.
EVER = "0000-01-01"


def period_start(period: str | None, now: datetime) -> datetime | None:
    """When the budget period containing ``now`` began (UTC); ``None`` for ``total`` or no period.

    Example:
        >>> period_start("monthly", datetime(2026, 11, 25, 14, tzinfo=UTC)).isoformat()
        '2026-11-01T00:00:00+00:00'
        >>> period_start("weekly", datetime(2026, 11, 25, 14, tzinfo=UTC)).date().isoformat()  # a Wednesday
        '2026-11-23'
    """
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    return None


def hold_for(ref: BudgetRef, now: datetime) -> Hold:
    """The store's view of ``ref`` at ``now``: its limit and the first day of its current period.

    Example:
        >>> hold_for(BudgetRef("key", "key_1", 5.0, "daily"), datetime(2026, 11, 25, 9, tzinfo=UTC)).since_day
        '2026-11-25'
    """
    start = period_start(ref.period, now)
    return Hold(ref.scope, ref.owner_id, ref.limit_usd, EVER if start is None else start.date().isoformat())


def _usd(value: float) -> str:
    return f"${value:,.6f}".rstrip("0").rstrip(".") if value < 1 else f"${value:,.2f}"


class BudgetLedger:
    """Reserves worst-case costs against budgets; sends soft-limit and exhausted notices.

    Args:
        store: the store whose ``budgets`` ledger holds spend and reservations.
        settings: the ``budgets`` section of the configuration.
        notifier: where notices go (a webhook), or ``None``.
        timeout_s: the longest a reservation may wait on the store (then it counts as a store fault).
        health: where the outcome of each store call is reported (the worker's, shared with the authenticator).
    """

    def __init__(
        self,
        store: Store,
        settings: BudgetSettings,
        notifier: WebhookNotifier | None = None,
        *,
        timeout_s: float = 2.0,
        health: StoreHealth | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.notifier = notifier
        self.timeout_s = timeout_s
        self.health = StoreHealth() if health is None else health
        self._soft = settings.soft_limit_pct / 100.0

    async def reserve(self, request_id: str, refs: Sequence[BudgetRef], amount_usd: float) -> None:
        """Hold ``amount_usd`` on every budget in ``refs`` for ``request_id``.

        Raises:
            GatewayError: 429 ``insufficient_quota`` naming the budget that cannot cover the request; 503
                ``store_unavailable`` (with ``Retry-After``) when the store cannot be reached or does not answer
                within ``timeout_s`` and ``on_store_error`` is ``refuse`` (the default).
        """
        now = datetime.now(UTC)
        holds = [hold_for(r, now) for r in refs]
        try:
            if self.health.recently_failed():  # known down: answer now, not after the timeout
                raise StoreError(f"unreachable ({self.health.last_error})")
            async with asyncio.timeout(self.timeout_s):
                result = await self.store.budgets.reserve(
                    request_id,
                    holds,
                    amount_usd,
                    now=now,
                    ttl_s=self.settings.reservation_ttl_s,
                    soft_fraction=self._soft if self.notifier is not None else None,
                )
        except STORE_FAULTS as exc:
            first = self.health.up  # one warning per outage, not one per request
            self.health.failed(exc)
            if self.settings.on_store_error == "allow":
                (log.warning if first else log.debug)(
                    "budget store unavailable (%s): request %s admitted unchecked", exc, request_id
                )
                return
            raise store_unavailable(
                "Budgets cannot be checked right now (the store cannot be reached); try again shortly."
            ) from None
        self.health.ok()
        for index, kind in result.notices:
            self._notify(kind, refs[index], holds[index], result.balances[index], amount_usd)
        if result.refused is not None:
            ref, bal = refs[result.refused], result.balances[result.refused]
            raise BudgetExhausted(
                ref.scope,
                f"The {ref.scope} budget of {_usd(ref.limit_usd)} ({ref.period}) cannot cover this request: "
                f"{_usd(bal.spent_usd)} spent and {_usd(bal.reserved_usd)} held by requests in flight, and this "
                f"one may cost up to {_usd(amount_usd)} (lower max_tokens to need less).",
            )

    async def balances(self, refs: Sequence[BudgetRef]) -> list[tuple[Hold, Balance]]:
        """Each budget of ``refs`` with its current balance (for ``/v1/usage``)."""
        now = datetime.now(UTC)
        holds = [hold_for(r, now) for r in refs]
        return list(zip(holds, await self.store.budgets.balances(holds, now=now), strict=True))

    def _notify(self, kind: str, ref: BudgetRef, hold: Hold, bal: Balance, amount: float) -> None:
        if self.notifier is None:
            return
        event: dict[str, Any] = {
            "type": "budget.soft_limit" if kind == "soft" else "budget.exhausted",
            "scope": ref.scope,
            "owner_id": ref.owner_id,
            "period": ref.period,
            "period_start": None if hold.since_day == EVER else hold.since_day,
            "limit_usd": ref.limit_usd,
            "spent_usd": bal.spent_usd,
            "reserved_usd": bal.reserved_usd,
            "soft_limit_pct": self.settings.soft_limit_pct,
        }
        if kind == "exhausted":
            event["refused_request_cost_usd"] = amount
        log.warning("budget %s %s: %s", ref.scope, ref.owner_id, event["type"])
        self.notifier.notify(event)
