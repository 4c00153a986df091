"""A PostgreSQL outage under load (issue 13, item 5): two workers, the store's link cut for ~5 s by a relay.

Known keys answer 200 throughout (from their cached entries: stale-if-error); a budgeted key follows
``budgets.on_store_error: refuse`` (503 ``store_unavailable``); an unknown key gets 503 ``store_unavailable``
with ``Retry-After``; ``/ready`` answers 503 and ``ferrogate_store_up`` says 0 while the link is cut. No other
5xx. After the restore, the store holds exactly one usage record and one audit record per answered request
of a key (the journal replays what the outage kept from the store).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import openai
import pytest

from ferrogate.auth.keys import PREFIX
from ferrogate.store.postgres import PostgresStore
from tests.fakes.relay import Relay
from tests.integration.store.conftest import PG_URL, pg_admin, with_database
from tests.support import Gateway

MASTER = "outage-master-key-0123456789"
ADMIN = {"authorization": f"Bearer {MASTER}"}
BODY = {"model": "mock", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
CUT_S = 5.0
STORE_UP = re.compile(r"^ferrogate_store_up(?:\{[^}]*\})? (\S+)$", re.MULTILINE)


def config(tmp: Path) -> str:
    return f"""
server: {{spool_dir: "{tmp / "journal"}"}}
upstreams: [{{name: mock, provider: mock}}]
model_groups:
  - {{name: mock, deployments: [{{upstream: mock, price: {{input: 1.0, output: 2.0}}}}]}}
"""


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh, migrated database ``fg_outage_<random>``, dropped afterwards (skips without PostgreSQL)."""
    name = f"fg_outage_{secrets.token_hex(4)}"
    try:
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL at {PG_URL} is unavailable: {exc}")
    url = with_database(PG_URL, name)
    try:
        asyncio.run(_migrate(url))
        yield url
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _migrate(url: str) -> None:
    store = PostgresStore(url)
    try:
        await store.migrate()
    finally:
        await store.close()


