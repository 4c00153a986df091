"""The limit phase and the route phase's deployment limits, on the local table and on Redis.

The same scenarios run against both limiters: the local one is called synchronously (no coroutine
comes back), Redis through awaited calls. Redis tests are skipped, with the reason, when it is
unreachable (``FERROGATE_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/15``).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from ferrogate import _core
from ferrogate.auth.identity import Identity, Limits
from ferrogate.config import load_config_text
from ferrogate.errors import GatewayError
from ferrogate.limits import Limiter, LocalLimiter, RedisLimiter
from ferrogate.pipeline.context import RequestContext, Usage
from ferrogate.pipeline.limit import PERIOD_S, limit, settle
from ferrogate.pipeline.phases import route
from ferrogate.pipeline.router import Router
from ferrogate.protocols import OPENAI_CHAT
from ferrogate.protocols.request import Request
from tests.integration.limits.conftest import URL, require_redis

BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 10})
PROMPT = _core.count_chat_prompt(BODY, _core.encoding_for_model("m"))
COST = PROMPT + 10  # what a request reserves against tokens per minute
Headers = list[tuple[str, str]]


@pytest.fixture(params=["local", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[Limiter]:
    if request.param == "local":
        yield LocalLimiter(None, capacity=1024)
        return
    require_redis()
    yield RedisLimiter.from_url(URL, prefix=f"test:phase:{secrets.token_hex(6)}:")


def run(limiter: Limiter, scenario: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        try:
            await scenario()
        finally:
            if isinstance(limiter, RedisLimiter):
                await limiter.aclose()

    asyncio.run(main())


async def done(pending: Coroutine[Any, Any, None] | None, limiter: Limiter) -> None:
    """Finish a phase; the local table never hands back a coroutine, Redis always does."""
    assert (pending is None) == (limiter.sync_core is not None)
    if pending is not None:
        await pending


def identity(limits: Limits, user: bool = True, team: bool = True) -> Identity:
    tag = secrets.token_hex(4)
    ident = Identity(f"key{tag}", f"team{tag}" if team else None, f"user{tag}" if user else None, ("*",), None, None)
    ident.limits = limits
    return ident


def context(ident: Identity, model: str = "m") -> RequestContext:
    ctx = RequestContext("r")
    ctx.request = Request(OPENAI_CHAT, BODY, orjson.loads(BODY))
    ctx.model = model
    ctx.identity = ident
    return ctx


def session(limiter: Limiter, headers: Headers, router: Router | None = None) -> Any:
    """What the phases read of a session: its headers and the chain's limiter, router and default max tokens."""
    deps = SimpleNamespace(limiter=limiter, router=router, default_max_tokens=4096)
    return SimpleNamespace(headers=headers, chain=SimpleNamespace(deps=deps))


async def request(limiter: Limiter, ident: Identity) -> tuple[RequestContext, Headers, GatewayError | None]:
    ctx, headers = context(ident), [("x-request-id", "r")]
    try:
        await done(limit(session(limiter, headers), ctx), limiter)
    except GatewayError as err:
        return ctx, headers, err
    return ctx, headers, None


def test_user_rpm_is_checked_between_key_and_team_and_refusals_give_back(limiter: Limiter) -> None:
    ident = identity(Limits(5, None, 2, None, 10, None))

    async def scenario() -> None:
        for _ in range(2):
            assert (await request(limiter, ident))[2] is None
        _, headers, err = await request(limiter, ident)
        assert err is not None and err.status == 429 and err.code == "user_rpm_exceeded"
        assert "this user: 2 requests per minute" in err.message
        assert 1 <= int(dict(err.headers)["retry-after"]) <= 30
        # the key's take of the refused request was given back; the team was never reached
        assert (await limiter.peek(f"k:{ident.key_id}:rpm", 5, PERIOD_S))[0] == pytest.approx(3, abs=0.01)
        assert (await limiter.peek(f"t:{ident.team_id}:rpm", 10, PERIOD_S))[0] == pytest.approx(8, abs=0.01)
        assert dict(headers)["x-ratelimit-limit-requests"] == "2"  # the refusing (tightest) bucket
        assert dict(headers)["x-ratelimit-remaining-requests"] == "0"
        # user and team both full: the user is checked first, so it is the one named
        both = identity(Limits(5, None, 1, None, 1, None))
        assert (await request(limiter, both))[2] is None
        err = (await request(limiter, both))[2]
        assert err is not None and err.code == "user_rpm_exceeded"

    run(limiter, scenario)


