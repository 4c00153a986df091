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

The local table is called synchronously (``limiter.sync_core``): a check is a bare tuple from
Rust, with no coroutine and no :class:`~ferrogate.limits.Decision`. Redis is awaited.

Example:
    >>> _duration(0.0004), _duration(1.2), _duration(360.0)
    ('1ms', '2s', '6m0s')
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
    from ferrogate.limits import Limiter
    from ferrogate.pipeline.context import RequestContext
    from ferrogate.pipeline.router import DeploymentLimits

PERIOD_S = 60.0

#: One bucket to take from: ``(code, bucket key, limit per minute, cost)``. ``code`` names the limit
#: (``"key_rpm"``, ``"deployment_tpm"``...): ``<code>_exceeded`` is the refusal's error code, and its
#: last three letters say the kind (``rpm``: requests, ``tpm``: tokens).
Check = tuple[str, str, int, float]

#: The result of one admitted check, for the headers: ``(code, limit, remaining, reset_s)``.
_Taken = tuple[str, int, float, float]


def _duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        ms = math.ceil(seconds * 1000)
        return f"{ms}ms" if ms > 1 else "1ms"
    whole = math.ceil(seconds)
    return f"{whole}s" if whole < 60 else f"{whole // 60}m{whole % 60}s"


def worst_case(ctx: RequestContext, default_max_tokens: int) -> tuple[int, int]:
    """``(prompt tokens, most output tokens)`` of a request: the limit and budget phases reserve these.

    The prompt is counted by the core once per request (kept in ``ctx.prompt_tokens``); the output is
    ``max_completion_tokens``/``max_tokens`` (or ``default_max_tokens``) for each of the ``n`` choices.
    """
    prompt = ctx.prompt_tokens
    if prompt < 0:
        prompt = ctx.prompt_tokens = _core.count_chat_prompt(ctx.body, _core.encoding_for_model(ctx.model))
    payload = ctx.payload
    out = payload.get("max_completion_tokens") or payload.get("max_tokens") or default_max_tokens
    return prompt, int(out) * int(payload.get("n") or 1)


def token_cost(ctx: RequestContext, default_max_tokens: int) -> float:
    """The tokens a request reserves (:func:`worst_case`, prompt + output); also recorded as
    ``ctx.tpm_reserved`` for :func:`settle`."""
    prompt, out = worst_case(ctx, default_max_tokens)
    cost = ctx.tpm_reserved = float(prompt + out)
    return cost


def limit(
    ctx: RequestContext, limiter: Limiter, headers: list[tuple[str, str]], default_max_tokens: int
) -> Coroutine[Any, Any, None] | None:
    """Phase: take the request's cost from every limit on its chain (key, user, team), or refuse with 429.

    Requests per minute are checked first (key, user, team), then tokens per minute (same order).
    Appends the ``x-ratelimit-*`` headers to ``headers`` (they go on the response, errors
    included). Partial takes are given back when a later limit refuses. Sets ``ctx.tpm_keys``
    (the buckets :func:`settle` settles) when a tokens limit applies.

    Returns ``None`` when the phase is done (no limits, or the local table decided synchronously),
    else a coroutine the chain awaits (Redis): the common paths create no coroutine at all.

    Raises:
        GatewayError: 429 ``<level>_rpm_exceeded``/``<level>_tpm_exceeded`` (with ``Retry-After``
            unless the request can never fit).
    """
    identity = ctx.identity
    limits = identity.limits
    if not limits.any:
        return None
    key_id, user_id, team_id = identity.key_id, identity.user_id, identity.team_id
    checks: list[Check] = []
    if limits.key_rpm is not None:
        checks.append(("key_rpm", f"k:{key_id}:rpm", limits.key_rpm, 1.0))
    if user_id is not None and limits.user_rpm is not None:
        checks.append(("user_rpm", f"u:{user_id}:rpm", limits.user_rpm, 1.0))
    if team_id is not None and limits.team_rpm is not None:
        checks.append(("team_rpm", f"t:{team_id}:rpm", limits.team_rpm, 1.0))
    key_tpm = limits.key_tpm
    user_tpm = limits.user_tpm if user_id is not None else None
    team_tpm = limits.team_tpm if team_id is not None else None
    tpm_keys: list[tuple[str, int]] = []
    if key_tpm is not None or user_tpm is not None or team_tpm is not None:
        cost = token_cost(ctx, default_max_tokens)
        if key_tpm is not None:
            bucket = f"k:{key_id}:tpm"
            checks.append(("key_tpm", bucket, key_tpm, cost))
            tpm_keys.append((bucket, key_tpm))
        if user_tpm is not None:
            bucket = f"u:{user_id}:tpm"
            checks.append(("user_tpm", bucket, user_tpm, cost))
            tpm_keys.append((bucket, user_tpm))
        if team_tpm is not None:
            bucket = f"t:{team_id}:tpm"
            checks.append(("team_tpm", bucket, team_tpm, cost))
            tpm_keys.append((bucket, team_tpm))
    core = limiter.sync_core
    if core is None:
        return _limit_async(ctx, limiter, checks, tpm_keys, headers)
    take(core, checks, headers, None)
    if tpm_keys:
        ctx.tpm_keys = tpm_keys
    return None


