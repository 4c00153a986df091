"""Attempts of one request: which deployment serves next, retries with backoff, fallback groups (docs/routing.md).

The route phase builds a :class:`Plan` (the group's deployments in strategy order) and takes its first target;
the forward phase sends attempts until one answers or the plan runs out. Per attempt:

- a deployment is taken only when its circuit admits it (closed, or a half-open probe), it has rpm/tpm room
  (a full one is skipped, not refused, while another has room), no ``Retry-After`` it sent this request is
  still running, and (from the second attempt) its retry budget allows a retry;
- a failed attempt (429, 5xx but 501, a refused or broken connection, a timeout, a stream that ends or errs
  before its first content) goes to the next deployment at once; a deployment tried again waits a jittered
  exponential backoff first; no attempt starts after the deadline;
- when the group's ``retries.attempts`` are spent, its ``fallbacks`` are tried in order; an answer saying the
  request exceeds the context window goes to ``context_window_fallbacks``, a content-policy refusal to
  ``content_policy_fallbacks`` (neither is retried on the same group).

Every attempt's outcome goes to the deployment's circuit (:class:`~ferrogate._core.Circuits`) exactly once,
also when the request is cancelled (:meth:`Plan.release`, called by the account phase).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from email.utils import parsedate_to_datetime
from time import perf_counter
from typing import TYPE_CHECKING

from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.pipeline.limit import check_deployment

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ferrogate._core import Circuits
    from ferrogate.limits import Limiter
    from ferrogate.pipeline.context import RequestContext
    from ferrogate.pipeline.router import Router
    from ferrogate.routing.plan import Group, Target
    from ferrogate.routing.rules import RequestFacts

#: What went wrong with an attempt: decides retry, fallback or answer.
RETRY, CONTEXT_WINDOW, CONTENT_POLICY, FINAL = "retry", "context_window", "content_policy", "final"
#: Faults of the gateway's own upstream call that are worth another attempt.
_RETRY_KINDS = frozenset({ErrorKind.UPSTREAM_UNREACHABLE, ErrorKind.UPSTREAM_TIMEOUT, ErrorKind.UPSTREAM_PROTOCOL})
#: Status passed to the circuit for faults without one: a refused or broken connection, a timeout.
FAULT_STATUS, TIMEOUT_STATUS = 0, 1
_NONE_TRIED: frozenset[int] = frozenset()
_NO_WAITS: dict[int, float] = {}  # never written: a plan that needs waits makes its own
_CONTEXT_MARKS = (b"context_length_exceeded", b"prompt is too long", b"maximum context length", b"context window")
_POLICY_MARKS = (b"content_policy_violation", b"content_filter", b"content management policy")


def classify(status: int, body: bytes) -> str:
    """What an upstream's error answer means for the plan.

    Example:
        >>> classify(503, b""), classify(400, b'{"error":{"code":"context_length_exceeded"}}'), classify(404, b"")
        ('retry', 'context_window', 'final')
    """
    if status == 429 or (status >= 500 and status != 501) or status == 408:
        return RETRY
    if status in (400, 413, 422):
        lowered = body[:4096].lower()
        if any(mark in lowered for mark in _CONTEXT_MARKS):
            return CONTEXT_WINDOW
        if any(mark in lowered for mark in _POLICY_MARKS):
            return CONTENT_POLICY
    return FINAL


def retry_after_s(headers: list[tuple[str, str]]) -> float:
    """The wait an error answer asks for, in seconds (``retry-after-ms``, else ``retry-after`` as seconds or an
    HTTP date); ``-1.0`` when it asks none.

    Example:
        >>> retry_after_s([("retry-after", "2")]), retry_after_s([("retry-after-ms", "150")]), retry_after_s([])
        (2.0, 0.15, -1.0)
    """
    found = -1.0
    for name, value in headers:
        name = name.lower()
        try:
            if name == "retry-after-ms":
                return max(0.0, float(value) / 1000.0)
            if name == "retry-after":
                found = max(0.0, float(value))
        except ValueError:
            try:
                found = max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError, IndexError):
                continue
    return found


class Plan:
    """The attempt state of one request (``ctx.plan``).

    ``current`` is the target of the attempt being made; ``attempts`` counts every attempt sent.
    """

    __slots__ = (
        "attempts",
        "current",
        "deadline",
        "facts",
        "failed",
        "group",
        "group_attempts",
        "last_refusal",
        "open",
        "pos",
        "probe",
        "queue",
        "router",
        "schema_retried",
        "started",
        "targets",
        "tried",
        "ttft_s",
        "waits",
    )

    def __init__(
        self, router: Router, group: Group, targets: list[Target], arrived: float, facts: RequestFacts | None = None
    ) -> None:
        self.router = router
        self.group = group
        self.targets = targets
        #: What the routing rules know of the request (``None``: no rules): a fallback group is ordered by them too.
        self.facts = facts
        self.queue: list[str] | None = None  # fallback groups still to try, in order (None: the group's, untouched)
        self.current: Target | None = None
        self.pos = 0  # the index in targets the next choice starts from
        self.attempts = 0
        self.group_attempts = 0
        # Most requests take one attempt: the three below are shared empty values until a retry writes them.
        self.tried: set[int] | frozenset[int] = _NONE_TRIED  # slots tried in this group (a second try backs off)
        self.waits: dict[int, float] = _NO_WAITS  # slot -> perf_counter time its Retry-After ends
        #: The failed attempts, ``(deployment key, status, outcome)`` each (status 0: no answer): the audit record.
        self.failed: list[tuple[str, int, str]] | tuple[()] = ()
        self.deadline = arrived + group.retries.deadline_s
        self.open = False  # an attempt was admitted and its outcome not yet given to the circuit
        self.probe = False
        self.started = 0.0
        self.ttft_s = -1.0
        self.last_refusal: GatewayError | None = None
        self.schema_retried = False  # the answer did not match its schema and was asked for again

    # -- choosing ---------------------------------------------------------------------------------------------

    def choose(self, ctx: RequestContext, limiter: Limiter, headers: list[tuple[str, str]]) -> Awaitable[None] | None:
        """Take the next target in order (sets ``current`` and the context's provider/model/group); ``None`` when
        done synchronously, else the awaitable to await (deployment limits in Redis, a Retry-After to wait).

        Raises:
            GatewayError: nothing can serve: the deployments' 429 when every one is full, 503
                ``no_healthy_deployment`` when every circuit is open.
        """
        circuits = self.router.circuits
        n = len(self.targets)
        policy = self.group.policy
        for step in range(n):
            target = self.targets[(self.pos + step) % n]
            slot = target.slot
            if slot in self.waits and self.waits[slot] > perf_counter():
                continue
            if self.attempts and not circuits.retry_allowed(slot, policy):
                continue
            if target.limits is not None:
                if limiter.sync_core is None:  # the deployment's buckets are in Redis
                    return self._choose_async(ctx, limiter, headers, step)
                if circuits.view(slot)[0] == 1:  # open: not worth the limit's tokens
                    continue
                ctx.group = target.group
                try:
                    check_deployment(ctx, limiter, target.limits, headers, self.router.default_max_tokens)
                except GatewayError as err:
                    if err.status != 429:
                        raise
                    self.last_refusal = err  # full: the next deployment may have room
                    continue
            verdict = circuits.admit(slot, policy)
            if verdict < 0:
                continue
            self._take(ctx, target, verdict, step)
            return None
        return self._exhausted(ctx, limiter, headers)

    async def _choose_async(
        self, ctx: RequestContext, limiter: Limiter, headers: list[tuple[str, str]], first: int
    ) -> None:
        """:meth:`choose` from step ``first`` on, awaiting deployment limits (a full deployment is skipped)."""
        circuits = self.router.circuits
        n = len(self.targets)
        policy = self.group.policy
        for step in range(first, n):
            target = self.targets[(self.pos + step) % n]
            slot = target.slot
            if step > first:
                if slot in self.waits and self.waits[slot] > perf_counter():
                    continue
                if self.attempts and not circuits.retry_allowed(slot, policy):
                    continue
            if circuits.view(slot)[0] == 1:  # open: not worth the limit's tokens
                continue
            if target.limits is not None:
                ctx.group = target.group
                try:
                    pending = check_deployment(ctx, limiter, target.limits, headers, self.router.default_max_tokens)
                    if pending is not None:
                        await pending
                except GatewayError as err:
                    if err.status != 429:
                        raise
                    self.last_refusal = err
                    continue
            verdict = circuits.admit(slot, policy)
            if verdict < 0:
                continue
            self._take(ctx, target, verdict, step)
            return
        exhausted = self._exhausted(ctx, limiter, headers)
        if exhausted is not None:
            await exhausted

    def _take(self, ctx: RequestContext, target: Target, verdict: int, step: int) -> None:
        self.pos = (self.pos + step + 1) % len(self.targets)
        self.current = target
        self.probe = verdict == 1
        self.open = True
        ctx.provider = target.provider
        ctx.upstream_model = target.model
        ctx.deployment_index = target.index
        ctx.group = target.group

    def _exhausted(
        self, ctx: RequestContext, limiter: Limiter, headers: list[tuple[str, str]]
    ) -> Awaitable[None] | None:
        """No target of this round could be taken: wait a Retry-After that fits the deadline, else give up."""
        now = perf_counter()
        pending = [until for until in self.waits.values() if until > now]
        if pending and min(pending) <= self.deadline:
            return self._wait_then_choose(ctx, limiter, headers, min(pending) - now)
        if self.last_refusal is not None:
            raise self.last_refusal
        circuits = self.router.circuits
        opens = [view[4] for view in (circuits.view(t.slot) for t in self.targets) if view[0] == 1 and view[4] > 0]
        wait = max(1, math.ceil(min(opens))) if opens else 1
        raise GatewayError(
            ErrorKind.NO_HEALTHY_DEPLOYMENT,
            f"No deployment of model '{ctx.model}' can take the request now: each is cooling down after repeated"
            f" failures or a provider's Retry-After; try again in {wait} s.",
            headers=[("retry-after", str(wait))],
        )

    async def _wait_then_choose(
        self, ctx: RequestContext, limiter: Limiter, headers: list[tuple[str, str]], wait_s: float
    ) -> None:
        await asyncio.sleep(wait_s)
        pending = self.choose(ctx, limiter, headers)
        if pending is not None:
            await pending

    # -- outcomes ---------------------------------------------------------------------------------------------

    def begin(self) -> None:
        """An attempt on ``current`` starts now."""
        self.attempts += 1
        self.group_attempts += 1
        self.started = perf_counter()
        self.ttft_s = -1.0

    def finish(self, ok: bool, status: int, retry_after: float = -1.0, ttft_s: float = -1.0) -> bool:
        """Give the current attempt's outcome to its circuit (once); True when it tripped the circuit open."""
        if not self.open:
            return False
        self.open = False
        target = self.current
        assert target is not None
        latency = perf_counter() - self.started
        circuits: Circuits = self.router.circuits
        tripped = circuits.done(
            target.slot, self.group.policy, ok, latency if ttft_s < 0 else -1.0, ttft_s, retry_after, self.probe, status
        )
        if retry_after > 0 and not ok and not tripped:
            # the provider asked for a pause: no worker of the instance sends it anything before then
            circuits.trip(target.slot, min(retry_after, self.group.retries.deadline_s))
            tripped = True
        if tripped and self.router.tripped is not None:
            self.router.tripped(target.key)  # the other instances open it too
        return tripped

    def again(self) -> None:
        """Send the next attempt to ``current`` again (an answer that did not match its schema, asked once more)."""
        target = self.current
        assert target is not None
        verdict = self.router.circuits.admit(target.slot, self.group.policy)
        self.open = verdict >= 0
        self.probe = verdict == 1

    def release(self) -> None:
        """Account phase: an attempt whose outcome was never given (the request was cancelled) counts as done."""
        if self.open:
            if self.started == 0.0:  # admitted but never sent (count_tokens answered by the gateway, a refusal)
                self.release_unstarted()
            else:
                self.finish(True, 499)

    def next_after(
        self,
        ctx: RequestContext,
        limiter: Limiter,
        headers: list[tuple[str, str]],
        meaning: str,
        retry_after: float,
    ) -> Awaitable[bool]:
        """After a failed attempt: choose where the next goes. Resolves True when there is one (``current`` set),
        False when the failure is the answer."""
        return self._next(ctx, limiter, headers, meaning, retry_after)

    async def _next(
        self, ctx: RequestContext, limiter: Limiter, headers: list[tuple[str, str]], meaning: str, retry_after: float
    ) -> bool:
        target = self.current
        assert target is not None
        if retry_after >= 0:
            if self.waits is _NO_WAITS:
                self.waits = {}
            self.waits[target.slot] = perf_counter() + retry_after
        self.tried = {*self.tried, target.slot}
        if self.queue is None:
            self.queue = list(self.group.fallbacks)
        if meaning == FINAL:
            return False
        if meaning in (CONTEXT_WINDOW, CONTENT_POLICY):
            fallbacks = self.group.cw_fallbacks if meaning == CONTEXT_WINDOW else self.group.cp_fallbacks
            if not fallbacks:
                return False
            self.queue = list(fallbacks)
            return await self._fallback(ctx, limiter, headers)
        in_group = self.group_attempts < self.group.retries.attempts and perf_counter() < self.deadline
        if in_group and await self._retry_in_group(ctx, limiter, headers):
            return True
        return await self._fallback(ctx, limiter, headers)

    async def _retry_in_group(self, ctx: RequestContext, limiter: Limiter, headers: list[tuple[str, str]]) -> bool:
        try:
            pending = self.choose(ctx, limiter, headers)
            if pending is not None:
                await pending
        except GatewayError:
            return False
        target = self.current
        assert target is not None
        if target.slot in self.tried:  # round two: the same deployment again waits a jittered backoff
            retries = self.group.retries
            rounds = self.group_attempts // max(1, len(self.targets))
            wait = random.uniform(0.0, min(retries.backoff_max_ms, retries.backoff_ms * (2**rounds)) / 1000.0)
            if perf_counter() + wait > self.deadline:
                self.release_unstarted()
                return False
            if wait > 0:
                await asyncio.sleep(wait)
        return True

    def release_unstarted(self) -> None:
        """A target was admitted but no attempt will be made on it: give its in-flight count back."""
        if self.open:
            self.open = False
            target = self.current
            assert target is not None
            self.router.circuits.done(target.slot, self.group.policy, True, -1.0, -1.0, -1.0, self.probe, 499)

    async def _fallback(self, ctx: RequestContext, limiter: Limiter, headers: list[tuple[str, str]]) -> bool:
        if self.queue is None:
            self.queue = list(self.group.fallbacks)
        while self.queue:
            name = self.queue.pop(0)
            try:
                group, targets = self.router.resolve(name, ctx.classification, ctx.stream, self.facts)
            except GatewayError:
                continue
            self.group, self.targets = group, targets
            self.queue.extend(g for g in group.fallbacks if g not in self.queue)
            self.group_attempts = 0
            self.tried = _NONE_TRIED
            self.pos = 0
            try:
                pending = self.choose(ctx, limiter, headers)
                if pending is not None:
                    await pending
            except GatewayError:
                continue
            return True
        return False

    def headers(self) -> list[tuple[str, str]]:
        """``x-ferrogate-attempts`` and ``x-ferrogate-deployment`` of the answer."""
        target = self.current
        found = [("x-ferrogate-attempts", str(self.attempts))]
        if target is not None:
            found.append(("x-ferrogate-deployment", target.key))
        return found


def begin(
    router: Router,
    ctx: RequestContext,
    limiter: Limiter,
    headers: list[tuple[str, str]],
    facts: RequestFacts | None = None,
) -> Awaitable[None] | None:
    """The route phase's work: the plan for ``ctx.model`` and its first target (see :meth:`Plan.choose`);
    with routing rules, ``facts`` are what they know of the request (they filter and re-order the targets)."""
    group, targets = router.resolve(ctx.model, ctx.classification, ctx.stream, facts)
    plan = ctx.plan = Plan(router, group, targets, ctx.started, facts)
    return plan.choose(ctx, limiter, headers)
