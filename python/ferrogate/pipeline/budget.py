"""The budget phase: hold the request's worst-case cost on every budget of its chain, or refuse it.

Runs after ``route`` (the price depends on the deployment that serves) and only when the key, its user or
its team has a budget. Worst case = the prompt tokens (counted by the Rust core, once per request) plus
``max_completion_tokens``/``max_tokens`` (or ``default_max_tokens``) for each of the ``n`` choices, at the
deployment's prices (:func:`~ferrogate.pipeline.limit.worst_case`, shared with the limit phase). A model
without a price cannot be held against a budget, so it must not be a way around one: such a request is
refused with 403 ``model_not_priced`` naming the model (``budgets.unpriced: refuse``, the default), or, with
``budgets.unpriced: allow``, passes unheld and is recorded with no cost (the start-up warning lists unpriced
models either way). The hold is released by the usage record's insert, which adds the real cost instead
(see :mod:`ferrogate.store.budgets`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.pipeline.limit import worst_case

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ferrogate.budgets.ledger import BudgetLedger
    from ferrogate.metering import PriceTable
    from ferrogate.pipeline.context import RequestContext
    from ferrogate.pipeline.session import Session

log = logging.getLogger("ferrogate.budgets")
_unpriced_warned: set[str] = set()


def budget(s: Session, ctx: RequestContext) -> Awaitable[None] | None:
    """Phase 7: reserve the worst-case cost (429 ``insufficient_quota`` when a budget cannot cover it; 403
    ``model_not_priced`` when the model has no price and ``budgets.unpriced`` is ``refuse``). Nothing to do
    (``None``) when no budget is on the key's chain, or metering is off (no spend to hold against)."""
    deps = s.chain.deps
    if not ctx.identity.budgets or deps.recorder is None:
        return None
    return _reserve(ctx, deps.ledger, deps.prices, deps.default_max_tokens)


async def _reserve(ctx: RequestContext, ledger: BudgetLedger, prices: PriceTable, default_max_tokens: int) -> None:
    prompt, out = worst_case(ctx, default_max_tokens)
    model = ctx.upstream_model or ctx.model
    worst = prices.cost(model, prompt, out)
    if worst is None:
        if ledger.settings.unpriced == "refuse":
            raise GatewayError(ErrorKind.MODEL_UNPRICED, _unpriced_message(ctx, model), param="model")
        if model not in _unpriced_warned and len(_unpriced_warned) < 1000:
            _unpriced_warned.add(model)
            log.warning("model %r has no price: its requests are not held against budgets (unpriced: allow)", model)
        return
    await ledger.reserve(ctx.request_id, ctx.identity.budgets, worst)


def _unpriced_message(ctx: RequestContext, model: str) -> str:
    scopes = list(dict.fromkeys(ref.scope for ref in ctx.identity.budgets))
    held = f"the {scopes[0]} budget" if len(scopes) == 1 else f"the {', '.join(scopes[:-1])} and {scopes[-1]} budgets"
    served = f"{ctx.model!r}" if model == ctx.model else f"{ctx.model!r} (served as {model!r})"
    return (
        f"Model {served} has no price, so this request cannot be held against {held} and is "
        "refused; an administrator can price the model (server.prices_file, or price: on the deployment) or "
        "set budgets.unpriced: allow."
    )
