"""The data plane's store-outage rules, on PostgreSQL reached through a relay the test cuts.

The authenticator answers known keys from their expired cache entries (stale-if-error, bounded by its window),
refuses credentials it has no entry for with 503 ``store_unavailable`` + ``Retry-After``, applies a
revocation (``forget``) at once, never serves stale after a "no such key" answer, and bounds a hanging store
by its timeout. The budget ledger follows ``budgets.on_store_error``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from ferrogate.auth.authenticator import Authenticator
from ferrogate.auth.identity import BudgetRef
from ferrogate.auth.keys import KeyHasher, new_key
from ferrogate.budgets.ledger import BudgetLedger
from ferrogate.config.model import BudgetSettings
from ferrogate.errors import GatewayError
from ferrogate.store.errors import StoreError
from ferrogate.store.postgres import PostgresStore
from tests.fakes.relay import Relay
from tests.integration.backends import anyio_backend, wipe  # noqa: F401 (fixture)
from tests.integration.store.conftest import scratch_database

pytestmark = pytest.mark.anyio
HASHER = KeyHasher(b"outage-master-key-0123456789")


@dataclass
class FakeScope:
    """What the authenticator reads of a request: its headers and client address."""

    headers: dict[str, str] = field(default_factory=dict)
    client: str = "127.0.0.1:50000"


def bearer(key: str) -> FakeScope:
    return FakeScope({"authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    yield from scratch_database("fg_outage_unit")


@pytest.fixture
async def relay(pg_database: str) -> AsyncIterator[tuple[Relay, str]]:
    await wipe(pg_database)
    store = PostgresStore(pg_database)
    try:
        await store.migrate()
    finally:
        await store.close()
    target = urlsplit(pg_database)
    with Relay(target.hostname or "127.0.0.1", target.port or 5432) as cut:
        # sslmode=disable: asyncpg's SSL probe of a connection the relay holds, once cancelled, leaves a future
        # with an exception nobody retrieves (asyncpg's own noise, which the test runner would report)
        yield cut, cut.url(pg_database) + "?sslmode=disable"


@pytest.fixture
async def store(relay: tuple[Relay, str]) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(relay[1], min_size=1, max_size=2)
    try:
        yield opened
    finally:
        relay[0].restore()
        await opened.close()


async def member(store: PostgresStore, **fields: object) -> tuple[str, str]:
    """A new member key (secret, id) in a new team."""
    team = await store.teams.create(f"t{time.monotonic_ns()}")
    secret = new_key()
    key = await store.keys.create(HASHER.hash(secret), secret[:8], team_id=team.id, **fields)  # type: ignore[arg-type]
    return secret, key.id


async def expire(auth: Authenticator) -> None:
    """Let every cache entry expire (ttl_s is short in these tests)."""
    await asyncio.sleep(auth.ttl_s + 0.05)


async def unavailable(auth: Authenticator, key: str) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await auth.identify(bearer(key))  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
async def test_known_key_rides_out_an_outage_and_unknown_key_gets_503(
    relay: tuple[Relay, str], store: PostgresStore, mode: str
) -> None:
    cut, _ = relay
    auth = Authenticator(store, HASHER, ttl_s=0.2, store_timeout_s=0.5)
    known, known_id = await member(store)
    never_seen, _ = await member(store)
    assert (await auth.identify(bearer(known))).key_id == known_id  # type: ignore[arg-type]
    cut.cut(mode)  # type: ignore[arg-type]
    await expire(auth)
    started = time.monotonic()
    assert (await auth.identify(bearer(known))).key_id == known_id  # type: ignore[arg-type]
    assert time.monotonic() - started < 1.0  # the failed refresh is bounded by store_timeout_s
    assert auth.health.up is False
    for _ in range(3):  # the store is known down: answered at once, refreshed in the background
        await expire(auth)
        started = time.monotonic()
        assert (await auth.identify(bearer(known))).key_id == known_id  # type: ignore[arg-type]
        assert time.monotonic() - started < 0.05
    err = await unavailable(auth, never_seen)
    assert (err.status, err.wire_code) == (503, "store_unavailable")
    assert ("retry-after", "5") in err.headers
    assert "cannot be checked" in err.message
    cut.restore()
    await expire(auth)
    assert (await auth.identify(bearer(never_seen))).key_id  # type: ignore[arg-type]
    for _ in range(50):
        if auth.health.up:
            break
        await asyncio.sleep(0.05)
    assert auth.health.up is True


async def test_stalled_query_is_bounded_by_the_timeout(relay: tuple[Relay, str], store: PostgresStore) -> None:
    cut, _ = relay
    auth = Authenticator(store, HASHER, ttl_s=0.2, store_timeout_s=0.4)
    known, known_id = await member(store)
    never_seen, _ = await member(store)
    assert (await auth.identify(bearer(known))).key_id == known_id  # type: ignore[arg-type]
    cut.cut("stall")  # the pooled connection stays open; the query never gets an answer
    await expire(auth)
    started = time.monotonic()
    err = await unavailable(auth, never_seen)
    assert 0.35 < time.monotonic() - started < 1.5
    assert err.wire_code == "store_unavailable"
    assert (await auth.identify(bearer(known))).key_id == known_id  # type: ignore[arg-type]


async def test_stale_window_bounds_the_outage(relay: tuple[Relay, str], store: PostgresStore) -> None:
    cut, _ = relay
    auth = Authenticator(store, HASHER, ttl_s=0.2, stale_s=0.5, store_timeout_s=0.5)
    known, known_id = await member(store)
    assert (await auth.identify(bearer(known))).key_id == known_id  # type: ignore[arg-type]
    cut.cut("refuse")
    await expire(auth)
    assert (await auth.identify(bearer(known))).key_id == known_id  # type: ignore[arg-type]
    await asyncio.sleep(0.6)  # past ttl_s + stale_s of the last good lookup
    err = await unavailable(auth, known)
    assert err.wire_code == "store_unavailable"


async def test_revocation_during_an_outage_applies_at_once(relay: tuple[Relay, str], store: PostgresStore) -> None:
    cut, _ = relay
    auth = Authenticator(store, HASHER, ttl_s=0.2, store_timeout_s=0.5)
    revoked, _ = await member(store)
    kept, kept_id = await member(store)
    for key in (revoked, kept):
        await auth.identify(bearer(key))  # type: ignore[arg-type]
    cut.cut("refuse")
    await expire(auth)
    await auth.identify(bearer(revoked))  # type: ignore[arg-type]  # still answering from the stale entry
    auth.forget(HASHER.hash(revoked))  # what the Redis listener does for a revocation published elsewhere
    err = await unavailable(auth, revoked)
    assert err.wire_code == "store_unavailable"
    assert (await auth.identify(bearer(kept))).key_id == kept_id  # type: ignore[arg-type]


async def test_a_lost_redis_listener_during_an_outage_keeps_known_keys(
    relay: tuple[Relay, str], store: PostgresStore
) -> None:
    """One partition often takes Redis and the store at once: the listener's loss must refresh entries (it may
    have missed revocations), not drop them, or every known key would get a 503 for the whole outage."""
    cut, _ = relay
    auth = Authenticator(store, HASHER, ttl_s=60.0, store_timeout_s=0.5)
    key, key_id = await member(store)
    assert (await auth.identify(bearer(key))).key_id == key_id  # type: ignore[arg-type]
    cut.cut("refuse")
    auth.expire()  # what the Redis listener does when it loses Redis
    assert (await auth.identify(bearer(key))).key_id == key_id  # type: ignore[arg-type]  # stale, not a 503
    assert auth.health.up is False  # the refresh was tried (the entry was due) and failed
    cut.restore()
    for _ in range(100):  # the pool reconnects
        try:
            await store.keys.revoke(key_id)
            break
        except StoreError:
            await asyncio.sleep(0.05)
    status = 200
    for _ in range(40):  # due again: refreshed (in the background while the store was known down) ...
        auth.expire()
        try:
            await auth.identify(bearer(key))  # type: ignore[arg-type]
        except GatewayError as err:
            status = err.status
            break
        await asyncio.sleep(0.05)
    assert status == 401  # ... and the store's answer, revoked, applies


async def test_refused_key_stays_refused_during_an_outage(relay: tuple[Relay, str], store: PostgresStore) -> None:
    """The last answer for a revoked key (a negative entry) is the one served while the store is down: 401."""
    cut, _ = relay
    auth = Authenticator(store, HASHER, ttl_s=0.2, store_timeout_s=0.5)
    revoked, revoked_id = await member(store)
    await store.keys.revoke(revoked_id)
    assert (await unavailable(auth, revoked)).status == 401
    cut.cut("refuse")
    await expire(auth)
    assert (await unavailable(auth, revoked)).status == 401
    await expire(auth)
    assert (await unavailable(auth, revoked)).status == 401


async def test_not_found_answer_is_never_served_stale(relay: tuple[Relay, str], store: PostgresStore) -> None:
    """A key deleted while the store answers gets 401 at once: stale-if-error applies to faults only."""
    auth = Authenticator(store, HASHER, ttl_s=0.2, store_timeout_s=0.5)
    doomed, doomed_id = await member(store)
    assert (await auth.identify(bearer(doomed))).key_id == doomed_id  # type: ignore[arg-type]
    await store.keys.delete(doomed_id)
    await expire(auth)
    err = await unavailable(auth, doomed)
    assert (err.status, err.wire_code) == (401, "invalid_api_key")


@pytest.mark.parametrize(("on_store_error", "admitted"), [("refuse", False), ("allow", True)])
async def test_budget_ledger_follows_on_store_error(
    relay: tuple[Relay, str], store: PostgresStore, on_store_error: str, admitted: bool
) -> None:
    cut, _ = relay
    ledger = BudgetLedger(store, BudgetSettings(on_store_error=on_store_error), timeout_s=0.5)  # type: ignore[arg-type]
    refs = [BudgetRef("team", "team_x", 10.0, "total")]
    await ledger.reserve("req_before", refs, 0.01)
    cut.cut("stall")
    started = time.monotonic()
    if admitted:
        await ledger.reserve("req_during", refs, 0.01)
    else:
        with pytest.raises(GatewayError) as info:
            await ledger.reserve("req_during", refs, 0.01)
        assert (info.value.status, info.value.wire_code) == (503, "store_unavailable")
        assert ("retry-after", "5") in info.value.headers
    assert time.monotonic() - started < 1.5
    assert ledger.health.up is False
