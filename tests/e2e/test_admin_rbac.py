"""RBAC of the admin plane: every route of the table, called with every kind of credential,
answers as :data:`ferrogate.admin.rbac.GRANTS` says; team admins see only their own team.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ferrogate.admin.api import OPENAPI_PATH
from ferrogate.admin.rbac import GRANTS, Permission, Role, allowed
from ferrogate.admin.routes import ROUTES
from ferrogate.admin.table import AdminRoute
from tests.e2e.test_admin_api import MASTER_KEY, Admin, assert_error, bearer, chat, running_gateway, unique
from tests.support import Gateway

# credential name -> the role it speaks for (None: no usable credential, expect 401)
CREDENTIALS: dict[str, Role | None] = {
    "master": Role.ADMIN,
    "admin_key": Role.ADMIN,
    "team_admin_key": Role.TEAM_ADMIN,
    "auditor_key": Role.AUDITOR,
    "member_key": Role.MEMBER,
    "unknown_key": None,
    "none": None,
}


@dataclass
class World:
    """Team A (with the scoped credentials) and team B, made with the master key."""

    root: Admin
    team_a: dict[str, Any]
    team_b: dict[str, Any]
    secrets: dict[str, str | None]
    user_b: dict[str, Any]
    key_b: dict[str, Any]
    key_ids: dict[str, str]
    mcp_server: str = ""  # the MCP server concrete_path made last (a PUT's body names it)

    def as_(self, name: str) -> Admin:
        return Admin(self.root.client, self.secrets[name])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("admin-rbac"), "sqlite", "admin_rbac") as gw:
        yield gw


@pytest.fixture(scope="module")
def world(gateway: Gateway) -> Iterator[World]:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        root = Admin(client, MASTER_KEY)
        team_a, team_b = root.team(), root.team()
        made = {
            "admin_key": root.key(None, role="admin"),
            "team_admin_key": root.key(team_a["id"], role="team_admin"),
            "auditor_key": root.key(None, role="auditor"),
            "member_key": root.key(team_a["id"]),
        }
        root.user(team_a["id"])
        root.key(team_a["id"])
        secrets: dict[str, str | None] = {name: k["key"] for name, k in made.items()}
        secrets |= {"master": MASTER_KEY, "unknown_key": "fg-" + "u" * 43, "none": None}
        user_b = root.user(team_b["id"])
        key_b = root.key(team_b["id"], user_id=user_b["id"])
        yield World(root, team_a, team_b, secrets, user_b, key_b, {n: k["id"] for n, k in made.items()})


# ---- the table itself ----------------------------------------------------------------------


def test_every_route_declares_a_permission_admin_holds() -> None:
    assert len(ROUTES) >= 19
    for route in ROUTES:
        assert isinstance(route.permission, Permission), route
        assert route.permission is not Permission.PUBLIC, f"{route.method} {route.path} would need no credential"
        assert allowed(Role.ADMIN, route.permission), route
        assert route.path.startswith("/admin/v1/"), route
    pairs = [(r.method, r.path) for r in ROUTES]
    assert len(pairs) == len(set(pairs)), "a (method, path) is declared twice"
    assert ("GET", OPENAPI_PATH) not in pairs


def test_grants_cover_every_role_and_deny_writes_to_readers() -> None:
    assert set(GRANTS) == set(Role)
    assert GRANTS[Role.ADMIN] == frozenset(Permission)
    for role in Role:
        assert Permission.PUBLIC in GRANTS[role]
    writes = {p for p in Permission if p.value.endswith(":write")}
    assert not writes & GRANTS[Role.AUDITOR]
    assert GRANTS[Role.MEMBER] == {Permission.PUBLIC}
    assert Permission.TEAMS_WRITE not in GRANTS[Role.TEAM_ADMIN]
    # every route's permission is held by the admin; non-admin roles hold some of them
    used = {r.permission for r in ROUTES}
    assert used & GRANTS[Role.TEAM_ADMIN] and not used & GRANTS[Role.MEMBER]


# ---- the walk ------------------------------------------------------------------------------

OPENAPI_ROUTE = ("GET", OPENAPI_PATH, Permission.PUBLIC)
MCP_URL = "http://127.0.0.1:9/mcp"  # nothing listens: the walk's MCP servers never become ready

# a valid body for every route that takes one (a new route with a body must add one here)
BODIES: dict[tuple[str, str], Callable[[World], dict[str, Any]]] = {
    ("POST", "/admin/v1/teams"): lambda w: {"name": unique("walk")},
    ("PATCH", "/admin/v1/teams/{team_id}"): lambda w: {"metadata": {"walked": True}},
    ("POST", "/admin/v1/users"): lambda w: {"team_id": w.team_a["id"], "name": unique("walk")},
    ("PATCH", "/admin/v1/users/{user_id}"): lambda w: {"name": unique("walk")},
    ("POST", "/admin/v1/keys"): lambda w: {"name": unique("walk"), "team_id": w.team_a["id"]},
    ("PATCH", "/admin/v1/keys/{key_id}"): lambda w: {"name": unique("walk")},
    ("POST", "/admin/v1/keys/{key_id}/rotate"): lambda w: {"grace_period_s": 0},
    ("PUT", "/admin/v1/guardrails"): lambda w: {"responses": False},
    ("PUT", "/admin/v1/teams/{team_id}/guardrails"): lambda w: {"responses": False},
    ("PUT", "/admin/v1/keys/{key_id}/guardrails"): lambda w: {"responses": False},
    ("PUT", "/admin/v1/llm/upstreams/{name}"): lambda w: {"name": "walk-upstream", "provider": "mock"},
    ("PUT", "/admin/v1/llm/model_groups/{name}"): lambda w: {
        "name": "walk-group",
        "deployments": [{"upstream": "mock"}],
    },
    ("PUT", "/admin/v1/llm/rules"): lambda w: {"text": ""},
    ("POST", "/admin/v1/llm/route"): lambda w: {"model": "mock"},
    ("POST", "/admin/v1/mcp/servers"): lambda w: {"id": unique("walk"), "transport": "http", "url": MCP_URL},
    ("PUT", "/admin/v1/mcp/servers/{id}"): lambda w: {"id": w.mcp_server, "transport": "http", "url": MCP_URL},
    ("POST", "/admin/v1/mcp/policies/{team_id}"): lambda w: {"allow": ["walk-*/*"]},
}


def concrete_path(world: World, route: AdminRoute) -> str:
    """The route's path with fresh objects of team A (so a permitted call succeeds, even a delete)."""
    path = route.path.replace("{team_id}", world.team_a["id"])
    if "{user_id}" in path:
        path = path.replace("{user_id}", world.root.user(world.team_a["id"])["id"])
    if "{key_id}" in path:
        path = path.replace("{key_id}", world.root.key(world.team_a["id"])["id"])
    # the PUT of an upstream or group comes before its DELETE in the table: a permitted DELETE finds it
    path = path.replace("{name}", "walk-upstream" if "/upstreams/" in path else "walk-group")
    if "{id}" in path:  # a fresh MCP server of its own (a permitted DELETE drops it)
        world.mcp_server = unique("walk")
        world.root.ok("POST", "/mcp/servers", {"id": world.mcp_server, "transport": "http", "url": MCP_URL}, 201)
        path = path.replace("{id}", world.mcp_server)
    if "/mcp/policies/" in path:  # team A's tool policy exists (a permitted GET finds it, a DELETE drops it)
        world.root.ok("POST", f"/mcp/policies/{world.team_a['id']}", {"allow": ["walk-*/*"]})
    assert "{" not in path, f"the walk cannot fill {route.path}"
    return path


