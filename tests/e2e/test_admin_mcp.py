"""MCP servers, tool approvals and team tool policies through the admin API of the real server, on a SQLite file and
on PostgreSQL: credentials sealed in the store (the row read directly), never answered, never audited; the
configuration file's servers read-only (409 ``defined_in_config``); a bad server document or policy glob a 400
naming the field; an unknown team's policy 404; the RBAC matrix (admin, team_admin, auditor, member); live status,
approvals and changed tools through a real stdio MCP server (tests/fakes/mcp_servers.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.test_admin_api import MASTER_KEY, Admin, assert_error, scratch_postgres, unique
from tests.support import Gateway, free_port

TOKEN = "mcp-bearer-token-never-in-clear-0001"  # noqa: S105 (a test value)
HEADER = "mcp-header-value-never-in-clear-0002"
ENV_VALUE = "mcp-env-value-never-in-clear-0003"
CFG_TOKEN = "mcp-config-token-never-shown-0004"  # noqa: S105 (a test value)
SECRETS = (TOKEN, HEADER, ENV_VALUE, CFG_TOKEN)
REPO = Path(__file__).resolve().parents[2]
ENV = {"FERROGATE_MASTER_KEY": MASTER_KEY, "CFG_MCP_TOKEN": CFG_TOKEN}


def fake(name: str, *extra: str) -> dict[str, Any]:
    """A stdio server: the fake MCP server of the tests, started by the gateway's workers."""
    return {
        "id": name,
        "transport": "stdio",
        "command": sys.executable,
        "args": ["-m", "tests.fakes.mcp_servers", "--transport", "stdio", "--name", name, *extra],
        "cwd": str(REPO),
        "env": {"FAKE_MCP_SECRET": ENV_VALUE},
    }


def config(down_port: int) -> str:
    return f"""
mcp:
  servers:
    - id: cfg-down
      title: Nothing listens here
      transport: http
      url: http://127.0.0.1:{down_port}/mcp
      bearer_token: ${{CFG_MCP_TOKEN}}
      headers:
        X-Config-Tenant: ${{CFG_MCP_TOKEN}}
      refresh_s: 60
"""


@dataclass
class World:
    gw: Gateway
    backend: str
    db: str  # the SQLite file, or the PostgreSQL URL

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The store's rows, read directly (not through ferrogate)."""
        if self.backend == "sqlite":
            with sqlite3.connect(self.db) as conn:
                return [tuple(r) for r in conn.execute(sql).fetchall()]

        async def fetch() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(self.db, timeout=5)
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        return asyncio.run(fetch())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"admin-mcp-{request.param}")
    if request.param == "sqlite":
        gw = Gateway(tmp, config(free_port()), env=ENV).wait_ready()
        yield World(gw, "sqlite", str(tmp / f"store-{gw.port}.db"))
        gw.stop()
        return
    with scratch_postgres("admin_mcp") as url:
        gw = Gateway(tmp, config(free_port()), env=ENV, database_url=url).wait_ready()
        yield World(gw, "postgres", url)
        gw.stop()


@pytest.fixture
def root(world: World) -> Iterator[Admin]:
    with httpx.Client(base_url=world.gw.url, timeout=10) as client:
        yield Admin(client, MASTER_KEY)


def until(check: Callable[[], Any], bound_s: float = 15.0) -> Any:
    deadline = time.monotonic() + bound_s
    while not (got := check()):
        assert time.monotonic() < deadline, f"not within {bound_s} s"
        time.sleep(0.05)
    return got


def http_server(server_id: str, **fields: Any) -> dict[str, Any]:
    body = {"id": server_id, "transport": "http", "url": f"http://127.0.0.1:{free_port()}/mcp"}
    return body | {"headers": {"X-Tenant": HEADER}, "bearer_token": TOKEN} | fields


def no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a credential leaked: {text[:300]}"


# ---- without the MCP gateway's wiring: the configuration's servers, validation, lookups --------------------------


def test_listing_shows_the_configurations_servers_without_a_credential(root: Admin) -> None:
    resp = root.call("GET", "/mcp/servers")
    assert resp.status_code == 200, resp.text
    no_secret(resp.text)
    servers = {s["id"]: s for s in resp.json()["data"]}
    down = servers["cfg-down"]
    assert (down["source"], down["transport"], down["title"], down["refresh_s"], down["timeout_s"]) == (
        "config",
        "http",
        "Nothing listens here",
        60.0,
        30.0,
    )
    assert (down["header_names"], down["bearer_token"], down["credentials"], down["env_names"]) == (
        ["X-Config-Tenant"],
        "set",
        "config",
        [],
    )
    assert down["url"].startswith("http://127.0.0.1:") and (down["command"], down["args"]) == (None, None)
    assert (down["updated_at"], down["updated_by"]) == (None, None)
    assert "headers" not in down and root.ok("GET", "/mcp/servers/cfg-down") == down