async def _limit_async(
    ctx: RequestContext,
    limiter: Limiter,
    checks: list[Check],
    tpm_keys: list[tuple[str, int]],
    headers: list[tuple[str, str]],
) -> None:
    await take_async(limiter, checks, headers, None)
    if tpm_keys:
        ctx.tpm_keys = tpm_keys


def take(core: RateLimiter, checks: list[Check], headers: list[tuple[str, str]], subject: str | None) -> None:
    """Take every check from the local table, all or none; append the ``x-ratelimit-*`` headers.

    ``subject`` names what a deployment refusal is about (``None``: the key, user or team of the
    code). Raises the 429 :class:`GatewayError` of the first check that does not fit, after
    giving back what the earlier ones took.
    """
    check = core.check
    taken: list[_Taken] = []
    for code, key, lim, cost in checks:
        allowed, remaining, retry_after_s, reset_s = check(key, lim, PERIOD_S, cost)
        if not allowed:
            refund = core.refund
            for done in checks[: len(taken)]:
                refund(done[1], done[2], PERIOD_S, done[3])
            taken.append((code, lim, remaining, reset_s))
            add_rate_headers(headers, taken, subject is not None)
            raise refusal(code, lim, cost, retry_after_s, subject)
        taken.append((code, lim, remaining, reset_s))
    add_rate_headers(headers, taken, subject is not None)


async def take_async(
    limiter: Limiter, checks: list[Check], headers: list[tuple[str, str]], subject: str | None
) -> None:
    """:func:`take` through the async interface (Redis): one awaited decision per check."""
    taken: list[_Taken] = []
    for code, key, lim, cost in checks:
        d = await limiter.check(key, lim, PERIOD_S, cost)
        taken.append((code, lim, d.remaining, d.reset_s))
        if not d.allowed:
            for done in checks[: len(taken) - 1]:
                await limiter.refund(done[1], done[2], PERIOD_S, done[3])
            add_rate_headers(headers, taken, subject is not None)
            raise refusal(code, lim, cost, d.retry_after_s, subject)
    add_rate_headers(headers, taken, subject is not None)


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
    message = f"{head} (this request needs {cost:g}). Try again in {_duration(wait)}."
    return GatewayError(kind, message, code=error_code, headers=[("retry-after", str(max(1, math.ceil(wait))))])


_REQUESTS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
_TOKENS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")


def add_rate_headers(headers: list[tuple[str, str]], taken: list[_Taken], merge: bool = False) -> None:
    """Append OpenAI's six headers for the tightest limit of each kind (fewest remaining; the first on ties).

    With ``merge`` (route checking a deployment after the limit phase), a kind already in ``headers``
    is replaced only by a tighter bucket.
    """
    requests: _Taken | None = None
    tokens: _Taken | None = None
    for item in taken:
        if item[0][-3] == "r":  # "..._rpm"
            if requests is None or item[2] < requests[2]:
                requests = item
        elif tokens is None or item[2] < tokens[2]:
            tokens = item
    if requests is not None:
        _put(headers, _REQUESTS, requests, merge)
    if tokens is not None:
        _put(headers, _TOKENS, tokens, merge)


def _put(headers: list[tuple[str, str]], names: tuple[str, str, str], best: _Taken, merge: bool) -> None:
    remaining = int(best[2])  # >= 0: int() floors
    if merge:
        for i, (header, value) in enumerate(headers):
            if header == names[1]:
                if int(value) <= remaining:
                    return
                del headers[i - 1 : i + 2]  # limit, remaining, reset: always appended together
                break
    reset_s = best[3]
    headers += (
        (names[0], str(best[1])),
        (names[1], str(remaining)),
        (names[2], _duration(reset_s if reset_s < 86_400.0 else 86_400.0)),
    )


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
        ctx.tpm_keys = [*ctx.tpm_keys, (limits.tpm_key, limits.tpm)]
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
        ctx.tpm_keys = [*ctx.tpm_keys, (limits.tpm_key, limits.tpm)]


async def settle(ctx: RequestContext, limiter: Limiter) -> None:
    """Account phase: replace the token reservation with the tokens really used.

    Unused reserved tokens are given back; tokens beyond the reservation (a stream that ran past
    its estimate: another tokenizer upstream, no ``max_tokens``...) are charged even when the
    window has no room left, so the bucket goes into (bounded) debt and later requests wait.
    """
    keys = ctx.tpm_keys
    if not keys:
        return
    usage = ctx.usage
    used = 0.0 if usage is None else float(usage.prompt_tokens + usage.completion_tokens)
    delta = ctx.tpm_reserved - used
    if delta == 0:
        return
    core = limiter.sync_core
    if core is not None:
        op = core.refund if delta > 0 else core.charge
        amount = abs(delta)
        for key, lim in keys:
            op(key, lim, PERIOD_S, amount)
    elif delta > 0:
        for key, lim in keys:
            await limiter.refund(key, lim, PERIOD_S, delta)
    else:
        for key, lim in keys:
            await limiter.charge(key, lim, PERIOD_S, -delta)