def success_status(route: AdminRoute) -> int:
    if (route.method, route.path) == ("DELETE", "/admin/v1/teams/{team_id}"):
        return 409  # team A still has users and keys: refused for that, not for permission
    if (route.method, route.path) == ("POST", "/admin/v1/mcp/servers/{id}/approve"):
        return 409  # the server has listed no tools (nothing listens at MCP_URL): refused for that
    return route.status


@pytest.mark.parametrize("credential", list(CREDENTIALS))
def test_every_route_with_every_credential(world: World, credential: str) -> None:
    role = CREDENTIALS[credential]
    caller = world.as_(credential)
    walked: list[tuple[str, str]] = []
    wrong: list[str] = []
    for route in ROUTES:
        path = concrete_path(world, route)  # before the body: a PUT's body names the object the path made
        body = BODIES[(route.method, route.path)](world) if route.request is not None else None
        resp = caller.client.request(route.method, path, json=body, headers=bearer(caller.credential))
        if role is None:
            expected = 401
        elif allowed(role, route.permission):
            expected = success_status(route)
        else:
            expected = 403
        if resp.status_code != expected:
            wrong.append(
                f"{route.method} {route.path} ({route.permission}): got {resp.status_code}, "
                f"expected {expected}: {resp.text[:150]}"
            )
        elif expected in (401, 403):
            assert_error(resp, expected, "invalid_api_key" if expected == 401 else "permission_denied")
        walked.append((route.method, route.path))
    method, path, _ = OPENAPI_ROUTE
    resp = caller.client.request(method, path, headers=bearer(caller.credential))
    if resp.status_code != 200:
        wrong.append(f"{method} {path} (public): {resp.status_code}")
    walked.append((method, path))
    assert wrong == []
    assert len(walked) == len(set(walked)) == len(ROUTES) + 1