def test_user_tpm_refusal_gives_back_every_earlier_take(limiter: Limiter) -> None:
    ident = identity(Limits(5, 1000, 5, COST - 1, 5, 1000))

    async def scenario() -> None:
        ctx, headers, err = await request(limiter, ident)
        assert err is not None and err.code == "user_tpm_exceeded" and err.status == 429
        assert ctx.prompt_tokens == PROMPT and ctx.tpm_reserved == COST
        assert "this request alone needs" in err.message  # more than the whole limit: no Retry-After
        assert not ctx.tpm_keys  # nothing to settle: everything was given back
        for bucket, lim in [("k:{}:rpm", 5), ("u:{}:rpm", 5), ("t:{}:rpm", 5), ("k:{}:tpm", 1000)]:
            owner = {"k": ident.key_id, "u": ident.user_id, "t": ident.team_id}[bucket[0]]
            assert (await limiter.peek(bucket.format(owner), lim, PERIOD_S))[0] == pytest.approx(lim, abs=0.01)
        names = [name for name, _ in headers]
        assert names.count("x-ratelimit-remaining-tokens") == 1 and names.count("x-ratelimit-limit-requests") == 1

    run(limiter, scenario)


def test_user_limits_need_a_user_and_headers_show_the_tightest(limiter: Limiter) -> None:
    ident = identity(Limits(100, 5000, 1, 1, 50, 4000), user=False)

    async def scenario() -> None:
        ctx, headers, err = await request(limiter, ident)
        assert err is None
        h = dict(headers)
        assert h["x-ratelimit-limit-requests"] == "50" and h["x-ratelimit-remaining-requests"] == "49"
        assert h["x-ratelimit-limit-tokens"] == "4000"
        assert int(h["x-ratelimit-remaining-tokens"]) == math.floor(4000 - ctx.tpm_reserved)
        assert h["x-ratelimit-reset-requests"] == "2s"  # 60 s / 50, rounded up
        assert ctx.tpm_keys == ((f"k:{ident.key_id}:tpm", 5000), (f"t:{ident.team_id}:tpm", 4000))

    run(limiter, scenario)


def test_the_prompt_is_counted_once(limiter: Limiter) -> None:
    ident = identity(Limits(None, 10_000, None, None, None, None))

    async def scenario() -> None:
        ctx, headers = context(ident), [("x-request-id", "r")]
        ctx.prompt_tokens = 1234  # counted before (the budget phase reads the same slot)
        await done(limit(session(limiter, headers), ctx), limiter)
        assert ctx.tpm_reserved == 1234 + 10
        fresh = (await request(limiter, ident))[0]
        assert fresh.prompt_tokens == PROMPT > 0 and fresh.tpm_reserved == COST

    run(limiter, scenario)


def test_settle_refunds_unused_tokens_and_charges_an_overrun(limiter: Limiter) -> None:
    ident = identity(Limits(None, 100, None, None, None, None), user=False, team=False)
    bucket = f"k:{ident.key_id}:tpm"

    async def scenario() -> None:
        ctx = (await request(limiter, ident))[0]
        reserved = ctx.tpm_reserved
        ctx.status, ctx.usage = 200, Usage(int(reserved) - 10, 5)  # used 5 fewer than reserved
        await _settled(ctx, limiter)
        assert (await limiter.peek(bucket, 100, PERIOD_S))[0] == pytest.approx(100 - reserved + 5, abs=0.01)
        # A stream that ran 150 tokens past its reservation: charged though only ~75 were left.
        ctx = (await request(limiter, ident))[0]
        ctx.status, ctx.usage = 200, Usage(int(ctx.tpm_reserved), 150)
        await _settled(ctx, limiter)
        remaining, reset_s = await limiter.peek(bucket, 100, PERIOD_S)
        assert remaining == 0.0 and reset_s > PERIOD_S  # in debt
        err = (await request(limiter, ident))[2]
        assert err is not None and err.code == "key_tpm_exceeded"
        assert int(dict(err.headers)["retry-after"]) > 30
        # a failed request without usage gives everything back
        ctx = context(ident)
        ctx.tpm_keys, ctx.tpm_reserved, ctx.status = ((bucket, 100),), 20.0, 502
        before = await limiter.peek(bucket, 100, PERIOD_S)
        await _settled(ctx, limiter)
        assert (await limiter.peek(bucket, 100, PERIOD_S))[1] == pytest.approx(before[1] - 12, abs=0.05)

    run(limiter, scenario)


