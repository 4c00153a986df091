"""``GET /v1/usage`` and ``GET /v1/teams/me/usage``: what the calling key's team has used.

Totals and per-model sums over ``from``..``to`` (ISO-8601 query parameters; default: the
team's current budget period, or everything), and the team's budget with what is left of it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ferrogate.auth.identity import Identity
from ferrogate.budgets.ledger import EVER, BudgetLedger, period_start
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.store import Store
from ferrogate.store.errors import NotFound
from ferrogate.store.usage import UsageRow

_MAX_MODELS = 1000


def _when(params: dict[str, str], name: str) -> datetime | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
        value = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except ValueError:
        raise GatewayError(ErrorKind.INVALID_FIELD, f"'{name}' must be an ISO-8601 time", param=name) from None
    except OverflowError:  # 9999-12-31T23:59:59-23:59 has no UTC form
        message = f"'{name}' is outside the years 1 to 9999 in UTC"
        raise GatewayError(ErrorKind.INVALID_FIELD, message, param=name) from None
    return value


def _row(row: UsageRow) -> dict[str, Any]:
    return {
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cached_tokens": row.cached_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "cost_usd": row.cost_usd,
        "unpriced_requests": row.unpriced_requests,
    }


async def usage_report(store: Store, ledger: BudgetLedger, identity: Identity, query: str) -> bytes:
    """The usage document for ``identity``'s team (its key alone when it has no team).

    ``budget`` is the team's budget (kept for clients of the first version); ``budgets`` lists every budget on
    the calling key's chain (key, user, team) with what its period has spent, what requests in flight hold
    and what is left, from the budget ledger.
    """
    params = dict(parse_qsl(query))
    now = datetime.now(UTC)
    team = None
    if identity.team_id is not None:
        try:
            team = await store.teams.get(identity.team_id)
        except NotFound:
            team = None
    start = period_start(team.budget_period if team else None, now)
    since = _when(params, "from") or start
    until = _when(params, "to")
    scope: dict[str, Any] = {"team_id": identity.team_id} if identity.team_id else {"key_id": identity.key_id}
    total = (await store.usage.summary(**scope, since=since, until=until)).items[0]
    by_model = (await store.usage.summary(**scope, since=since, until=until, group_by="model", limit=_MAX_MODELS)).items
    budgets = []
    for ref, (hold, bal) in zip(identity.budgets, await ledger.balances(identity.budgets), strict=True):
        budgets.append(
            {
                "scope": ref.scope,
                "owner_id": ref.owner_id,
                "amount_usd": ref.limit_usd,
                "period": ref.period,
                "period_start": None if hold.since_day == EVER else f"{hold.since_day}T00:00:00+00:00",
                "spent_usd": bal.spent_usd,
                "reserved_usd": bal.reserved_usd,
                "remaining_usd": max(0.0, ref.limit_usd - bal.spent_usd - bal.reserved_usd),
            }
        )
    budget = next((b for b in budgets if b["scope"] == "team"), None)
    return orjson.dumps(
        {
            "object": "usage",
            "team_id": identity.team_id,
            "key_id": identity.key_id if identity.team_id is None else None,
            "from": since.isoformat() if since else None,
            "to": until.isoformat() if until else None,
            "total": _row(total),
            "by_model": [{"model": r.group, **_row(r)} for r in by_model],
            "budget": budget,
            "budgets": budgets,
        }
    )
