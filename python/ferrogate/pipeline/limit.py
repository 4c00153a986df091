"""The limit phase: requests and tokens per minute, per key and per team, before the upstream call.

Runs after authorize. Requests cost 1 against ``rpm``; a request reserves its prompt tokens
(counted by the Rust core) plus its ``max_completion_tokens``/``max_tokens`` (or
``default_max_tokens``) against ``tpm``, and the account phase settles the reservation with
the real usage (:func:`settle`). The limiter is the Rust GCRA table shared by the instance's
workers, or Redis across instances; both are exact. A refusal is a 429 with ``Retry-After``,
OpenAI's error shape and a code naming the limit (``key_rpm_exceeded``, ``team_tpm_exceeded``...);
every response of a limited key carries OpenAI's ``x-ratelimit-*`` headers for the tightest limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ferrogate import _core
from ferrogate.errors import ErrorKind, GatewayError
from ferrogate.limits import Decision, Limiter

if TYPE_CHECKING:
    from ferrogate.pipeline.context import RequestContext

PERIOD_S = 60.0


@dataclass(frozen=True, slots=True)
class _Check:
    level: str  # "key" or "team"
    kind: str  # "requests" or "tokens"
    key: str
    limit: int
    cost: float


def _duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


async def limit(ctx: RequestContext, limiter: Limiter, headers: list[tuple[str, str]], default_max_tokens: int) -> None:
    """Phase: take the request's cost from every limit on its chain, or refuse with 429.

    Appends the ``x-ratelimit-*`` headers to ``headers`` (they go on the response, errors
    included). Partial takes are given back when a later limit refuses.
    """
    limits = ctx.identity.limits
    if not limits.any:
        return
    key_id, team_id = ctx.identity.key_id, ctx.identity.team_id
    checks: list[_Check] = []
    if limits.key_rpm is not None:
        checks.append(_Check("key", "requests", f"k:{key_id}:rpm", limits.key_rpm, 1.0))
    if limits.team_rpm is not None and team_id is not None:
        checks.append(_Check("team", "requests", f"t:{team_id}:rpm", limits.team_rpm, 1.0))
    if limits.key_tpm is not None or (limits.team_tpm is not None and team_id is not None):
        payload = ctx.payload
        out = payload.get("max_completion_tokens") or payload.get("max_tokens") or default_max_tokens
        prompt = _core.count_chat_prompt(ctx.body, _core.encoding_for_model(ctx.model))
        cost = float(prompt + int(out))
        ctx.tpm_reserved = cost
        if limits.key_tpm is not None:
            checks.append(_Check("key", "tokens", f"k:{key_id}:tpm", limits.key_tpm, cost))
        if limits.team_tpm is not None and team_id is not None:
            checks.append(_Check("team", "tokens", f"t:{team_id}:tpm", limits.team_tpm, cost))
    taken: list[tuple[_Check, Decision]] = []
    for check in checks:
        decision = await limiter.check(check.key, check.limit, PERIOD_S, check.cost)
        if not decision.allowed:
            for done, _ in taken:
                await limiter.refund(done.key, done.limit, PERIOD_S, done.cost)
            headers += _rate_headers([*taken, (check, decision)])
            raise _refusal(check, decision)
        taken.append((check, decision))
    ctx.tpm_keys = [(c.key, c.limit) for c in checks if c.kind == "tokens"]
    headers += _rate_headers(taken)


def _refusal(check: _Check, decision: Decision) -> GatewayError:
    per = "requests" if check.kind == "requests" else "tokens"
    kind = ErrorKind.RATE_LIMITED_REQUESTS if check.kind == "requests" else ErrorKind.RATE_LIMITED_TOKENS
    code = f"{check.level}_{'rpm' if check.kind == 'requests' else 'tpm'}_exceeded"
    head = f"Rate limit reached for this {check.level}: {check.limit} {per} per minute"
    if math.isinf(decision.retry_after_s):  # more than the whole limit: waiting will not help
        message = f"{head}, and this request alone needs {check.cost:g}: lower max_tokens or the prompt."
        return GatewayError(kind, message, code=code)
    wait = max(decision.retry_after_s, 0.001)
    message = f"{head} (this request needs {check.cost:g}). Try again in {_duration(wait)}."
    return GatewayError(kind, message, code=code, headers=[("retry-after", str(max(1, math.ceil(wait))))])


def _rate_headers(taken: list[tuple[_Check, Decision]]) -> list[tuple[str, str]]:
    """OpenAI's six headers, for the tightest limit of each kind (fewest remaining)."""
    out: list[tuple[str, str]] = []
    for kind in ("requests", "tokens"):
        mine = [(c, d) for c, d in taken if c.kind == kind]
        if not mine:
            continue
        check, decision = min(mine, key=lambda cd: cd[1].remaining)
        out += [
            (f"x-ratelimit-limit-{kind}", str(check.limit)),
            (f"x-ratelimit-remaining-{kind}", str(max(0, math.floor(decision.remaining)))),
            (f"x-ratelimit-reset-{kind}", _duration(min(decision.reset_s, 86_400.0))),
        ]
    return out


async def settle(ctx: RequestContext, limiter: Limiter) -> None:
    """Account phase: replace the token reservation with the tokens really used.

    Unused reserved tokens are given back; tokens beyond the reservation (a request without
    usage cannot exceed it: the reservation counts the prompt and the maximum output) are
    taken if the window still has them.
    """
    keys = ctx.tpm_keys
    if not keys:
        return
    usage = ctx.usage
    used = 0.0 if usage is None else float(usage.prompt_tokens + usage.completion_tokens)
    if ctx.status != 200 and usage is None:
        used = 0.0  # refused or failed upstream: nothing was generated
    delta = ctx.tpm_reserved - used
    for key, lim in keys:
        if delta > 0:
            await limiter.refund(key, lim, PERIOD_S, delta)
        elif delta < 0:
            await limiter.check(key, lim, PERIOD_S, -delta)