# ---- admin credentials ---------------------------------------------------------------------


def test_revoked_or_expired_admin_key_is_401_at_once(world: World) -> None:
    for role, live_status in (("admin", 200), ("auditor", 403)):
        key = world.root.key(None, role=role)
        caller = Admin(world.root.client, key["key"])
        assert caller.call("GET", "/teams").status_code == live_status
        world.root.ok("POST", f"/keys/{key['id']}/revoke")
        assert_error(caller.call("GET", "/teams"), 401, "invalid_api_key")
    key = world.root.key(None, role="admin")
    caller = Admin(world.root.client, key["key"])
    assert caller.call("GET", "/teams").status_code == 200
    world.root.ok("PATCH", f"/keys/{key['id']}", {"expires_at": "2001-01-01T00:00:00Z"})
    assert_error(caller.call("GET", "/teams"), 401, "invalid_api_key")


def test_rotated_admin_key_uses_the_new_secret(world: World) -> None:
    key = world.root.key(None, role="admin")
    new = world.root.ok("POST", f"/keys/{key['id']}/rotate", {"grace_period_s": 0})
    assert Admin(world.root.client, new["key"]).call("GET", "/teams").status_code == 200
    assert_error(Admin(world.root.client, key["key"]).call("GET", "/teams"), 401, "invalid_api_key")


@pytest.mark.parametrize("credential", ["admin_key", "team_admin_key", "auditor_key"])
def test_admin_keys_do_not_work_on_the_data_plane(world: World, credential: str) -> None:
    secret = world.secrets[credential]
    assert secret is not None
    assert_error(chat(world.root.client, secret), 401, "invalid_api_key")


# ---- team_admin scoping --------------------------------------------------------------------


def test_team_admin_gets_404_for_another_teams_objects(world: World) -> None:
    ta = world.as_("team_admin_key")
    user_b, key_b, team_b = world.user_b["id"], world.key_b["id"], world.team_b["id"]
    cases = [
        ("GET", f"/teams/{team_b}", None, "team_id"),
        ("GET", f"/users/{user_b}", None, "user_id"),
        ("PATCH", f"/users/{user_b}", {"name": "stolen"}, "user_id"),
        ("DELETE", f"/users/{user_b}", None, "user_id"),
        ("GET", f"/keys/{key_b}", None, "key_id"),
        ("PATCH", f"/keys/{key_b}", {"name": "stolen"}, "key_id"),
        ("POST", f"/keys/{key_b}/revoke", None, "key_id"),
        ("POST", f"/keys/{key_b}/rotate", {}, "key_id"),
        ("DELETE", f"/keys/{key_b}", None, "key_id"),
        # an admin-role key of its own team is not its to see either
        ("GET", f"/keys/{world.key_ids['team_admin_key']}", None, "key_id"),
    ]
    for method, path, body, param in cases:
        assert_error(ta.call(method, path, body), 404, "not_found", param)
    # nothing of team B changed
    assert world.root.ok("GET", f"/users/{user_b}") == world.user_b
    key = world.root.ok("GET", f"/keys/{key_b}")
    assert (key["name"], key["revoked_at"], key["prefix"]) == (world.key_b["name"], None, world.key_b["prefix"])
    assert chat(world.root.client, world.key_b["key"]).status_code == 200


