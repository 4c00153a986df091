"""The budget ledger in the store: spend per day, reservations of requests in flight, notices sent.

A budget's balance is ``spent + reserved``: ``spent`` sums ``budget_spend`` over the days of the current
period (the usage insert adds each new record's cost there in its own transaction, see
:meth:`~ferrogate.store.usage.SqlUsage.insert_many`), ``reserved`` is ``budget_held``, the running sum of
the budget's ``budget_reservations`` rows (every insert and delete of a row adjusts it in the same
transaction; expired rows are swept when the budget is next reserved against).
:meth:`SqlBudgets.reserve` checks every budget of a request's chain and holds the worst-case cost on
all of them in one transaction, serialised per budget (SQLite: the write lock of ``BEGIN IMMEDIATE``;
PostgreSQL: a transaction-scoped advisory lock per budget, taken in a fixed order), and reads each
balance in one statement (one snapshot). So concurrent requests can never reserve past a budget;
the usage insert replaces a reservation by the real cost atomically (a stream that ran past its
reservation is counted at its real cost).

Example:
    >>> # holds = [Hold("team", team.id, 100.0, "2026-11-01")]
    >>> # result = await store.budgets.reserve("req_1", holds, 0.25, now=now, ttl_s=900, soft_fraction=0.8)
    >>> # result.refused is None  -> go ahead; else holds[result.refused] cannot cover 0.25
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ferrogate.store.errors import InvalidValue

if TYPE_CHECKING:
    from ferrogate.store.sql import Program, Row, SqlStore, Statement, Tx

SCOPES = ("key", "user", "team")


@dataclass(frozen=True, slots=True)
class Hold:
    """One budget to check: ``scope`` (key, user, team), its owner, the limit in USD and the first UTC day
    (``YYYY-MM-DD``) of its current period (``"0000-01-01"`` for a total budget)."""

    scope: str
    owner_id: str
    limit_usd: float
    since_day: str


@dataclass(frozen=True, slots=True)
class Balance:
    """A budget's state: USD spent in the period and USD held by requests in flight."""

    spent_usd: float
    reserved_usd: float


@dataclass(slots=True)
class Reservation:
    """What :meth:`SqlBudgets.reserve` decided.

    ``refused`` is the index of the first hold that cannot cover the amount (nothing was reserved), or
    ``None`` (the amount is held on every budget). ``balances`` are before this request; ``notices`` the
    ``(hold index, kind)`` pairs ("soft", "exhausted") recorded for the first time in this period.
    """

    refused: int | None
    balances: list[Balance]
    notices: list[tuple[int, str]] = field(default_factory=list)


