"""The account phase: always runs, last, whatever happened (the error is in ``ctx.error``).

Settles the tokens-per-minute reservation with the real usage; the request's usage record and audit
facts were already queued by :class:`Books` just before the answer's last byte (a journal write and a
deque append each: the batched store write happens off the hot path); then one line to the request log
(a buffer append) and its numbers to the worker's metrics (plain counters, flushed to prometheus-client
every second).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, cast

from ferrogate.audit.events import facts_of
from ferrogate.audit.writer import AuditWriter
from ferrogate.auth.identity import Identity
from ferrogate.journal.requests import RequestJournal
from ferrogate.limits import Limiter
from ferrogate.metering import PriceTable, UsageRecorder
from ferrogate.observability.logs import RequestLog
from ferrogate.observability.metrics import Metrics
from ferrogate.pipeline.context import RequestContext
from ferrogate.pipeline.limit import settle
from ferrogate.store.audit import GuardedFacts
from ferrogate.store.usage import usage_of

log = logging.getLogger("ferrogate.request")


class Books:
    """Queues a request's usage record and audit facts: they are in this worker's journal when the call
    returns (a copy into a memory-mapped file; :mod:`ferrogate.journal`), so a request answered is a request
    recorded, even if the process is killed right after. The chain calls it just before the last byte of the
    answer goes out (the whole JSON body, the last frame of a stream, the error), and :func:`account` calls it
    for a request that ended without one (the client went away); it runs once per request.

    Args:
        recorder: the usage recorder (``None``: metering off).
        audit: the audit writer (``None``: data-plane requests are not audited).
        prices: prices the request.
        journal: the worker's request journal that both writers consume (``None``: each writer journals
            its own items, or, with ``server.journal: false``, only when the store fails).
        action: the audit records' action, naming the ingress (``chat.completions``, ``messages``,
            ``responses``, ``embeddings``).
    """

    __slots__ = ("action", "audit", "journal", "prices", "recorder")

    def __init__(
        self,
        recorder: UsageRecorder | None,
        audit: AuditWriter | None,
        prices: PriceTable,
        journal: RequestJournal | None = None,
        action: str = "chat.completions",
    ) -> None:
        self.recorder = recorder
        self.audit = audit
        self.prices = prices
        self.journal = journal  # the request's facts are written there once, for both writers
        self.action = action  # the audit record's action: the ingress (chat.completions, messages...)

    def __call__(self, ctx: RequestContext) -> None:
        """Record ``ctx`` (once); sets ``ctx.cost`` (``None``: unpriced, or nothing recorded)."""
        if ctx.booked:
            return
        ctx.booked = True
        identity = ctx.identity
        # like metering, the audit trail records requests of a key: one of no key is logged, not audited
        if identity is not None and (self.recorder is not None or self.audit is not None):
            latency_ms = (perf_counter() - ctx.started) * 1000.0
            try:
                ctx.cost = _record(ctx, identity, self, latency_ms)
            except Exception:  # never let the books turn an answered request into an error
                log.exception("request %s: its usage and audit records could not be queued", ctx.request_id)


async def account(
    ctx: RequestContext,
    limiter: Limiter,
    books: Books,
    request_log: RequestLog | None = None,
    metrics: Metrics | None = None,
    route: str = "/v1/chat/completions",
) -> None:
    """Phase, always run: settle limits, record usage and cost (if :class:`Books` has not yet), write the
    request's log line, count its metrics.

    Requests refused before authentication are not metered (they belong to no key) but are logged; with
    metering off (no recorder) nothing is recorded. The usage record also releases the request's budget hold
    when it is stored (the real cost replaces the worst case).
    """
    books(ctx)
    if ctx.plan is not None:
        ctx.plan.release()  # an attempt cancelled before its outcome was known still leaves the circuit's count
    if ctx.tpm_keys:
        try:
            if (pending := settle(ctx, limiter)) is not None:  # the local table settles synchronously
                await pending
        except Exception:
            log.exception("request %s: settling the token reservation failed", ctx.request_id)
    latency_ms = (perf_counter() - ctx.started) * 1000.0
    cost = ctx.cost
    if request_log is not None and request_log.enabled:
        request_log.log(ctx, latency_ms, cost)
    if metrics is not None:
        metrics.observe(ctx, cost, route)


def _record(ctx: RequestContext, identity: Identity, books: Books, latency_ms: float) -> float | None:
    """Journal the request's facts once (when a request journal is set), then queue its usage record and its
    audit facts (either may be off), read once for all; its cost (``None``: the model has no price)."""
    recorder, audit, journal = books.recorder, books.audit, books.journal
    now = datetime.now(UTC)  # one clock read for the usage and the audit record
    upstream_model = ctx.upstream_model or None
    provider = ctx.provider
    upstream = provider.name if provider is not None else None
    usage = ctx.usage
    if usage is None:
        prompt = completion = cached = reasoning = 0
        counted = False
    else:
        prompt, completion = usage.prompt_tokens, usage.completion_tokens
        cached, reasoning, counted = usage.cached_tokens, usage.reasoning_tokens, usage.counted
    cost = books.prices.cost(upstream_model or ctx.model, prompt, completion, cached)
    journaled = False
    tokens = (prompt, completion, cached, reasoning, counted)
    facts = facts_of(ctx, now, identity, upstream, upstream_model, tokens, cost, latency_ms, books.action)
    plan = ctx.plan
    if plan is not None and plan.failed:  # rare: the failed attempts join the facts (and the journal line)
        facts = GuardedFacts(cast(Any, (*facts, ctx.guard_findings, tuple(plan.failed))))
    elif ctx.guard_findings:  # rare: the findings join the facts, so the journal line holds them too
        facts = GuardedFacts(cast(Any, (*facts, ctx.guard_findings)))
    if journal is not None:
        try:
            journal.write(facts)  # one line for both writers: from here on a kill loses nothing
            journaled = True
        except (OSError, ValueError) as exc:  # disk full: each writer keeps the item its own way
            log.error("request %s: the request journal cannot be written: %s", ctx.request_id, exc)
    if recorder is not None:
        # no budget on the chain: the budget phase took no hold for the insert to release
        recorder.take(usage_of(facts, hold=bool(identity.budgets)), journaled)
    if audit is not None:
        audit.take(facts, journaled)
    return cost
