"""The limit phase: requests and tokens per minute, per key, user and team, before the upstream call;
and the same per deployment once route has picked one.

Runs after authorize. Requests cost 1 against ``rpm``; a request reserves its prompt tokens
(counted by the Rust core, once per request: ``ctx.prompt_tokens``) plus its
``max_completion_tokens``/``max_tokens`` (or ``default_max_tokens``) against ``tpm``, and the
account phase settles the reservation with the real usage (:func:`settle`). The limiter is the
Rust GCRA table shared by the instance's workers, or Redis across instances; both are exact.
A refusal is a 429 with ``Retry-After``, OpenAI's error shape and a code naming the limit
(``key_rpm_exceeded``, ``user_tpm_exceeded``, ``deployment_rpm_exceeded``...); every response of
a limited request carries OpenAI's ``x-ratelimit-*`` headers for the tightest limit of each kind.

The local table is called synchronously (``limiter.sync_core``): one call to the Rust table takes a
request's whole chain of buckets and returns the headers, with no coroutine and no
:class:`~ferrogate.limits.Decision`; the buckets of an identity are worked out once (:func:`_plan`).
Redis is awaited.

Example:
    >>> from ferrogate.auth.identity import Identity, Limits
    >>> me = Identity("key_1", "team_1", None, ("*",), None, None)
    >>> me.limits = Limits(10, 1000, None, None, 600, None)   # key rpm and tpm, team rpm
    >>> _plan(me)[2]
    (('k:key_1:rpm', 10, False), ('t:team_1:rpm', 600, False), ('k:key_1:tpm', 1000, True))
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ferrogate import _core
from ferrogate.errors import ErrorKind, GatewayError

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

    from ferrogate._core import RateLimiter
    from ferrogate.auth.identity import Identity
    from ferrogate.limits import Limiter
    from ferrogate.pipeline.context import RequestContext
    from ferrogate.pipeline.router import DeploymentLimits
    from ferrogate.pipeline.session import Session

PERIOD_S = 60.0

#: One bucket to take from: ``(code, bucket key, limit per minute, cost)``. ``code`` names the limit
#: (``"key_rpm"``, ``"deployment_tpm"``...): ``<code>_exceeded`` is the refusal's error code, and its
#: last three letters say the kind (``rpm``: requests, ``tpm``: tokens).
Check = tuple[str, str, int, float]


def worst_case(ctx: RequestContext, default_max_tokens: int) -> tuple[int, int]:
    """``(prompt tokens, most output tokens)`` of a request: the limit and budget phases reserve these.

    The prompt is counted by the core once per request (kept in ``ctx.prompt_tokens``); the output is the
    request's bound (``max_completion_tokens``/``max_tokens`` for each of the ``n`` choices on chat; or
    ``default_max_tokens``): :meth:`~ferrogate.protocols.request.Request.max_output`.
    """
    request = ctx.request
    prompt = ctx.prompt_tokens
    if prompt < 0:
        prompt = ctx.prompt_tokens = request.count_prompt(_core.encoding_for_model(ctx.model))
    return prompt, request.max_output(default_max_tokens)


def token_cost(ctx: RequestContext, default_max_tokens: int) -> float:
    """The tokens a request reserves (:func:`worst_case`, prompt + output); also recorded as
    ``ctx.tpm_reserved`` for :func:`settle`."""
    prompt, out = worst_case(ctx, default_max_tokens)
    cost = ctx.tpm_reserved = float(prompt + out)
    return cost


#: An identity's local buckets, built once per identity (:func:`_plan`): ``(limits, codes, buckets, tpm_keys)``,
#: with ``buckets`` as :meth:`ferrogate._core.RateLimiter.take_many` takes them and ``codes`` naming each.
Plan = tuple[object, tuple[str, ...], tuple[tuple[str, int, bool], ...], tuple[tuple[str, int], ...]]


def _plan(identity: Identity) -> Plan:
    """The buckets of ``identity``'s limits in check order: requests per minute (key, user, team), then
    tokens per minute (same order). Kept on the identity (``rate_plan``) for its next requests."""
    limits = identity.limits
    key_id, user_id, team_id = identity.key_id, identity.user_id, identity.team_id
    levels = (
        ("key", "k", key_id, True),
        ("user", "u", user_id, user_id is not None),
        ("team", "t", team_id, team_id is not None),
    )
    codes: list[str] = []
    buckets: list[tuple[str, int, bool]] = []
    for kind in ("rpm", "tpm"):
        for level, short, owner, applies in levels:
            lim = getattr(limits, f"{level}_{kind}")
            if applies and lim is not None:
                codes.append(f"{level}_{kind}")
                buckets.append((f"{short}:{owner}:{kind}", lim, kind == "tpm"))
    tpm_keys = tuple((key, lim) for key, lim, tokens in buckets if tokens)
    return limits, tuple(codes), tuple(buckets), tpm_keys


def limit(s: Session, ctx: RequestContext) -> Coroutine[Any, Any, None] | None:
    """Phase 4: take the request's cost from every limit on its chain (key, user, team), or refuse with 429.

    Requests per minute are checked first (key, user, team), then tokens per minute (same order).
    Appends the ``x-ratelimit-*`` headers to ``s.headers`` (they go on the response, errors
    included). Partial takes are given back when a later limit refuses. Sets ``ctx.tpm_keys``
    (the buckets :func:`settle` settles) when a tokens limit applies.

    Returns ``None`` when the phase is done (no limits, or the local table decided in one call),
    else a coroutine the chain awaits (Redis): the common paths create no coroutine at all.

    Raises:
        GatewayError: 429 ``<level>_rpm_exceeded``/``<level>_tpm_exceeded`` (with ``Retry-After``
            unless the request can never fit).
    """
    identity = ctx.identity
    limits = identity.limits
    if not limits.any:
        return None
    plan = identity.rate_plan
    if plan is None or plan[0] is not limits:
        plan = identity.rate_plan = _plan(identity)
    _, codes, buckets, tpm_keys = plan
    deps = s.chain.deps
    headers = s.headers
    cost = token_cost(ctx, deps.default_max_tokens) if tpm_keys else 0.0
    limiter = deps.limiter
    core = limiter.sync_core
    if core is None:
        pairs = zip(codes, buckets, strict=True)
        checks = [(code, key, lim, cost if tokens else 1.0) for code, (key, lim, tokens) in pairs]
        return _limit_async(ctx, limiter, checks, tpm_keys, headers)
    refused, retry_after_s, found = core.take_many(buckets, PERIOD_S, cost)
    headers += found
    if refused >= 0:
        _, lim, tokens = buckets[refused]
        raise refusal(codes[refused], lim, cost if tokens else 1.0, retry_after_s, None)
    if tpm_keys:
        ctx.tpm_keys = tpm_keys
    return None


async def _limit_async(
    ctx: RequestContext,
    limiter: Limiter,
    checks: list[Check],
    tpm_keys: tuple[tuple[str, int], ...],
    headers: list[tuple[str, str]],
) -> None:
    await take_async(limiter, checks, headers, None)
    if tpm_keys:
        ctx.tpm_keys = tpm_keys


def take(core: RateLimiter, checks: list[Check], headers: list[tuple[str, str]], subject: str | None) -> None:
    """Take every check from the local table, all or none; add the ``x-ratelimit-*`` headers.

    ``subject`` names what a deployment refusal is about (``None``: the key, user or team of the
    code); with a subject, the headers replace those already in ``headers`` only for a tighter
    bucket. Raises the 429 :class:`GatewayError` of the first check that does not fit, after
    giving back what the earlier ones took.
    """
    tokens_cost = 1.0
    buckets = []
    for code, key, lim, cost in checks:
        tokens = code[-3] == "t"  # "..._tpm"
        if tokens:
            tokens_cost = cost
        buckets.append((key, lim, tokens))
    refused, retry_after_s, found = core.take_many(buckets, PERIOD_S, tokens_cost)
    _add(headers, found, subject is not None)
    if refused >= 0:
        code, _, lim, cost = checks[refused]
        raise refusal(code, lim, cost, retry_after_s, subject)


async def take_async(
    limiter: Limiter, checks: list[Check], headers: list[tuple[str, str]], subject: str | None
) -> None:
    """:func:`take` through the async interface (Redis): one awaited decision per check."""
    taken: list[tuple[float, float, float, bool]] = []
    for code, key, lim, cost in checks:
        d = await limiter.check(key, lim, PERIOD_S, cost)
        taken.append((lim, d.remaining, d.reset_s, code[-3] == "t"))
        if not d.allowed:
            for done in checks[: len(taken) - 1]:
                await limiter.refund(done[1], done[2], PERIOD_S, done[3])
            _add(headers, _core.rate_headers(taken), subject is not None)
            raise refusal(code, lim, cost, d.retry_after_s, subject)
    _add(headers, _core.rate_headers(taken), subject is not None)


def refusal(code: str, lim: int, cost: float, retry_after_s: float, subject: str | None) -> GatewayError:
    """The 429 for limit ``code`` (e.g. ``"user_tpm"``) refusing ``cost``; ``subject`` as in :func:`take`."""
    tokens = code.endswith("tpm")
    per = "tokens" if tokens else "requests"
    kind = ErrorKind.RATE_LIMITED_TOKENS if tokens else ErrorKind.RATE_LIMITED_REQUESTS
    head = f"Rate limit reached for {subject or 'this ' + code[:-4]}: {lim} {per} per minute"
    error_code = f"{code}_exceeded"
    if math.isinf(retry_after_s):  # more than the whole limit: waiting will not help
        message = f"{head}, and this request alone needs {cost:g}: lower max_tokens or the prompt."
        return GatewayError(kind, message, code=error_code)
    wait = max(retry_after_s, 0.001)
    message = f"{head} (this request needs {cost:g}). Try again in {_core.reset_duration(wait)}."
    return GatewayError(kind, message, code=error_code, headers=[("retry-after", str(max(1, math.ceil(wait))))])


def _add(headers: list[tuple[str, str]], found: list[tuple[str, str]], merge: bool) -> None:
    """Append ``found`` (limit, remaining and reset of one kind, or of both) to ``headers``.

    With ``merge`` (route checking a deployment after the limit phase), a kind already in ``headers``
    is replaced only by a tighter bucket (fewer remaining).

    Example:
        >>> headers = [("x-ratelimit-limit-requests", "10"), ("x-ratelimit-remaining-requests", "4"),
        ...            ("x-ratelimit-reset-requests", "6s")]
        >>> _add(headers, _core.rate_headers([(100, 99, 0.6, False), (50, 1, 1.0, True)]), True)
        >>> [value for _, value in headers]
        ['10', '4', '6s', '50', '1', '1s']
    """
    if not merge:
        headers += found
        return
    for at in range(0, len(found), 3):
        name, remaining = found[at + 1]
        for i, (header, value) in enumerate(headers):
            if header == name:
                if int(value) <= int(remaining):
                    break
                del headers[i - 1 : i + 2]  # limit, remaining, reset: always added together
                headers += found[at : at + 3]
                break
        else:
            headers += found[at : at + 3]


def check_deployment(
    ctx: RequestContext,
    limiter: Limiter,
    limits: DeploymentLimits,
    headers: list[tuple[str, str]],
    default_max_tokens: int,
) -> Coroutine[Any, Any, None] | None:
    """Route phase, for a deployment with limits: take its rpm/tpm buckets or refuse with 429.

    The tokens cost is the limit phase's estimate (prompt + maximum output; the prompt is counted
    once per request). The tpm bucket joins ``ctx.tpm_keys`` (settled with the others); the
    ``x-ratelimit-*`` headers show the deployment's bucket when it is tighter than the caller's.
    Returns ``None`` when done (the local table decides synchronously), else the coroutine the
    chain awaits (Redis).

    Raises:
        GatewayError: 429 ``deployment_rpm_exceeded``/``deployment_tpm_exceeded``.
    """
    checks: list[Check] = []
    if limits.rpm is not None:
        checks.append(("deployment_rpm", limits.rpm_key, limits.rpm, 1.0))
    if limits.tpm is not None:
        checks.append(("deployment_tpm", limits.tpm_key, limits.tpm, token_cost(ctx, default_max_tokens)))
    core = limiter.sync_core
    if core is None:
        return _check_deployment_async(ctx, limiter, limits, checks, headers)
    take(core, checks, headers, limits.subject)
    if limits.tpm is not None:
        ctx.tpm_keys = (*ctx.tpm_keys, (limits.tpm_key, limits.tpm))
    return None


async def _check_deployment_async(
    ctx: RequestContext,
    limiter: Limiter,
    limits: DeploymentLimits,
    checks: list[Check],
    headers: list[tuple[str, str]],
) -> None:
    await take_async(limiter, checks, headers, limits.subject)
    if limits.tpm is not None:
        ctx.tpm_keys = (*ctx.tpm_keys, (limits.tpm_key, limits.tpm))


def settle(ctx: RequestContext, limiter: Limiter) -> Coroutine[Any, Any, None] | None:
    """Account phase: replace the token reservation with the tokens really used.

    Unused reserved tokens are given back; tokens beyond the reservation (a stream that ran past
    its estimate: another tokenizer upstream, no ``max_tokens``...) are charged even when the
    window has no room left, so the bucket goes into (bounded) debt and later requests wait.
    Returns ``None`` when done (the local table settles synchronously), else the coroutine to await
    (Redis).
    """
    keys = ctx.tpm_keys
    if not keys:
        return None
    usage = ctx.usage
    used = 0.0 if usage is None else float(usage.prompt_tokens + usage.completion_tokens)
    delta = ctx.tpm_reserved - used
    if delta == 0:
        return None
    core = limiter.sync_core
    if core is None:
        return _settle_async(limiter, keys, delta)
    op = core.refund if delta > 0 else core.charge
    amount = abs(delta)
    for key, lim in keys:
        op(key, lim, PERIOD_S, amount)
    return None


async def _settle_async(limiter: Limiter, keys: tuple[tuple[str, int], ...], delta: float) -> None:
    if delta > 0:
        for key, lim in keys:
            await limiter.refund(key, lim, PERIOD_S, delta)
    else:
        for key, lim in keys:
            await limiter.charge(key, lim, PERIOD_S, -delta)