def test_the_configurations_servers_are_read_only_here(root: Admin) -> None:
    body = http_server("cfg-down")
    for method, path in (("POST", "/mcp/servers"), ("PUT", "/mcp/servers/cfg-down")):
        err = assert_error(root.call(method, path, body), 409, "defined_in_config", "id")
        assert "configuration file" in err["message"]
    assert_error(root.call("DELETE", "/mcp/servers/cfg-down"), 409, "defined_in_config", "id")
    assert root.ok("GET", "/mcp/servers/cfg-down")["source"] == "config"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"id": "no-url", "transport": "http"}, "url"),
        ({"id": "Bad_Id", "transport": "http", "url": "http://h/mcp"}, "id"),
        ({"id": "ftp", "transport": "http", "url": "ftp://h/mcp"}, "url"),
        ({"id": "x", "transport": "carrier-pigeon"}, "transport"),
        ({"id": "x"}, "transport"),
        ({"id": "x", "transport": "stdio"}, "command"),
        ({"id": "x", "transport": "stdio", "command": "c", "env": {"A": 1}}, "env.A"),
        ({"id": "x", "transport": "http", "url": "http://h/mcp", "headers": {"bad header": "v"}}, "headers"),
        ({"id": "x", "transport": "http", "url": "http://h/mcp", "timeout_s": 0}, "timeout_s"),
        ({"id": "x", "transport": "http", "url": "http://h/mcp", "surprise": 1}, "surprise"),
    ],
)
def test_a_bad_server_document_is_a_400_naming_the_field(root: Admin, body: dict[str, Any], param: str) -> None:
    err = assert_error(root.call("POST", "/mcp/servers", body), 400, "invalid_value", param)
    assert err["message"].startswith(f"{param}: ")
    assert body["id"] not in {s["id"] for s in root.ok("GET", "/mcp/servers")["data"]}


def test_unknown_servers_and_teams_are_404(root: Admin) -> None:
    for method in ("GET", "DELETE"):
        assert_error(root.call(method, "/mcp/servers/no-such-server"), 404, "mcp_server_not_found", "id")
    assert_error(root.call("PUT", "/mcp/servers/nope", http_server("nope")), 404, "mcp_server_not_found", "id")
    assert_error(root.call("POST", "/mcp/servers/no-such-server/approve"), 404, "mcp_server_not_found", "id")
    unknown = "team_0000000000000000"
    assert_error(root.call("GET", f"/mcp/policies/{unknown}"), 404, "not_found", "team_id")
    assert_error(root.call("POST", f"/mcp/policies/{unknown}", {"allow": ["*"]}), 404, "not_found", "team_id")
    assert_error(root.call("DELETE", f"/mcp/policies/{unknown}"), 404, "not_found", "team_id")
    team = root.team()
    err = assert_error(root.call("GET", f"/mcp/policies/{team['id']}"), 404, "not_found", "team_id")
    assert "default_policy" in err["message"]


def test_a_policy_with_an_unknown_field_is_a_400(root: Admin) -> None:
    team = root.team()
    assert_error(
        root.call("POST", f"/mcp/policies/{team['id']}", {"allow": ["*"], "alow": []}), 400, "invalid_value", "alow"
    )


# ---- with the MCP gateway wired (AdminService(mcp=...)): writes, sealing, approvals ------------------------------


