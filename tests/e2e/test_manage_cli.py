"""``ferrogate migrate``, ``teams ...`` and ``keys ...`` as a user runs them, against a SQLite file
that a gateway (same file, same master key) then serves from.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from ferrogate.store.migrate import load_migrations
from tests.e2e.test_admin_api import MASTER_KEY, assert_error, chat, run_cli, scratch_postgres, unique
from tests.support import Gateway


class Cli:
    """``ferrogate`` commands on one SQLite file, with the master key."""

    def __init__(self, db: Path) -> None:
        self.url = f"sqlite:///{db}"
        self.env = {"FERROGATE_DATABASE_URL": self.url, "FERROGATE_MASTER_KEY": MASTER_KEY}

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=env or self.env)

    def json(self, *args: str) -> Any:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        assert "key_hash" not in done.stdout and "previous_hash" not in done.stdout
        return orjson.loads(done.stdout)

    def lines(self, *args: str) -> list[Any]:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        assert "key_hash" not in done.stdout and "previous_hash" not in done.stdout
        return [orjson.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(tmp_path_factory.mktemp("cli") / "store.db")


@pytest.fixture(scope="module")
def team(cli: Cli) -> dict[str, Any]:
    name = unique("cli-team")
    made: dict[str, Any] = cli.json("teams", "create", "--name", name)
    assert made["name"] == name and made["id"].startswith("team_") and made["allowed_models"] == ["*"]
    return made


@pytest.fixture(scope="module")
def gateway(cli: Cli, team: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("cli-gateway")
    gw = Gateway(tmp, None, dev=False, env={"FERROGATE_MASTER_KEY": MASTER_KEY}, database_url=cli.url).wait_ready()
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as c:
        yield c


def test_migrate_prints_the_schema_version(tmp_path: Path) -> None:
    env = {"FERROGATE_DATABASE_URL": f"sqlite:///{tmp_path}/fresh.db"}
    versions = [m.version for m in load_migrations("sqlite")]
    first = run_cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"schema at version {versions[-1]} (applied now: {versions})"
    again = run_cli("migrate", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"schema at version {versions[-1]} (applied now: none)"


def test_teams_list_shows_created_teams(cli: Cli, team: dict[str, Any]) -> None:
    other = cli.json("teams", "create", "--name", unique("cli-other"), "--models", "mock", "gpt-4o*")
    assert other["allowed_models"] == ["mock", "gpt-4o*"]
    listed = {t["id"]: t for t in cli.lines("teams", "list")}
    assert listed[team["id"]]["name"] == team["name"]
    assert listed[other["id"]]["allowed_models"] == ["mock", "gpt-4o*"]


def refused_within(client: httpx.Client, key: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (resp := chat(client, key)).status_code == 200:
        assert time.monotonic() < deadline, f"key still accepted after {seconds}s"
        time.sleep(0.1)
    assert_error(resp, 401, "invalid_api_key")


def test_cli_keys_work_on_a_gateway_over_the_same_store(cli: Cli, team: dict[str, Any], client: httpx.Client) -> None:
    key = cli.json("keys", "create", "--name", "k", "--team", team["id"])
    assert key["key"].startswith("fg-") and key["key"].startswith(key["prefix"])
    assert (key["name"], key["team_id"], key["role"], key["revoked_at"]) == ("k", team["id"], "member", None)
    assert chat(client, key["key"]).status_code == 200
    # the admin API (master key) sees the CLI's key
    got = client.get(f"/admin/v1/keys/{key['id']}", headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert got.status_code == 200 and got.json()["prefix"] == key["prefix"]

    listed = cli.lines("keys", "list", "--team", team["id"])
    assert key["id"] in {k["id"] for k in listed}
    assert all("key" not in k and k["team_id"] == team["id"] for k in listed)

    rotated = cli.json("keys", "rotate", key["id"])
    assert rotated["id"] == key["id"] and rotated["key"].startswith("fg-") and rotated["key"] != key["key"]
    assert rotated["previous_expires_at"] is not None
    assert chat(client, rotated["key"]).status_code == 200
    assert chat(client, key["key"]).status_code == 200  # 24 h of grace by default

    revoked = cli.json("keys", "revoke", key["id"])
    assert revoked["id"] == key["id"] and revoked["revoked_at"] is not None
    # another process revoked it: the gateway's cache lets it through for at most its TTL (1 s)
    refused_within(client, rotated["key"], 3.0)
    assert_error(chat(client, key["key"]), 401, "invalid_api_key")


def test_cli_admin_key_reaches_the_admin_api(cli: Cli, client: httpx.Client) -> None:
    key = cli.json("keys", "create", "--name", "ops", "--role", "auditor")
    assert (key["role"], key["team_id"]) == ("auditor", None)
    headers = {"Authorization": f"Bearer {key['key']}"}
    assert_error(client.get("/admin/v1/teams", headers=headers), 403, "permission_denied")  # a live auditor key
    assert client.get("/admin/v1/openapi.json", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("keys", "create", "--name", "k", "--team", "team_nope0000000000"), "team_nope0000000000"),
        (("keys", "create", "--name", "k"), "team"),
        (("keys", "revoke", "key_nope0000000000"), "key_nope0000000000"),
        (("keys", "rotate", "key_nope0000000000"), "key_nope0000000000"),
    ],
)
def test_bad_input_exits_1_naming_it(cli: Cli, team: dict[str, Any], args: tuple[str, ...], named: str) -> None:
    done = cli.run(*args)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.startswith("ferrogate: ") and named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_duplicate_team_and_missing_master_key_exit_1(cli: Cli, team: dict[str, Any]) -> None:
    dup = cli.run("teams", "create", "--name", team["name"])
    assert dup.returncode == 1 and team["name"] in dup.stderr and "Traceback" not in dup.stderr
    keyless = cli.run("keys", "create", "--name", "k", "--team", team["id"], env={"FERROGATE_DATABASE_URL": cli.url})
    assert keyless.returncode == 1 and "FERROGATE_MASTER_KEY" in keyless.stderr
    assert "Traceback" not in keyless.stderr and keyless.stdout == ""


def test_commands_refuse_a_postgres_schema_behind_the_code() -> None:
    """A PostgreSQL store one migration behind: changes are refused before anything is written."""
    with scratch_postgres("cli_behind") as url:

        async def roll_back_audit() -> None:
            conn = await asyncpg.connect(url, timeout=5)
            try:
                await conn.execute("DROP TABLE audit_log; DELETE FROM schema_migrations WHERE version = 4")
            finally:
                await conn.close()

        asyncio.run(roll_back_audit())
        env = {"FERROGATE_DATABASE_URL": url, "FERROGATE_MASTER_KEY": MASTER_KEY}
        done = run_cli("teams", "create", "--name", "late", env=env)
        assert done.returncode == 1
        assert "run `ferrogate migrate`" in done.stderr
        assert done.stdout == ""

        async def teams() -> int:
            conn = await asyncpg.connect(url, timeout=5)
            try:
                return int(await conn.fetchval("SELECT COUNT(*) FROM teams"))
            finally:
                await conn.close()

        assert asyncio.run(teams()) == 0