class SqlBudgets:
    """``store.budgets``: reserve worst-case costs against budgets, read balances."""

    def __init__(self, db: SqlStore) -> None:
        self._db = db

    @staticmethod
    def _balance_sql(hold: Hold) -> Statement:
        return (  # one statement: one snapshot of spend and holds (PostgreSQL reads at READ COMMITTED)
            "SELECT (SELECT COALESCE(SUM(cost_usd), 0.0) FROM budget_spend"
            " WHERE scope = ? AND owner_id = ? AND day >= ?) AS spent,"
            " (SELECT COALESCE(MAX(held_usd), 0.0) FROM budget_held WHERE scope = ? AND owner_id = ?) AS reserved",
            (hold.scope, hold.owner_id, hold.since_day, hold.scope, hold.owner_id),
        )

    @staticmethod
    def _balance(rows: list[Row]) -> Balance:
        return Balance(float(rows[0]["spent"]), max(0.0, float(rows[0]["reserved"])))  # max: float residue

    async def reserve(
        self,
        request_id: str,
        holds: Sequence[Hold],
        amount_usd: float,
        *,
        now: datetime,
        ttl_s: float,
        soft_fraction: float | None = None,
    ) -> Reservation:
        """Hold ``amount_usd`` for ``request_id`` on every budget of ``holds``, or on none.

        A budget admits the request when ``spent + reserved + amount <= limit``. The reservation lasts until
        the request's usage record is stored (which deletes it) or ``ttl_s`` passes (a worker that died).
        With ``soft_fraction``, a budget whose spend reached ``soft_fraction * limit`` gets a "soft" notice,
        and a refused one an "exhausted" notice, each recorded once per period (for the webhook).

        Raises:
            InvalidValue: an unknown scope, a negative amount or limit.
            StoreError: the database failed (nothing is reserved).

        Example:
            >>> # r = await store.budgets.reserve(rid, holds, 0.02, now=datetime.now(UTC), ttl_s=900)
        """
        if not (amount_usd >= 0) or any(h.scope not in SCOPES or not (h.limit_usd >= 0) for h in holds):
            raise InvalidValue("budget reservation", amount_usd, "a non-negative amount on key/user/team budgets")
        if not holds:
            return Reservation(None, [])
        stamp = self._db.ts_in(now)
        expires = self._db.ts_in(now + timedelta(seconds=ttl_s))
        db = self._db
        if db.kind == "postgres":  # the same steps in one round trip: the ferrogate_reserve function (0003)
            return await self._reserve_pg(request_id, holds, amount_usd, stamp, expires, soft_fraction)

        def program() -> Program[Reservation]:
            for hold in sorted(holds, key=lambda h: (h.scope, h.owner_id)):  # one order: no deadlock
                lock = db.lock_sql(f"budget:{hold.scope}:{hold.owner_id}")
                if lock is not None:
                    yield lock
                # expired holds (a worker died before its usage was stored) stop counting
                gone = yield (
                    "DELETE FROM budget_reservations WHERE scope = ? AND owner_id = ? AND expires_at <= ?"
                    " RETURNING amount_usd",
                    (hold.scope, hold.owner_id, stamp),
                )
                if gone:
                    yield held_sql({(hold.scope, hold.owner_id): -sum(float(r["amount_usd"]) for r in gone)})
            balances = []
            for hold in holds:
                balances.append(self._balance((yield self._balance_sql(hold))))
            refused = next(
                (
                    i
                    for i, (h, b) in enumerate(zip(holds, balances, strict=True))
                    if b.spent_usd + b.reserved_usd + amount_usd > h.limit_usd
                ),
                None,
            )
            if refused is None:
                added: dict[tuple[str, str], float] = {}
                for hold in holds:
                    new = yield (
                        "INSERT INTO budget_reservations (request_id, scope, owner_id, amount_usd, expires_at)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (request_id, scope) DO NOTHING RETURNING 1",
                        (request_id, hold.scope, hold.owner_id, amount_usd, expires),
                    )
                    if new:
                        added[(hold.scope, hold.owner_id)] = amount_usd
                if added:
                    yield held_sql(added)
            result = Reservation(refused, balances)
            if soft_fraction is not None:
                for i, (hold, bal) in enumerate(zip(holds, balances, strict=True)):
                    kinds = ["exhausted"] if i == refused else []
                    if bal.spent_usd >= soft_fraction * hold.limit_usd:
                        kinds.append("soft")
                    for kind in kinds:
                        new = yield (
                            "INSERT INTO budget_notices (scope, owner_id, period_start, kind, created_at)"
                            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                            (hold.scope, hold.owner_id, hold.since_day, kind, stamp),
                        )
                        if new:
                            result.notices.append((i, kind))
            return result

        return await db.run_program(program(), short=True)  # SQLite: on the loop when the lock is free

    async def _reserve_pg(
        self,
        request_id: str,
        holds: Sequence[Hold],
        amount_usd: float,
        now: Any,
        expires: Any,
        soft_fraction: float | None,
    ) -> Reservation:
        # one statement outside an explicit transaction: it commits atomically on its own (one round trip)
        async with self._db.transaction(write=False) as tx:
            rows = await tx.fetch(
                "SELECT idx, spent, reserved, refused, notices FROM ferrogate_reserve(?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ORDER BY idx",
                request_id,
                [h.scope for h in holds],
                [h.owner_id for h in holds],
                [float(h.limit_usd) for h in holds],
                [h.since_day for h in holds],
                float(amount_usd),
                now,
                expires,
                soft_fraction,
            )
        refused = rows[0]["refused"]
        result = Reservation(
            None if refused is None else int(refused) - 1,
            [Balance(float(r["spent"]), float(r["reserved"])) for r in rows],
        )
        for i, row in enumerate(rows):
            notices = list(row["notices"] or [])
            result.notices += [(i, kind) for kind in ("exhausted", "soft") if kind in notices]
        return result

    async def balances(self, holds: Sequence[Hold], *, now: datetime) -> list[Balance]:
        """The current balance of each budget in ``holds`` (for reports).

        Example:
            >>> # [b.spent_usd for b in await store.budgets.balances(holds, now=datetime.now(UTC))]
        """
        del now  # balances are current: expired holds are swept by the next reservation
        async with self._db.transaction(write=False) as tx:
            return [self._balance(await tx.fetch(sql, *args)) for sql, args in map(self._balance_sql, holds)]

    async def release(self, request_id: str) -> None:
        """Drop the reservations of ``request_id`` (its usage will not be stored, e.g. a refused request).

        Example:
            >>> # await store.budgets.release("req_1")
        """
        async with self._db.transaction() as tx:
            await release_holds(tx, [request_id])


async def release_holds(tx: Tx, request_ids: Sequence[str]) -> None:
    """Delete the reservations of ``request_ids`` and take their amounts off ``budget_held`` (inside ``tx``)."""
    if not request_ids:
        return
    gone = await tx.fetch(
        "DELETE FROM budget_reservations WHERE request_id IN ("  # noqa: S608 (placeholders only)
        + ", ".join("?" for _ in request_ids)
        + ") RETURNING scope, owner_id, amount_usd",
        *request_ids,
    )
    delta: dict[tuple[str, str], float] = {}
    for row in gone:
        slot = (row["scope"], row["owner_id"])
        delta[slot] = delta.get(slot, 0.0) - float(row["amount_usd"])
    if delta:
        sql, args = held_sql(delta)
        await tx.fetch(sql, *args)


def held_sql(delta: dict[tuple[str, str], float]) -> Statement:
    """Add each amount to its budget's ``budget_held`` row (created at 0), in one lock order."""
    return (
        "INSERT INTO budget_held (scope, owner_id, held_usd) VALUES "  # noqa: S608 (placeholders only)
        + ", ".join("(?, ?, ?)" for _ in delta)
        + " ON CONFLICT (scope, owner_id) DO UPDATE SET held_usd = budget_held.held_usd + excluded.held_usd",
        [v for slot, amount in sorted(delta.items()) for v in (*slot, amount)],
    )
