"""The admin plane end to end, on a SQLite file and on PostgreSQL: teams, users and keys through
``/admin/v1/*`` with the master key, and the keys' effect on the data plane.

The helpers here (an admin client, the scratch PostgreSQL database, the error-shape check) are
shared with the other ``test_admin_*`` modules.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from tests.support import Gateway

MASTER_KEY = "admin-e2e-master-key-0123456789"
UPSTREAM_API_KEY = "sk-e2e-upstream-secret-never-shown"
# the default config plus an OpenAI upstream keyed with UPSTREAM_API_KEY (never called here)
GATEWAY_ENV = {"FERROGATE_MASTER_KEY": MASTER_KEY, "OPENAI_API_KEY": UPSTREAM_API_KEY}
PG_URL = os.environ.get("FERROGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CHAT = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
ERROR_FIELDS = {"message", "type", "param", "code"}


# ---- shared helpers ------------------------------------------------------------------------


def unique(label: str) -> str:
    return f"{label}-{secrets.token_hex(4)}"


def assert_error(resp: httpx.Response, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    """``resp`` is an OpenAI-shaped error with this status, code and param; returns the error object."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"error"}, body
    err: dict[str, Any] = body["error"]
    assert set(err) == ERROR_FIELDS, err
    assert err["code"] == code, err
    assert err["param"] == param, err
    assert isinstance(err["message"], str) and err["message"], err
    return err


def bearer(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


def chat(client: httpx.Client, key: str) -> httpx.Response:
    return client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))


class Admin:
    """Admin calls with one credential; ``ok`` asserts the status and returns the JSON body."""

    def __init__(self, client: httpx.Client, credential: str | None) -> None:
        self.client = client
        self.credential = credential

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        return self.client.request(
            method, f"/admin/v1{path}", json=body, params=params or None, headers=bearer(self.credential)
        )

    def ok(self, method: str, path: str, body: Any = None, status: int = 200, **params: Any) -> Any:
        resp = self.call(method, path, body, **params)
        assert resp.status_code == status, resp.text
        return resp.json()

    def team(self, **fields: Any) -> dict[str, Any]:
        return self.ok("POST", "/teams", {"name": unique("team"), **fields}, status=201)  # type: ignore[no-any-return]

    def user(self, team_id: str, **fields: Any) -> dict[str, Any]:
        body = {"team_id": team_id, "name": unique("user"), **fields}
        return self.ok("POST", "/users", body, status=201)  # type: ignore[no-any-return]

    def key(self, team_id: str | None, **fields: Any) -> dict[str, Any]:
        body = {"name": unique("key"), "team_id": team_id, **fields}
        return self.ok("POST", "/keys", body, status=201)  # type: ignore[no-any-return]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m ferrogate ARGS`` with only the given FERROGATE_* variables."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("FERROGATE_", "OPENAI_"))}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ferrogate", *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=30
    )


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def scratch_postgres(label: str) -> Iterator[str]:
    """A new, migrated PostgreSQL database (``ferrogate migrate``), dropped afterwards; skips if unreachable."""
    name = f"fg_{label}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL at {PG_URL} is unavailable: {exc}")
    url = urlunsplit(urlsplit(PG_URL)._replace(path=f"/{name}"))
    try:
        done = run_cli("migrate", env={"FERROGATE_DATABASE_URL": url})
        assert done.returncode == 0, done.stderr
        assert "schema at version" in done.stdout
        yield url
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def running_gateway(tmp: Path, backend: str, label: str) -> Iterator[Gateway]:
    """A gateway with real auth (the master key) on a SQLite file or a scratch PostgreSQL database."""
    if backend == "sqlite":
        gw = Gateway(tmp, None, dev=False, env=GATEWAY_ENV).wait_ready()
        try:
            yield gw
        finally:
            gw.stop()
        return
    with scratch_postgres(label) as url:
        gw = Gateway(tmp, None, dev=False, env=GATEWAY_ENV, database_url=url).wait_ready()
        try:
            yield gw
        finally:
            gw.stop()


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp(f"admin-{request.param}"), request.param, "admin_api") as gw:
        yield gw


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as c:
        yield c


@pytest.fixture
def admin(client: httpx.Client) -> Admin:
    return Admin(client, MASTER_KEY)


# ---- tests ---------------------------------------------------------------------------------