def test_team_admin_creates_only_member_keys_and_users_in_its_team(world: World) -> None:
    ta = world.as_("team_admin_key")
    a, b = world.team_a["id"], world.team_b["id"]
    assert_error(ta.call("POST", "/keys", {"name": "x", "team_id": b}), 403, "permission_denied")
    for role in ("admin", "team_admin", "auditor"):
        assert_error(ta.call("POST", "/keys", {"name": "x", "role": role}), 403, "permission_denied")
        assert_error(ta.call("POST", "/keys", {"name": "x", "team_id": a, "role": role}), 403, "permission_denied")
    assert_error(ta.call("POST", "/users", {"team_id": b, "name": "x"}), 403, "permission_denied")
    assert_error(ta.call("POST", "/users", {"team_id": a, "name": "x", "role": "admin"}), 403, "permission_denied")
    mine = ta.ok("POST", "/users", {"team_id": a, "name": unique("u")}, status=201)
    assert_error(ta.call("PATCH", f"/users/{mine['id']}", {"role": "auditor"}), 403, "permission_denied")
    assert ta.ok("PATCH", f"/users/{mine['id']}", {"role": "team_admin"})["role"] == "team_admin"
    key = ta.ok("POST", "/keys", {"name": unique("k")}, status=201)  # team defaults to its own
    assert (key["team_id"], key["role"]) == (a, "member")
    assert chat(world.root.client, key["key"]).status_code == 200
    # nothing was created in team B
    assert [k["id"] for k in world.root.ok("GET", "/keys", team_id=b)["data"]] == [world.key_b["id"]]
    assert [u["id"] for u in world.root.ok("GET", "/users", team_id=b)["data"]] == [world.user_b["id"]]


def test_team_admin_lists_only_its_team(world: World) -> None:
    ta = world.as_("team_admin_key")
    a, b = world.team_a["id"], world.team_b["id"]
    keys = ta.ok("GET", "/keys")["data"]
    assert keys and {k["team_id"] for k in keys} == {a}
    assert {k["role"] for k in keys} == {"member"}  # its own and other admin keys are not listed
    all_a = world.root.ok("GET", "/keys", team_id=a, role="member", limit=1000)["data"]
    assert {k["id"] for k in keys} == {k["id"] for k in all_a}
    assert_error(ta.call("GET", "/keys", team_id=b), 403, "permission_denied")
    assert_error(ta.call("GET", "/keys", role="team_admin"), 403, "permission_denied")
    assert ta.ok("GET", "/keys", role="member")["data"] == keys
    users = ta.ok("GET", "/users")["data"]
    assert users and {u["team_id"] for u in users} == {a}
    assert_error(ta.call("GET", "/users", team_id=b), 403, "permission_denied")
    assert [t["id"] for t in ta.ok("GET", "/teams")["data"]] == [a]
    assert ta.ok("GET", f"/teams/{a}")["id"] == a
    # the admin sees both teams
    everything = {t["id"] for t in world.root.ok("GET", "/teams", limit=1000)["data"]}
    assert {a, b} <= everything


def test_team_admin_cannot_probe_another_teams_users_through_key_creation(world: World) -> None:
    ta = world.as_("team_admin_key")
    theirs = ta.call("POST", "/keys", {"name": "x", "user_id": world.user_b["id"]})
    nobody = ta.call("POST", "/keys", {"name": "x", "user_id": "user_ffffffffffffffff"})
    assert_error(nobody, 404, "not_found", "user_id")
    assert_error(theirs, 404, "not_found", "user_id")
    assert theirs.json()["error"]["message"] == f"user {world.user_b['id']} not found"
    # the admin is told why instead
    err = assert_error(
        world.root.call("POST", "/keys", {"name": "x", "team_id": world.team_a["id"], "user_id": world.user_b["id"]}),
        400,
        "invalid_value",
        "user_id",
    )
    assert world.user_b["id"] in err["message"] and world.team_a["id"] in err["message"]
