"""The authenticate phase's machinery: credential -> :class:`Identity`, cached in-process.

A credential comes from ``Authorization: Bearer``, ``api-key`` (Azure clients) or
``x-api-key`` (Anthropic clients). It is hashed under the master secret and looked up by
hash, first in an in-process cache (positive and negative entries, ``ttl_s`` each, so a
revoked key stops working on every worker within ``ttl_s`` even without Redis), then in the
store. Invalidations (revoke, rotate, delete, team changes) also arrive at once through
:meth:`Authenticator.forget` (called locally and, with Redis, from the pub/sub listener).

Store outages: a store lookup is bounded by ``store_timeout_s``. When a refresh fails with a store fault
(unreachable, link lost, timed out; not a "no such key" answer), the expired entry keeps answering for up
to ``stale_s`` past its expiry (stale-if-error), retried once per ``ttl_s``; while the store is known to be
down such entries answer at once and are refreshed in the background. A credential with no entry (never
seen, or forgotten: a revocation during the outage still applies) gets 503 ``store_unavailable`` with
``Retry-After``. A cache hit does no more work than before.

Every refusal is the same 401 whatever the reason (unknown, revoked, expired), so a caller
learns nothing about which keys exist; repeated failures from one client address are slowed
down (:class:`FailureThrottle`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from datetime import UTC, datetime

from granian.rsgi import Scope

from ferrogate.auth.identity import BudgetRef, Identity, Limits
from ferrogate.auth.keys import KeyHasher, looks_like_key
from ferrogate.errors import ErrorKind, GatewayError, store_unavailable
from ferrogate.store import Store
from ferrogate.store.errors import NotFound
from ferrogate.store.health import STORE_FAULTS, StoreHealth

log = logging.getLogger("ferrogate.auth")

_MISSING = GatewayError(
    ErrorKind.UNAUTHORIZED,
    "Missing API key: send it as 'Authorization: Bearer fg-...' (or 'api-key' / 'x-api-key').",
)
_INCORRECT = GatewayError(ErrorKind.UNAUTHORIZED, "Incorrect API key provided.")
_UNCHECKED = (
    "The key store cannot be reached, so this API key cannot be checked right now "
    "(keys in use before the outage keep working); try again shortly."
)


def credential(scope: Scope) -> str | None:
    """The raw credential a request carries, if any."""
    headers = scope.headers
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None
    other: str | None = headers.get("api-key") or headers.get("x-api-key")
    return other


class FailureThrottle:
    """Slows down clients that keep failing authentication.

    After ``free`` failures within ``window_s`` from one address, each further failure is
    answered only after a delay that doubles per failure, up to ``max_delay_s``. Memory is
    bounded: the least recently seen addresses are forgotten first.
    """

    __slots__ = ("_seen", "free", "max_delay_s", "max_entries", "window_s")

    def __init__(self, free: int = 5, window_s: float = 60.0, max_delay_s: float = 2.0, max_entries: int = 10_000):
        self.free = free
        self.window_s = window_s
        self.max_delay_s = max_delay_s
        self.max_entries = max_entries
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def failed(self, address: str) -> float:
        """Record a failure; the delay (seconds) to wait before answering it."""
        now = time.monotonic()
        count, since = self._seen.pop(address, (0, now))
        if now - since > self.window_s:
            count, since = 0, now
        count += 1
        self._seen[address] = (count, since)
        if len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        if count <= self.free:
            return 0.0
        return float(min(self.max_delay_s, 0.05 * 2 ** (count - self.free - 1)))


class Authenticator:
    """Resolves credentials to identities; the cache makes a hit cost one HMAC and two dict lookups."""

    __slots__ = (
        "_cache",
        "_cache_secret",
        "_inflight",
        "_tasks",
        "anonymous",
        "hasher",
        "health",
        "max_entries",
        "stale_s",
        "store",
        "store_timeout_s",
        "throttle",
        "ttl_s",
        "used",
    )

    def __init__(
        self,
        store: Store,
        hasher: KeyHasher,
        *,
        ttl_s: float = 1.0,
        max_entries: int = 100_000,
        anonymous: Identity | None = None,
        stale_s: float = 900.0,
        store_timeout_s: float = 2.0,
        health: StoreHealth | None = None,
    ) -> None:
        self.store = store
        self.hasher = hasher
        self.ttl_s = ttl_s
        self.stale_s = stale_s  # stale-if-error: how long past its expiry an entry answers while the store cannot
        self.store_timeout_s = store_timeout_s
        self.health = StoreHealth() if health is None else health
        self.max_entries = max_entries
        self.anonymous = anonymous  # ``--dev``: callers without a ferrogate key get this identity
        self.throttle = FailureThrottle()
        self.used: set[str] = set()  # key ids seen since the last last_used_at flush
        # Cache entries are keyed by a keyed BLAKE2b of the credential: a MAC like the store's
        # HMAC-SHA256 but computed in-process without OpenSSL's per-call algorithm fetch, which
        # profiling showed to be an eighth of a request's handler time. The HMAC is computed
        # only on a miss, for the store lookup.
        self._cache_secret = secrets.token_bytes(32)
        # slot -> (identity or None, fresh until, store hash, stale until): epoch seconds
        self._cache: dict[bytes, tuple[Identity | None, float, str, float]] = {}
        self._inflight: dict[bytes, asyncio.Future[Identity | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # background refreshes during an outage

    async def identify(self, scope: Scope) -> Identity:
        """Authenticate phase: the caller's identity.

        Raises:
            GatewayError: 401 ``invalid_api_key`` (delayed for repeat offenders); 503 ``store_unavailable`` for
                a credential with no cache entry while the store cannot be reached.
        """
        token = credential(scope)
        if token is None:
            if self.anonymous is not None:
                return self.anonymous
            raise await self._refuse(scope, _MISSING)
        if not looks_like_key(token):
            if self.anonymous is not None:  # --dev: "sk-anything" from an SDK that insists on a key
                return self.anonymous
            raise await self._refuse(scope, _INCORRECT)
        slot = hashlib.blake2b(token.encode(), key=self._cache_secret, digest_size=16).digest()
        now = time.time()
        hit = self._cache.get(slot)
        if hit is not None and hit[1] > now:
            identity = hit[0]
        else:
            identity = await self._refresh(slot, token, now, hit)
        if identity is None or (identity.valid_until is not None and identity.valid_until <= now):
            raise await self._refuse(scope, _INCORRECT)
        self.used.add(identity.key_id)
        return identity

    async def flush_last_used(self) -> None:
        """Write ``last_used_at`` for the keys seen since the last flush (off the hot path)."""
        if self.used:
            ids, self.used = self.used, set()
            await self.store.keys.touch_last_used(ids, datetime.now(UTC))

    async def _refresh(
        self, slot: bytes, token: str, now: float, hit: tuple[Identity | None, float, str, float] | None
    ) -> Identity | None:
        """A miss or an expired entry: the store's answer, or the expired entry's while the store cannot answer.

        Raises:
            GatewayError: 503 ``store_unavailable``: the store failed and no entry within its window is left.
        """
        if hit is not None and not self.health.up and now < hit[3]:
            # the store is known to be down: the last answer at once; one check in the background per ttl_s
            self._cache[slot] = (hit[0], now + self.ttl_s, hit[2], hit[3])
            task = asyncio.get_running_loop().create_task(self._revalidate(slot, token, now))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return hit[0]
        try:
            return await self._load_once(slot, token, now)
        except STORE_FAULTS:
            pass
        entry = self._cache.get(slot)  # not ``hit``: forget() may have dropped it meanwhile (a revocation)
        if entry is not None:
            if entry[1] > now:  # refreshed meanwhile by a concurrent request
                return entry[0]
            if now < entry[3]:
                self._cache[slot] = (entry[0], now + self.ttl_s, entry[2], entry[3])  # next try in ttl_s
                return entry[0]
        raise store_unavailable(_UNCHECKED)

    async def _revalidate(self, slot: bytes, token: str, now: float) -> None:
        """Background refresh of an entry answered stale (its failure is the health's business)."""
        try:
            await self._load_once(slot, token, now)
        except STORE_FAULTS:
            pass
        except Exception:
            log.exception("background refresh of a cached key failed")

    async def _load_once(self, slot: bytes, token: str, now: float) -> Identity | None:
        """One store lookup per credential at a time: concurrent misses share its result."""
        pending = self._inflight.get(slot)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Identity | None] = asyncio.get_running_loop().create_future()
        self._inflight[slot] = future
        digest = self.hasher.hash(token)
        try:
            try:
                async with asyncio.timeout(self.store_timeout_s):
                    identity = await self._load(digest, now)
            except STORE_FAULTS as exc:
                self.health.failed(exc)
                raise
            self.health.ok()
            future.set_result(identity)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: waiters, if any, get it too
            raise
        finally:
            del self._inflight[slot]
        if len(self._cache) >= self.max_entries:
            self._cache.clear()  # crude but bounded; a refill costs one lookup per active key
        fresh = now + self.ttl_s
        self._cache[slot] = (identity, fresh, digest, fresh + self.stale_s)
        return identity

    async def _load(self, digest: str, now: float) -> Identity | None:
        identity: Identity | None = None
        match = await self.store.keys.get_by_hash(digest)
        if match is not None and match.key.role == "member":
            key = match.key
            valid = [] if key.expires_at is None else [key.expires_at.timestamp()]
            if match.matched == "previous" and key.previous_expires_at is not None:
                valid.append(key.previous_expires_at.timestamp())
            team_models: tuple[str, ...] = ("*",)
            budgets: list[BudgetRef] = []
            if key.budget is not None:
                budgets.append(BudgetRef("key", key.id, key.budget, key.budget_period or "total"))
            user_rpm = user_tpm = team_rpm = team_tpm = None
            if key.user_id is not None:
                try:
                    user = await self.store.users.get(key.user_id)
                    user_rpm, user_tpm = user.rpm, user.tpm
                    if user.budget is not None:
                        budgets.append(BudgetRef("user", user.id, user.budget, user.budget_period or "total"))
                except NotFound:
                    pass
            if key.team_id is not None:
                try:
                    team = await self.store.teams.get(key.team_id)
                    team_models, team_rpm, team_tpm = team.allowed_models, team.rpm, team.tpm
                    if team.budget is not None:
                        budgets.append(BudgetRef("team", team.id, team.budget, team.budget_period or "total"))
                except NotFound:
                    team_models = ()
            if key.revoked_at is None:
                identity = Identity(
                    key.id, key.team_id, key.user_id, team_models, key.allowed_models, min(valid) if valid else None
                )
                identity.limits = Limits(key.rpm, key.tpm, user_rpm, user_tpm, team_rpm, team_tpm)
                identity.budgets = tuple(budgets)
        return identity

    async def _refuse(self, scope: Scope, error: GatewayError) -> GatewayError:
        delay = self.throttle.failed(scope.client.rsplit(":", 1)[0])
        if delay:
            await asyncio.sleep(delay)
        return GatewayError(error.kind, error.message)

    def expire(self) -> None:
        """Make every cached entry due for a refresh now, keeping each one's stale-if-error window: the
        invalidations of a Redis outage may have been missed, but a store outage at the same time (one
        partition) must still not turn known keys away.

        Example:
            >>> # auth.expire()   # the invalidation listener lost Redis
        """
        now = time.time()
        for slot, (identity, fresh, digest, stale) in list(self._cache.items()):
            if fresh > now:
                self._cache[slot] = (identity, now, digest, stale)

    def forget(self, key_hash: str | None = None) -> None:
        """Drop one cached credential (by its store hash), or all of them."""
        if key_hash is None:
            self._cache.clear()
            return
        for slot in [s for s, entry in self._cache.items() if entry[2] == key_hash]:
            del self._cache[slot]