def assert_no_secret_fields(body: Any) -> None:
    text = str(body)
    assert "key_hash" not in text and "previous_hash" not in text, body


def test_team_user_key_flow_and_data_plane(admin: Admin, client: httpx.Client) -> None:
    team = admin.team(rpm=100, metadata={"cost_center": "42"})
    assert team["id"].startswith("team_")
    assert (team["rpm"], team["metadata"], team["allowed_models"]) == (100, {"cost_center": "42"}, ["*"])
    user = admin.user(team["id"], email="ada@example.com")
    assert (user["team_id"], user["role"], user["email"]) == (team["id"], "member", "ada@example.com")

    key = admin.key(team["id"], user_id=user["id"])
    assert_no_secret_fields(key)
    assert key["key"].startswith("fg-") and len(key["key"]) > 20
    assert key["prefix"] == key["key"][: len(key["prefix"])] and key["prefix"].startswith("fg-")
    assert len(key["prefix"]) < len(key["key"])
    assert (key["team_id"], key["user_id"], key["role"], key["revoked_at"]) == (team["id"], user["id"], "member", None)

    resp = chat(client, key["key"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["role"] == "assistant"

    got = admin.ok("GET", f"/keys/{key['id']}")
    assert_no_secret_fields(got)
    assert "key" not in got
    assert {k: got[k] for k in ("id", "prefix", "name", "team_id")} == {
        k: key[k] for k in ("id", "prefix", "name", "team_id")
    }
    assert admin.ok("GET", f"/teams/{team['id']}") == team
    assert admin.ok("GET", f"/users/{user['id']}") == user
    users = admin.ok("GET", "/users", team_id=team["id"])
    assert [u["id"] for u in users["data"]] == [user["id"]]


def test_list_keys_paginates_without_gaps_or_duplicates(admin: Admin) -> None:
    team = admin.team()
    created = {admin.key(team["id"])["id"] for _ in range(7)}
    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"team_id": team["id"], "limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = admin.ok("GET", "/keys", **params)
        assert_no_secret_fields(page)
        sizes.append(len(page["data"]))
        seen += [k["id"] for k in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [3, 3, 1]
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == created
    everything = admin.ok("GET", "/keys", team_id=team["id"], limit=1000)
    assert [k["id"] for k in everything["data"]] == seen  # the pages follow the list's order
    assert everything["next_cursor"] is None


def test_list_keys_filters_by_team_and_revoked(admin: Admin) -> None:
    team, other = admin.team(), admin.team()
    mine = [admin.key(team["id"])["id"] for _ in range(4)]
    theirs = admin.key(other["id"])["id"]
    for key_id in mine[:2]:
        assert admin.ok("POST", f"/keys/{key_id}/revoke")["revoked_at"] is not None
    listed = {k["id"] for k in admin.ok("GET", "/keys", team_id=team["id"])["data"]}
    assert listed == set(mine) and theirs not in listed
    revoked = admin.ok("GET", "/keys", team_id=team["id"], revoked="true")["data"]
    assert {k["id"] for k in revoked} == set(mine[:2])
    assert all(k["revoked_at"] is not None for k in revoked)
    live = admin.ok("GET", "/keys", team_id=team["id"], revoked="false")["data"]
    assert {k["id"] for k in live} == set(mine[2:])
    teams = admin.ok("GET", "/teams", name_prefix=team["name"])["data"]
    assert [t["id"] for t in teams] == [team["id"]]


def test_patch_is_partial_and_names_bad_fields(admin: Admin) -> None:
    team = admin.team(rpm=10, tpm=1000, classification="confidential")
    patched = admin.ok("PATCH", f"/teams/{team['id']}", {"rpm": 20})
    assert (patched["rpm"], patched["tpm"], patched["classification"]) == (20, 1000, "confidential")
    assert patched["name"] == team["name"]
    key = admin.key(team["id"], rpm=5)
    k2 = admin.ok("PATCH", f"/keys/{key['id']}", {"name": "renamed", "metadata": {"a": 1}})
    assert (k2["name"], k2["metadata"], k2["rpm"], k2["prefix"]) == ("renamed", {"a": 1}, 5, key["prefix"])

    err = assert_error(
        admin.call("PATCH", f"/teams/{team['id']}", {"bogus_field": 1}), 400, "invalid_value", "bogus_field"
    )
    assert "bogus_field" in err["message"]
    err = assert_error(admin.call("PATCH", f"/keys/{key['id']}", {"rpm": "lots"}), 400, "invalid_value", "rpm")
    assert "rpm" in err["message"]
    err = assert_error(admin.call("PATCH", f"/teams/{team['id']}", {"rpm": 0}), 400, "invalid_value", "rpm")
    assert_error(admin.call("POST", "/teams", {}), 400, "invalid_value", "name")
    resp = admin.client.post("/admin/v1/teams", content=b"{nope", headers=bearer(MASTER_KEY))
    assert_error(resp, 400, "invalid_json")
    # nothing changed by the refused calls
    assert admin.ok("GET", f"/teams/{team['id']}")["rpm"] == 20


def test_duplicate_team_name_is_409_naming_the_field(admin: Admin) -> None:
    team = admin.team()
    err = assert_error(admin.call("POST", "/teams", {"name": team["name"]}), 409, "conflict", "name")
    assert team["name"] in err["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("GET", "/teams/team_0000000000000000", None, "team_id"),
        ("PATCH", "/teams/team_0000000000000000", {"rpm": 1}, "team_id"),
        ("DELETE", "/teams/team_0000000000000000", None, "team_id"),
        ("GET", "/users/user_0000000000000000", None, "user_id"),
        ("DELETE", "/users/user_0000000000000000", None, "user_id"),
        ("GET", "/keys/key_0000000000000000", None, "key_id"),
        ("PATCH", "/keys/key_0000000000000000", {"name": "x"}, "key_id"),
        ("POST", "/keys/key_0000000000000000/revoke", None, "key_id"),
        ("POST", "/keys/key_0000000000000000/rotate", {}, "key_id"),
        ("DELETE", "/keys/key_0000000000000000", None, "key_id"),
    ],
)
def test_unknown_ids_are_404_naming_the_id(admin: Admin, method: str, path: str, body: Any, param: str) -> None:
    err = assert_error(admin.call(method, path, body), 404, "not_found", param)
    assert path.split("/")[2] in err["message"]


def test_references_to_unknown_rows_are_400(admin: Admin) -> None:
    err = assert_error(
        admin.call("POST", "/users", {"team_id": "team_ffffffffffffffff", "name": "x"}), 400, "invalid_value", "team_id"
    )
    assert "team_ffffffffffffffff" in err["message"]
    assert_error(admin.call("POST", "/keys", {"name": "k"}), 400, "invalid_value", "team_id")


def test_delete_refuses_referenced_rows_then_succeeds(admin: Admin) -> None:
    team = admin.team()
    user = admin.user(team["id"])
    key = admin.key(team["id"], user_id=user["id"])
    err = assert_error(admin.call("DELETE", f"/teams/{team['id']}"), 409, "conflict", "id")
    assert team["id"] in err["message"]
    assert_error(admin.call("DELETE", f"/users/{user['id']}"), 409, "conflict", "id")
    assert admin.ok("DELETE", f"/keys/{key['id']}") == {"id": key["id"], "deleted": True}
    assert admin.ok("DELETE", f"/users/{user['id']}") == {"id": user["id"], "deleted": True}
    assert admin.ok("DELETE", f"/teams/{team['id']}") == {"id": team["id"], "deleted": True}
    assert_error(admin.call("GET", f"/teams/{team['id']}"), 404, "not_found", "team_id")


def refused_within(client: httpx.Client, key: str, seconds: float) -> float:
    """Poll the data plane until ``key`` gets 401; returns how long that took."""
    start = time.monotonic()
    while True:
        resp = chat(client, key)
        if resp.status_code == 401:
            assert_error(resp, 401, "invalid_api_key")
            return time.monotonic() - start
        assert resp.status_code == 200, resp.text
        assert time.monotonic() - start < seconds, f"key still accepted after {seconds}s"
        time.sleep(0.05)


def test_revoked_key_is_refused_on_the_data_plane(admin: Admin, client: httpx.Client) -> None:
    team = admin.team()
    key = admin.key(team["id"])
    assert chat(client, key["key"]).status_code == 200
    revoked = admin.ok("POST", f"/keys/{key['id']}/revoke")
    assert revoked["revoked_at"] is not None and revoked["id"] == key["id"]
    assert refused_within(client, key["key"], 1.5) < 1.5
    # revoked keys cannot be rotated back to life
    assert_error(admin.call("POST", f"/keys/{key['id']}/rotate", {}), 409, "conflict", "key_id")


def test_rotate_keeps_old_secret_for_the_grace_period_only(admin: Admin, client: httpx.Client) -> None:
    team = admin.team()
    first = admin.key(team["id"])
    second = admin.ok("POST", f"/keys/{first['id']}/rotate", {"grace_period_s": 60})
    assert_no_secret_fields(second)
    assert second["id"] == first["id"] and second["key"].startswith("fg-") and second["key"] != first["key"]
    assert second["previous_expires_at"] is not None
    assert chat(client, second["key"]).status_code == 200
    assert chat(client, first["key"]).status_code == 200  # grace
    third = admin.ok("POST", f"/keys/{first['id']}/rotate", {"grace_period_s": 0})
    assert chat(client, third["key"]).status_code == 200
    assert_error(chat(client, second["key"]), 401, "invalid_api_key")  # grace 0: refused at once
    assert_error(chat(client, first["key"]), 401, "invalid_api_key")  # two rotations ago
    assert_error(
        admin.call("POST", f"/keys/{first['id']}/rotate", {"grace_period_s": -1}),
        400,
        "invalid_value",
        "grace_period_s",
    )


def test_key_expired_by_patch_is_refused(admin: Admin, client: httpx.Client) -> None:
    team = admin.team()
    key = admin.key(team["id"], expires_at="2999-01-01T00:00:00Z")
    assert chat(client, key["key"]).status_code == 200
    patched = admin.ok("PATCH", f"/keys/{key['id']}", {"expires_at": "2001-01-01T00:00:00Z"})
    assert patched["expires_at"].startswith("2001-01-01")
    assert_error(chat(client, key["key"]), 401, "invalid_api_key")


def test_llm_listings_show_the_config_without_secrets(admin: Admin) -> None:
    resp = admin.call("GET", "/llm/upstreams")
    assert resp.status_code == 200
    assert UPSTREAM_API_KEY not in resp.text
    upstreams = {u["name"]: u for u in resp.json()["data"]}
    assert set(upstreams) == {"mock", "openai"}
    assert (upstreams["mock"]["provider"], upstreams["mock"]["has_api_key"]) == ("mock", False)
    assert (upstreams["openai"]["provider"], upstreams["openai"]["has_api_key"]) == ("openai", True)
    assert all("api_key" not in u for u in upstreams.values())
    groups = {g["name"]: g for g in admin.ok("GET", "/llm/model_groups")["data"]}
    assert groups["mock"]["deployments"] == [{"upstream": "mock", "model": "mock"}]
    assert all(d["upstream"] == "openai" for name, g in groups.items() if name != "mock" for d in g["deployments"])


@pytest.mark.parametrize("header", ["none", "garbage", "unknown-key", "wrong-scheme"])
def test_missing_or_unknown_credential_is_401(client: httpx.Client, header: str) -> None:
    headers = {
        "none": {},
        "garbage": bearer("not-a-key"),
        "unknown-key": bearer("fg-" + "x" * 43),
        "wrong-scheme": {"Authorization": f"Basic {MASTER_KEY}"},
    }[header]
    assert_error(client.get("/admin/v1/teams", headers=headers), 401, "invalid_api_key")


def test_other_credential_headers_carry_the_master_key(client: httpx.Client) -> None:
    for name in ("api-key", "x-api-key"):
        assert client.get("/admin/v1/teams", headers={name: MASTER_KEY}).status_code == 200


def test_data_plane_key_on_admin_route_is_403(admin: Admin, client: httpx.Client) -> None:
    member = admin.key(admin.team()["id"])
    err = assert_error(client.get("/admin/v1/teams", headers=bearer(member["key"])), 403, "permission_denied")
    assert "data-plane" in err["message"]


def test_admin_routing_errors_are_openai_shaped(admin: Admin) -> None:
    resp = admin.call("PUT", "/teams")
    assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["allow"] == "GET, POST"
    assert_error(admin.call("GET", "/nothing"), 404, "not_found")
    assert_error(admin.call("GET", "/keys", bogus="1"), 400, "invalid_value", "bogus")
    assert_error(admin.call("GET", "/keys", limit="0"), 400, "invalid_value", "limit")