def test_a_stored_server_keeps_its_credentials_sealed(root: Admin, world: World) -> None:
    sid = unique("sealed")
    made = root.call("POST", "/mcp/servers", http_server(sid, title="Sealed"))
    assert made.status_code == 201, made.text
    no_secret(made.text)
    out = made.json()
    assert (out["id"], out["source"], out["header_names"], out["bearer_token"], out["credentials"]) == (
        sid,
        "store",
        ["X-Tenant"],
        "set",
        "sealed",
    )
    assert (out["title"], out["updated_by"]) == ("Sealed", "master")
    # the row as stored: the document without credentials, the credentials in one AES-GCM token
    [(doc, sealed)] = world.rows(f"SELECT doc, sealed FROM mcp_servers WHERE id = '{sid}'")  # noqa: S608
    assert str(sealed).startswith("v1.") and "X-Tenant" not in str(doc)
    no_secret(str(doc), str(sealed))
    assert_error(root.call("POST", "/mcp/servers", http_server(sid)), 409, "conflict", "id")
    # a PUT replaces it whole: credentials left out are dropped
    replaced = root.ok("PUT", f"/mcp/servers/{sid}", {"id": sid, "transport": "http", "url": "http://h.example/mcp"})
    assert (replaced["header_names"], replaced["bearer_token"], replaced["credentials"]) == ([], None, "none")
    assert world.rows(f"SELECT sealed FROM mcp_servers WHERE id = '{sid}'") == [(None,)]  # noqa: S608
    assert_error(root.call("PUT", f"/mcp/servers/{sid}", http_server("other")), 400, "invalid_value", "id")
    listing = root.call("GET", "/mcp/servers")
    no_secret(listing.text)
    assert sid in {s["id"] for s in listing.json()["data"]}
    assert root.ok("DELETE", f"/mcp/servers/{sid}") == {"id": sid, "deleted": True}
    assert_error(root.call("GET", f"/mcp/servers/{sid}"), 404, "mcp_server_not_found", "id")
    records = root.ok("GET", "/audit", target=sid)["data"]
    assert [r["action"] for r in records] == ["mcp.server.create", "mcp.server.update", "mcp.server.delete"]
    no_secret(str(records))
    created = records[0]["data"]["after"]
    assert (created["id"], created["headers"], "bearer_token" in created) == (sid, ["X-Tenant"], False)
    assert records[2]["data"]["after"] is None and records[2]["data"]["before"]["url"] == "http://h.example/mcp"


def test_policies_are_set_read_replaced_and_dropped(root: Admin) -> None:
    team = root.team()
    path = f"/mcp/policies/{team['id']}"
    doc = {"allow": ["cfg-down/*", "fake-*/echo"], "deny": ["*/delete_*"], "tool_calls_per_minute": 30}
    set_ = root.ok("POST", path, doc)
    assert (set_["team_id"], set_["policy"]["allow"], set_["policy"]["deny"], set_["updated_by"]) == (
        team["id"],
        doc["allow"],
        doc["deny"],
        "master",
    )
    assert set_["policy"]["tool_calls_per_minute"] == 30 and set_["version"] >= 1
    assert root.ok("GET", path) == set_
    narrowed = {"allow": ["*"], "keys": {"key_0123456789abcdef": {"allow": ["cfg-down/read"]}}}
    again = root.ok("POST", path, narrowed)
    assert (again["policy"]["allow"], again["policy"]["deny"], again["version"]) == (["*"], [], set_["version"] + 1)
    assert again["policy"]["keys"]["key_0123456789abcdef"]["allow"] == ["cfg-down/read"]
    assert root.ok("DELETE", path) == {"id": team["id"], "deleted": True}
    assert_error(root.call("GET", path), 404, "not_found", "team_id")
    assert_error(root.call("DELETE", path), 404, "not_found", "team_id")
    records = root.ok("GET", "/audit", target=team["id"], action="mcp.policy.update")["data"]
    assert [r["data"]["after"]["allow"] for r in records] == [doc["allow"], ["*"]]
    assert records[0]["team_id"] == team["id"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"allow": ["github/*", "bad glob!"]}, "allow.1"),
        ({"allow": ["*"], "deny": [""]}, "deny.0"),
        ({"keys": {"key_0123456789abcdef": {"deny": ["a b"]}}}, "keys.key_0123456789abcdef.deny.0"),
        ({"allow": ["*"], "tool_calls_per_minute": 0}, "tool_calls_per_minute"),
    ],
)
def test_a_bad_policy_is_a_400_naming_the_field(root: Admin, body: dict[str, Any], param: str) -> None:
    team = root.team()
    err = assert_error(root.call("POST", f"/mcp/policies/{team['id']}", body), 400, "invalid_value", param)
    assert err["message"].startswith(f"{param}: ")
    assert_error(root.call("GET", f"/mcp/policies/{team['id']}"), 404, "not_found", "team_id")