async def _stored(url: str) -> tuple[Counter[str], Counter[str]]:
    """Usage records and request audit records per key id, read from the store itself."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        usage = Counter(
            {
                r["key_id"]: r["n"]
                for r in await conn.fetch("SELECT key_id, count(*) AS n FROM usage_records GROUP BY key_id")
            }
        )
    finally:
        await conn.close()
    store = PostgresStore(url)
    audit: Counter[str] = Counter()
    try:
        after = 0
        while batch := await store.audit.scan(after=after, limit=1000):
            audit.update(r.actor for r in batch if r.kind == "request")
            after = batch[-1].seq
    finally:
        await store.close()
    return usage, audit


def admin(gw: Gateway, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(f"{gw.url}/admin/v1{path}", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code < 300, resp.text
    result: dict[str, Any] = resp.json()
    return result


def store_up(gw: Gateway) -> list[float]:
    """The ``ferrogate_store_up`` value of every worker."""
    text = httpx.get(f"{gw.url}/metrics", timeout=5).text
    return [float(v) for v in STORE_UP.findall(text)]


def wait_for(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


class Load:
    """Client threads posting chat completions for the given keys until stopped; every answer is kept."""

    def __init__(self, gw: Gateway, keys: list[str], threads: int = 4) -> None:
        self.gw = gw
        self.keys = keys
        self.answers: list[tuple[str, float, int, str | None]] = []  # key, time, status, error code
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _run(self, offset: int) -> None:
        n = offset
        with httpx.Client(base_url=self.gw.url, timeout=10) as client:
            while not self._stop.is_set():
                key = self.keys[n % len(self.keys)]
                n += 1
                resp = client.post("/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {key}"})
                code = resp.json()["error"]["code"] if resp.status_code != 200 else None
                with self._lock:
                    self.answers.append((key, time.monotonic(), resp.status_code, code))
                time.sleep(0.002)  # a few hundred requests a second in all: the machine is shared


# The test's TCP relay (tests/fakes/relay.py) sometimes leaves one asyncio socket to the garbage collector
# (a ResourceWarning, raised as an unraisable-exception warning at the end of the test): a leak of the test's
# own tooling, not of the gateway, under investigation. Every assertion below stands.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_store_outage_under_load_keeps_known_keys_answering_and_loses_nothing(tmp_path: Path, database: str) -> None:
    target = urlsplit(database)
    with Relay(target.hostname or "127.0.0.1", target.port or 5432) as relay:
        gw = Gateway(
            tmp_path,
            config(tmp_path),
            workers=2,
            dev=False,
            env={"FERROGATE_MASTER_KEY": MASTER},
            database_url=relay.url(database),
        ).wait_ready()
        try:
            team = admin(gw, "/teams", {"name": "outage"})
            budget_team = admin(gw, "/teams", {"name": "outage-budget", "budget": 1000.0})
            plain = [admin(gw, "/keys", {"name": f"k{i}", "team_id": team["id"]}) for i in range(3)]
            budgeted = admin(gw, "/keys", {"name": "kb", "team_id": budget_team["id"]})
            keys = {k["key"]: k["id"] for k in [*plain, budgeted]}
            warm: list[tuple[str, int]] = []
            for secret in keys:  # fresh connections, so both workers cache every key
                for _ in range(12):
                    with httpx.Client(base_url=gw.url, timeout=10) as c:
                        r = c.post("/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {secret}"})
                        warm.append((secret, r.status_code))
            assert {s for _, s in warm} == {200}
            assert httpx.get(f"{gw.url}/ready", timeout=5).status_code == 200

            sdk = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=PREFIX + secrets.token_urlsafe(32), max_retries=0)
            with sdk, Load(gw, list(keys)) as load:
                time.sleep(1.0)
                cut_at = time.monotonic()
                relay.cut("refuse")
                assert wait_for(lambda: httpx.get(f"{gw.url}/ready", timeout=5).status_code == 503, 4.0)
                ready = httpx.get(f"{gw.url}/ready", timeout=5)
                assert ready.json()["error"]["code"] == "not_ready"
                assert wait_for(lambda: (up := store_up(gw)) and max(up) == 0.0, 4.0), store_up(gw)
                with pytest.raises(openai.InternalServerError) as unknown:  # a key no worker has seen
                    sdk.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}])
                assert unknown.value.status_code == 503
                assert unknown.value.code == "store_unavailable"
                assert unknown.value.response.headers["retry-after"] == "5"
                usage_during = httpx.get(f"{gw.url}/v1/usage", headers={"authorization": f"Bearer {plain[0]['key']}"})
                assert usage_during.status_code == 503, usage_during.text
                assert usage_during.json()["error"]["code"] == "store_unavailable"
                teams_during = httpx.get(f"{gw.url}/admin/v1/teams", headers=ADMIN, timeout=10)  # admin plane too
                assert teams_during.status_code == 503, teams_during.text
                assert teams_during.json()["error"]["code"] == "store_unavailable"
                time.sleep(max(0.0, cut_at + CUT_S - time.monotonic()))
                relay.restore()
                restored_at = time.monotonic()
                assert wait_for(lambda: httpx.get(f"{gw.url}/ready", timeout=5).status_code == 200, 5.0)
                time.sleep(1.0)
            assert wait_for(lambda: (up := store_up(gw)) and min(up) == 1.0, 4.0), store_up(gw)

            answers = load.answers
            during = [a for a in answers if cut_at + 0.5 < a[1] < restored_at]
            by_status = Counter((a[0] in keys and a[0] != budgeted["key"], a[2], a[3]) for a in answers)
            assert len(answers) > 300, by_status
            assert len(during) > 100, by_status
            plain_keys = {k["key"] for k in plain}
            assert {a[2] for a in answers if a[0] in plain_keys} == {200}, by_status  # known keys: 200 throughout
            budget_answers = Counter((a[2], a[3]) for a in answers if a[0] == budgeted["key"])
            assert set(budget_answers) <= {(200, None), (503, "store_unavailable")}, budget_answers
            assert budget_answers[503, "store_unavailable"] > 0  # refused while the link was cut ...
            assert all(a[2] == 200 for a in answers if a[0] == budgeted["key"] and a[1] > restored_at + 1.5)

            expected = Counter(keys[k] for k, _ in warm) + Counter(keys[a[0]] for a in answers)
            usage, audit = asyncio.run(_stored(database))
            if usage != expected or audit != expected:  # the journal replays within a few seconds of the restore
                assert wait_for(lambda: asyncio.run(_stored(database)) == (expected, expected), 10.0), (
                    expected,
                    asyncio.run(_stored(database)),
                )
            after = httpx.get(f"{gw.url}/v1/usage", headers={"authorization": f"Bearer {plain[0]['key']}"}, timeout=5)
            assert after.status_code == 200
        finally:
            gw.stop()
    errors = [line for line in gw.log().splitlines() if '"level":"error"' in line]
    assert not errors, errors[:3]  # nothing failed inside the gateway (asyncpg's own retries log warnings)