CONFIG = f"""
upstreams: [{{name: up, provider: mock}}]
model_groups:
  - {{name: open, deployments: [{{upstream: up}}]}}
  - {{name: capped, deployments: [{{upstream: up, model: inner, rpm: 2, tpm: 1000}}, {{upstream: up}}]}}
  - {{name: tokens, deployments: [{{upstream: up, tpm: {COST + COST // 2}}}]}}
"""


def test_deployment_limits_in_the_route_phase(limiter: Limiter) -> None:
    router = Router(load_config_text(CONFIG, "t"))
    limited = {name for name in ("open", "capped", "tokens") if router.group(name).by_priority[0].limits}  # type: ignore[union-attr]
    assert limited == {"capped", "tokens"}
    ident = identity(Limits(None, 10_000, None, None, None, None), user=False, team=False)

    async def call(model: str) -> tuple[RequestContext, Headers, GatewayError | None]:
        ctx, headers = context(ident, model), [("x-request-id", "r")]
        try:
            await done(limit(session(limiter, headers), ctx), limiter)
            pending = route(session(limiter, headers, router), ctx)
            if model == "open":
                assert pending is None  # no deployment limits: the phase stays synchronous
            else:
                await done(pending, limiter)
        except GatewayError as err:
            return ctx, headers, err
        return ctx, headers, None

    async def scenario() -> None:
        try:
            ctx, headers, err = await call("open")
            assert err is None and ctx.upstream_model == "open"
            assert ctx.tpm_keys == ((f"k:{ident.key_id}:tpm", 10_000),)
            group = "capped"
            for expected_remaining in ("1", "0"):
                ctx, headers, err = await call(group)
                assert err is None and ctx.upstream_model == "inner"
                h = dict(headers)  # the deployment's rpm is the only requests limit; its tpm is tighter
                assert h["x-ratelimit-limit-requests"] == "2"
                assert h["x-ratelimit-remaining-requests"] == expected_remaining
                assert h["x-ratelimit-limit-tokens"] == "1000"
                assert [n for n, _ in headers].count("x-ratelimit-limit-tokens") == 1
                assert ctx.tpm_keys[-1] == (f"d:{group}:0:tpm", 1000)
            # the first deployment is full: the second (no limits) serves, the request is not refused
            ctx, headers, err = await call(group)
            assert err is None and (ctx.upstream_model, ctx.deployment_index) == ("capped", 1)
            # tokens: 1.5 requests' worth per minute; settled to exactly the reservation, one fits, not two
            ctx, headers, err = await call("tokens")
            assert err is None and ctx.tpm_keys[-1] == ("d:tokens:0:tpm", COST + COST // 2)
            ctx.status, ctx.usage = 200, Usage(ctx.prompt_tokens, 10)
            await _settled(ctx, limiter)
            refused = await call("tokens")  # its only deployment is full: the deployment's 429
            assert refused[2] is not None and refused[2].code == "deployment_tpm_exceeded"
            assert "model group 'tokens'" in refused[2].message and "upstream 'up'" in refused[2].message
            assert int(dict(refused[2].headers)["retry-after"]) >= 1
        finally:
            await router.close()

    run(limiter, scenario)


async def _settled(ctx: RequestContext, limiter: Limiter) -> None:
    """:func:`settle`, awaited when it returns a coroutine (Redis)."""
    if (pending := settle(ctx, limiter)) is not None:
        await pending
