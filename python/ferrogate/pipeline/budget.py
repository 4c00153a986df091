"""The budget phase: hold the request's worst-case cost on every budget of its chain, or refuse it.

Runs after ``route`` (the price depends on the deployment that serves) and only when the key, its user or
its team has a budget. Worst case = the prompt tokens (counted by the Rust core, once per request) plus
``max_completion_tokens``/``max_tokens`` (or ``default_max_tokens``) for each of the ``n`` choices, at the
deployment's prices (:func:`~ferrogate.pipeline.limit.worst_case`, shared with the limit phase). A model
without a price cannot be held against a budget: such requests pass and are recorded with no cost (the
start-up warning lists unpriced models). The hold is released by the usage record's insert, which adds the
real cost instead (see :mod:`ferrogate.store.budgets`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ferrogate.pipeline.limit import worst_case

if TYPE_CHECKING:
    from ferrogate.budgets.ledger import BudgetLedger
    from ferrogate.metering import PriceTable
    from ferrogate.pipeline.context import RequestContext

log = logging.getLogger("ferrogate.budgets")
_unpriced_warned: set[str] = set()


async def budget(ctx: RequestContext, ledger: BudgetLedger, prices: PriceTable, default_max_tokens: int) -> None:
    """Phase: reserve the worst-case cost (429 ``insufficient_quota`` when a budget cannot cover it)."""
    prompt, out = worst_case(ctx, default_max_tokens)
    model = ctx.upstream_model or ctx.model
    worst = prices.cost(model, prompt, out)
    if worst is None:
        if model not in _unpriced_warned and len(_unpriced_warned) < 1000:
            _unpriced_warned.add(model)
            log.warning("model %r has no price: its requests are not held against budgets", model)
        return
    await ledger.reserve(ctx.request_id, ctx.identity.budgets, worst)