def test_the_rbac_matrix(root: Admin) -> None:
    team, other = root.team(), root.team()
    root.ok("POST", f"/mcp/policies/{other['id']}", {"allow": ["*"]})
    callers = {
        "admin": Admin(root.client, root.key(None, role="admin")["key"]),
        "team_admin": Admin(root.client, root.key(team["id"], role="team_admin")["key"]),
        "auditor": Admin(root.client, root.key(None, role="auditor")["key"]),
        "member": Admin(root.client, root.key(team["id"])["key"]),
    }
    readers = {"admin", "team_admin", "auditor"}
    for name, caller in callers.items():
        read = 200 if name in readers else 403
        assert caller.call("GET", "/mcp/servers").status_code == read, name
        assert caller.call("GET", "/mcp/servers/cfg-down").status_code == read, name
        assert caller.call("GET", "/mcp/tools/changed").status_code == read, name
        own = caller.call("GET", f"/mcp/policies/{other['id']}")
        assert own.status_code == (404 if name == "team_admin" else read), (name, own.text)  # another team's: unseen
        sid = unique(f"rbac-{name.replace('_', '-')}")
        made = caller.call("POST", "/mcp/servers", http_server(sid))
        put = caller.call("POST", f"/mcp/policies/{team['id']}", {"allow": [f"{sid}/*"]})
        if name == "admin":
            assert (made.status_code, put.status_code) == (201, 200), (made.text, put.text)
            assert caller.ok("DELETE", f"/mcp/servers/{sid}")["deleted"] is True
            continue
        assert_error(made, 403, "permission_denied")
        assert_error(put, 403, "permission_denied")
        for method, path in (
            ("DELETE", "/mcp/servers/cfg-down"),
            ("POST", "/mcp/servers/cfg-down/approve"),
            ("DELETE", f"/mcp/policies/{other['id']}"),
        ):
            assert_error(caller.call(method, path), 403, "permission_denied")
    assert root.ok("GET", f"/mcp/policies/{other['id']}")["policy"]["allow"] == ["*"]  # nothing a reader did stuck


def test_live_status_approval_and_changed_tools(root: Admin, world: World) -> None:
    sid = unique("fake")
    made = root.ok("POST", "/mcp/servers", fake(sid), status=201)
    assert (made["env_names"], made["command"], made["credentials"]) == (["FAKE_MCP_SECRET"], sys.executable, "sealed")

    def ready() -> dict[str, Any] | None:
        status = root.ok("GET", f"/mcp/servers/{sid}")["status"]
        return status if status is not None and status["state"] == "ready" else None

    status = until(ready)
    assert status["tools"] >= 5 and status["flagged"] == []
    down = root.ok("GET", "/mcp/servers/cfg-down")["status"]
    assert down["state"] in ("connecting", "unavailable") and CFG_TOKEN not in str(down)
    approval = root.ok("POST", f"/mcp/servers/{sid}/approve")
    assert {"echo", "add"} <= set(approval["pins"]) and approval["cleared"] == []
    assert all(len(h) == 64 for h in approval["pins"].values())
    # the upstream changes echo's description: flagged until approved again
    root.ok("PUT", f"/mcp/servers/{sid}", fake(sid, "--variant", "changed"))

    def flagged() -> list[dict[str, Any]]:
        return [t for t in root.ok("GET", "/mcp/tools/changed")["data"] if t["server_id"] == sid]

    [change] = until(flagged)
    assert (change["tool"], change["approved_hash"]) == ("echo", approval["pins"]["echo"])
    assert change["seen_hash"] != change["approved_hash"]
    assert root.ok("GET", f"/mcp/servers/{sid}")["status"]["flagged"] == ["echo"]
    again = root.ok("POST", f"/mcp/servers/{sid}/approve")
    assert (again["cleared"], again["pins"]["echo"]) == (["echo"], change["seen_hash"])
    until(lambda: flagged() == [])
    [(hash_,)] = world.rows(f"SELECT hash FROM mcp_pins WHERE server_id = '{sid}' AND tool = 'echo'")  # noqa: S608
    assert hash_ == change["seen_hash"]
    records = root.ok("GET", "/audit", target=sid, action="mcp.server.approve", actor="master")["data"]
    assert [r["data"]["cleared"] for r in records] == [[], ["echo"]]
    assert records[1]["data"]["after"]["echo"] == change["seen_hash"]
    no_secret(str(root.ok("GET", "/audit", target=sid)["data"]))
    root.ok("DELETE", f"/mcp/servers/{sid}")
    assert world.rows(f"SELECT tool FROM mcp_pins WHERE server_id = '{sid}'") == []  # noqa: S608
