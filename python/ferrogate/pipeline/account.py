"""The account phase: always runs, last, whatever happened (the error is in ``ctx.error``).

Settles the tokens-per-minute reservation with the real usage, prices the request, and hands
one usage record to the metering recorder (a deque append: the batched, spooled store write
happens off the hot path). Audit events and metrics join here with their issues.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from time import perf_counter

from ferrogate.limits import Limiter
from ferrogate.metering import PriceTable, UsageRecord, UsageRecorder
from ferrogate.pipeline.context import RequestContext
from ferrogate.pipeline.limit import settle

log = logging.getLogger("ferrogate.request")


async def account(ctx: RequestContext, limiter: Limiter, recorder: UsageRecorder | None, prices: PriceTable) -> None:
    """Phase, always run: settle limits, meter usage and cost, log at debug level.

    Requests refused before authentication are not metered (they belong to no key); with metering off
    (``recorder`` is ``None``) nothing is recorded. The usage record also releases the request's budget
    hold when it is stored (the real cost replaces the worst case).
    """
    if ctx.tpm_keys:
        try:
            await settle(ctx, limiter)
        except Exception:
            log.exception("request %s: settling the token reservation failed", ctx.request_id)
    identity = ctx.identity
    if identity is None or recorder is None:
        return
    usage = ctx.usage
    upstream_model = ctx.upstream_model or None
    provider = ctx.provider
    if usage is None:
        prompt = completion = cached = reasoning = 0
        counted = False
    else:
        prompt, completion = usage.prompt_tokens, usage.completion_tokens
        cached, reasoning, counted = usage.cached_tokens, usage.reasoning_tokens, usage.counted
    cost = prices.cost(upstream_model or ctx.model, prompt, completion, cached)
    recorder.record(
        UsageRecord(
            request_id=ctx.request_id,
            created_at=datetime.now(UTC),
            model=ctx.model,
            status=ctx.status,
            stream=ctx.stream,
            key_id=identity.key_id,
            team_id=identity.team_id,
            user_id=identity.user_id,
            upstream=provider.name if provider is not None else None,
            upstream_model=upstream_model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            reasoning_tokens=reasoning,
            counted=counted,
            cost_usd=cost,
            latency_ms=(perf_counter() - ctx.started) * 1000.0,
        )
    )
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "request %s model=%s status=%s prompt=%s completion=%s cost=%s error=%r",
            ctx.request_id,
            ctx.model,
            ctx.status,
            prompt,
            completion,
            cost,
            ctx.error,
        )
