"""The audit trail end to end, on a SQLite file and on PostgreSQL: admin changes made through a real
``ferrogate serve`` appear in ``GET /admin/v1/audit`` (actor, action, target, before/after, never a secret),
which admin and auditor credentials may read and others may not; ``ferrogate audit verify`` accepts the
chain the server wrote."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferrogate.auth.keys import KeyHasher
from tests.e2e.test_admin_api import GATEWAY_ENV, MASTER_KEY, Admin, assert_error, run_cli, scratch_postgres
from tests.support import Gateway


@dataclass
class Served:
    gateway: Gateway
    database_url: str


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp(f"audit-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'audit.db'}"
        gw = Gateway(tmp, None, dev=False, env=GATEWAY_ENV, database_url=url).wait_ready()
        try:
            yield Served(gw, url)
        finally:
            gw.stop()
        return
    with scratch_postgres("audit_e2e") as url:
        gw = Gateway(tmp, None, dev=False, env=GATEWAY_ENV, database_url=url).wait_ready()
        try:
            yield Served(gw, url)
        finally:
            gw.stop()


@pytest.fixture
def root(served: Served) -> Iterator[Admin]:
    with httpx.Client(base_url=served.gateway.url, timeout=10) as client:
        yield Admin(client, MASTER_KEY)


def audit(caller: Admin, **filters: Any) -> list[dict[str, Any]]:
    """Every record matching ``filters``, collected page by page (2 per page)."""
    records: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {**filters, "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = caller.ok("GET", "/audit", **params)
        assert len(page["data"]) <= 2
        records += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return records


def test_admin_changes_are_audited_without_secrets(root: Admin, served: Served) -> None:
    team = root.team(metadata={"cost_center": "42"})
    key = root.key(team["id"])
    admin_key = root.key(None, role="admin")
    admin = Admin(root.client, admin_key["key"])
    rotated = admin.ok("POST", f"/keys/{key['id']}/rotate", {"grace_period_s": 0})
    admin.ok("PATCH", f"/teams/{team['id']}", {"rpm": 77})
    admin.ok("POST", f"/keys/{key['id']}/revoke")

    mine = audit(root, team_id=team["id"], kind="admin")
    assert [(r["action"], r["actor"], r["target"]) for r in mine] == [
        ("team.create", "master", team["id"]),
        ("key.create", "master", key["id"]),
        ("key.rotate", admin_key["id"], key["id"]),
        ("team.update", admin_key["id"], team["id"]),
        ("key.revoke", admin_key["id"], key["id"]),
    ]
    create_team, create_key, rotate, update, revoke = mine
    assert create_team["data"]["before"] is None
    assert {k: create_team["data"]["after"][k] for k in ("id", "name", "metadata")} == {
        k: team[k] for k in ("id", "name", "metadata")
    }
    assert create_key["data"]["after"]["prefix"] == key["prefix"]
    assert (update["data"]["changed"], update["data"]["after"]["rpm"]) == (["rpm", "updated_at"], 77)
    assert rotate["data"]["after"]["prefix"] == rotated["prefix"] != key["prefix"]
    assert revoke["data"]["before"]["revoked_at"] is None and revoke["data"]["after"]["revoked_at"] is not None
    assert [r["seq"] for r in mine] == sorted(r["seq"] for r in mine)

    # no secret anywhere in the trail: not the keys, not their hashes, not the field names
    full = root.call("GET", "/audit", limit=1000)
    assert full.status_code == 200
    hasher = KeyHasher(MASTER_KEY.encode())
    for secret in (key["key"], rotated["key"], admin_key["key"]):
        assert secret not in full.text and hasher.hash(secret) not in full.text
    assert "key_hash" not in full.text and "previous_hash" not in full.text and MASTER_KEY not in full.text

    # filters
    assert [r["target"] for r in audit(root, action="key.create", team_id=team["id"])] == [key["id"]]
    assert {r["action"] for r in audit(root, actor=admin_key["id"])} == {"key.rotate", "team.update", "key.revoke"}
    assert [r["action"] for r in audit(root, target=team["id"])] == ["team.create", "team.update"]
    assert audit(root, **{"from": "2999-01-01T00:00:00Z"}) == []
    stamp = rotate["created_at"]
    assert [r["action"] for r in audit(root, team_id=team["id"], kind="admin", to=stamp)] == [
        "team.create",
        "key.create",
    ]


def test_who_may_read_the_trail(root: Admin) -> None:
    team = root.team()
    member = root.key(team["id"])
    auditor = Admin(root.client, root.key(None, role="auditor")["key"])
    team_admin = Admin(root.client, root.key(team["id"], role="team_admin")["key"])
    seen = auditor.ok("GET", "/audit", team_id=team["id"])["data"]
    assert [r["action"] for r in seen] == ["team.create", "key.create", "key.create"]
    assert_error(Admin(root.client, member["key"]).call("GET", "/audit"), 403, "permission_denied")
    assert_error(team_admin.call("GET", "/audit", team_id=team["id"]), 403, "permission_denied")
    assert_error(Admin(root.client, None).call("GET", "/audit"), 401, "invalid_api_key")
    assert_error(root.call("GET", "/audit", cursor="not-ours"), 400, "invalid_value", "cursor")
    assert_error(root.call("GET", "/audit", kind="login"), 400, "invalid_value", "kind")


def test_verify_accepts_the_chain_the_server_wrote(root: Admin, served: Served, tmp_path: Path) -> None:
    root.team()
    everything = root.ok("GET", "/audit", limit=1000)["data"]
    done = run_cli("audit", "verify", env={"FERROGATE_DATABASE_URL": served.database_url})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"ok: {len(everything)} records, head ") and len(everything) >= 1
    assert done.stdout.strip().endswith(everything[-1]["hash"])


def test_data_plane_requests_are_audited(root: Admin, served: Served) -> None:
    """Each chat request of a key becomes one ``request`` record (ids, status, tokens); refusals too."""
    team = root.team()
    key = root.key(team["id"])
    url = f"{served.gateway.url}/v1/chat/completions"
    auth = {"authorization": f"Bearer {key['key']}"}
    ok = httpx.post(url, json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]}, headers=auth)
    missing = httpx.post(url, json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, headers=auth)
    assert (ok.status_code, missing.status_code) == (200, 404)
    deadline = time.monotonic() + 10  # written in batches every 0.5 s
    while len(records := audit(root, kind="request", team_id=team["id"])) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(records) == 2
    assert {(r["action"], r["actor"]) for r in records} == {("chat.completions", key["id"])}
    by_status = {r["data"]["status"]: r["data"] for r in records}
    assert set(by_status) == {200, 404}
    usage = ok.json()["usage"]
    assert (by_status[200]["prompt_tokens"], by_status[200]["completion_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert key["key"] not in str(records)
