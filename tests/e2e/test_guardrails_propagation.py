"""A guardrail policy change made through one worker applies to the requests another serves within a second:
two workers of one instance without Redis (the store's version poll), the same with Redis (the poll slowed to a
minute, so only the Redis message can make it), and two instances sharing a PostgreSQL store.

Each side holds one keep-alive connection, whose worker is found from the kernel's socket table (the process
holding the server end), so the PUT and the requests are known to be served by different processes.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_admin_api import GATEWAY_ENV, MASTER_KEY, scratch_postgres
from tests.e2e.test_respawn import owner, workers
from tests.integration.limits.conftest import URL as REDIS_URL
from tests.integration.limits.conftest import require_redis
from tests.support import Gateway

CANARY = "okapi-canary-5190"
ADMIN = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}


class Conn:
    """One keep-alive HTTP connection to a gateway (so every request on it is served by one worker)."""

    def __init__(self, gw: Gateway) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        self.http.connect()
        self.port: int = self.http.sock.getsockname()[1]

    def call(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.http.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = self.http.getresponse()
        data = resp.read()
        assert resp.getheader("connection", "").lower() != "close", "the worker closed the connection"
        return resp.status, json.loads(data)

    def admin(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, answer = self.call(method, f"/admin/v1{path}", body, ADMIN)
        assert status < 300, answer
        return answer

    def chat(self, key: str, text: str) -> tuple[int, dict[str, Any]]:
        body = {"model": "mock", "messages": [{"role": "user", "content": text}]}
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        return self.call("POST", "/v1/chat/completions", body, headers)

    def close(self) -> None:
        self.http.close()


def worker_of(gw: Gateway, conn: Conn) -> int:
    return owner(gw, workers(gw), conn.port)


def two_workers(gw: Gateway, stack: ExitStack) -> tuple[Conn, Conn]:
    """Keep-alive connections served by two different workers of ``gw``."""
    deadline = time.monotonic() + 10
    while len(workers(gw)) < 2:
        assert time.monotonic() < deadline, f"two workers did not start:\n{gw.log()}"
        time.sleep(0.05)
    first = Conn(gw)
    stack.callback(first.close)
    first.admin("GET", "/guardrails")  # served: the worker holds the connection now
    for _ in range(200):
        other = Conn(gw)
        other.admin("GET", "/guardrails")
        if worker_of(gw, other) != worker_of(gw, first):
            stack.callback(other.close)
            return first, other
        other.close()
    raise AssertionError("every new connection went to one worker")


def takes_effect_within_a_second(writer: Conn, reader: Conn, key: str) -> float:
    """PUT a deny pattern through ``writer``; poll ``reader`` (bounded) until its requests are blocked."""
    status, _ = reader.chat(key, f"note {CANARY}")
    assert status == 200  # not blocked before the change
    put_at = time.monotonic()
    writer.admin("PUT", "/guardrails", {"deny_patterns": [{"id": "canary", "regex": CANARY}]})
    while True:
        status, answer = reader.chat(key, f"note {CANARY}")
        took = time.monotonic() - put_at
        if status == 400:
            assert answer["error"]["code"] == "content_policy_violation", answer
            return took
        assert status == 200, answer
        assert took < 1.0, "the change did not reach the other worker within a second"
        time.sleep(0.02)


@contextmanager
def gateway(tmp: Path, env: dict[str, str], workers: int = 2, database_url: str | None = None) -> Iterator[Gateway]:
    tmp.mkdir(parents=True, exist_ok=True)
    gw = Gateway(tmp, None, workers=workers, dev=False, env={**GATEWAY_ENV, **env}, database_url=database_url)
    try:
        yield gw.wait_ready()
    finally:
        gw.stop()


@pytest.mark.parametrize("redis", [False, True], ids=["poll", "redis"])
def test_a_put_through_one_worker_blocks_on_the_other_within_a_second(tmp_path: Path, redis: bool) -> None:
    env = {"FERROGATE_GUARDRAILS_POLL_S": "60", "FERROGATE_REDIS_URL": REDIS_URL} if redis else {}
    if redis:
        require_redis()
    with gateway(tmp_path, env) as gw, ExitStack() as stack:
        writer, reader = two_workers(gw, stack)
        assert worker_of(gw, writer) != worker_of(gw, reader)
        team = writer.admin("POST", "/teams", {"name": "ml"})
        key = writer.admin("POST", "/keys", {"name": "k", "team_id": team["id"]})["key"]
        assert takes_effect_within_a_second(writer, reader, key) < 1.0
        # and back: a team override read by the reader's worker turns the pattern to log for that team
        writer.admin("PUT", f"/teams/{team['id']}/guardrails", {"actions": {"canary": "log"}})
        deadline = time.monotonic() + 1.0
        while reader.chat(key, f"note {CANARY}")[0] != 200:
            assert time.monotonic() < deadline, "the team override did not reach the other worker within a second"
            time.sleep(0.02)


def test_two_instances_on_one_postgres_store_converge_within_a_second(tmp_path: Path) -> None:
    with scratch_postgres("guard_sync") as url, ExitStack() as stack:
        a = stack.enter_context(gateway(tmp_path / "a", {}, workers=1, database_url=url))
        b = stack.enter_context(gateway(tmp_path / "b", {}, workers=1, database_url=url))
        writer, reader = Conn(a), Conn(b)
        stack.callback(writer.close)
        stack.callback(reader.close)
        team = writer.admin("POST", "/teams", {"name": "ml"})
        key = writer.admin("POST", "/keys", {"name": "k", "team_id": team["id"]})["key"]
        assert takes_effect_within_a_second(writer, reader, key) < 1.0


def test_a_worker_started_later_loads_the_stored_policies(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/shared.db"
    with gateway(tmp_path, {}, workers=1, database_url=store) as gw:
        conn = Conn(gw)
        team = conn.admin("POST", "/teams", {"name": "ml"})
        key = conn.admin("POST", "/keys", {"name": "k", "team_id": team["id"]})["key"]
        conn.admin("PUT", "/guardrails", {"deny_patterns": [{"id": "canary", "regex": CANARY}]})
        conn.close()
    # the same store, a new process: its first request already sees the stored document
    with gateway(tmp_path, {"FERROGATE_GUARDRAILS_POLL_S": "60"}, workers=1, database_url=store) as gw:
        conn = Conn(gw)
        status, answer = conn.chat(key, f"note {CANARY}")
        conn.close()
    assert status == 400 and answer["error"]["code"] == "content_policy_violation"
