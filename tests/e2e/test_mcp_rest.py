"""The MCP tool gateway as plain REST (``/mcp/v1/*``) for any HTTP client, and changes made while it runs.

``GET /mcp/v1/servers`` lists the servers a key may use a tool of, ``GET /mcp/v1/servers/{id}/tools`` their tools
(upstream names), ``POST /mcp/v1/servers/{id}/tools/{name}:call`` calls one: its arguments checked against the
tool's ``inputSchema`` first (400 naming the field); an unknown server or tool is a 404, a tool the key may not
use a 403, no key a 401, a body that is not JSON a 400, all OpenAI-shaped. A server added through the admin API
shows in ``/mcp`` listings within about a second, and so does a changed tool policy.

Upstreams: ``files`` (stdio) and ``docs`` (HTTP, 2026-07-28); ``extra`` (HTTP, 2025-11-25) is running but only
added through the admin API by a test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.mcp_support import (
    World,
    call_rest,
    http_server,
    new_key,
    new_team,
    rest,
    rpc,
    running,
    set_policy,
    start_fakes,
    stdio_server,
    until,
)
from tests.e2e.test_admin_api import assert_error
from tests.support import admin

TOOLS = {"echo", "add", "slow", "cancelled", "fail", "refuse", "secret", "inject", "crash", "headers", "mutate"}
POLICY_A = {"allow": ["files/*", "docs/echo", "extra/*"], "deny": ["files/crash"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("mcp-rest")
    fakes = start_fakes({"docs": ("modern", {"name": "docs"}), "extra": ("legacy", {"name": "extra"})})
    servers = [stdio_server("files"), http_server("docs", fakes["docs"], title="The docs")]
    with running(tmp, fakes, servers) as w:
        team_a, team_b = new_team(w.gw, "rest-a"), new_team(w.gw, "rest-b")
        w.tenants = {"a": new_key(w.gw, team_a), "b": new_key(w.gw, team_b)}
        set_policy(w.gw, team_a, POLICY_A)
        set_policy(w.gw, team_b, {"allow": ["docs/*"]})
        yield w


def key(world: World, who: str) -> str:
    return world.tenants[who].key


def test_the_servers_a_key_may_use(world: World) -> None:
    resp = rest(world.gw, "GET", "/servers", key(world, "a"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "list"
    assert [(s["id"], s["tools"], s["state"], s["error"]) for s in body["data"]] == [
        ("files", len(TOOLS) - 1, "ready", None),
        ("docs", 1, "ready", None),
    ]
    docs = body["data"][1]
    assert (docs["title"], docs["protocol_version"]) == ("The docs", "2026-07-28")
    other = rest(world.gw, "GET", "/servers", key(world, "b")).json()["data"]
    assert [(s["id"], s["tools"]) for s in other] == [("docs", len(TOOLS))]


def test_a_servers_tools_for_a_key(world: World) -> None:
    resp = rest(world.gw, "GET", "/servers/files/tools", key(world, "a"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["object"], body["server"]) == ("list", "files")
    assert {t["name"] for t in body["data"]} == TOOLS - {"crash"}
    add = next(t for t in body["data"] if t["name"] == "add")
    assert add["inputSchema"]["required"] == ["a", "b"] and add["description"] == "Add two integers."
    assert [t["name"] for t in rest(world.gw, "GET", "/servers/docs/tools", key(world, "a")).json()["data"]] == ["echo"]
    # a server the key has no grant on is as unknown as a server that does not exist
    for who, server in (("b", "files"), ("a", "nope"), ("b", "extra")):
        err = assert_error(
            rest(world.gw, "GET", f"/servers/{server}/tools", key(world, who)), 404, "mcp_server_not_found"
        )
        assert server in err["message"]


def test_a_call_answers_the_tools_result(world: World) -> None:
    resp = call_rest(world.gw, key(world, "a"), "files", "add", {"a": 2, "b": 3})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    plain = {k: v for k, v in body.items() if k not in ("_meta", "resultType")}
    assert plain == {"content": [{"type": "text", "text": "5"}], "structuredContent": {"result": 5}, "isError": False}
    assert body.get("resultType", "complete") == "complete"
    echoed = call_rest(world.gw, key(world, "b"), "docs", "echo", {"text": "über"})
    assert echoed.status_code == 200, echoed.text
    assert echoed.json()["content"] == [{"type": "text", "text": "über"}]
    # no arguments at all: a tool without parameters
    none = rest(world.gw, "POST", "/servers/files/tools/cancelled:call", key(world, "a"), {})
    assert none.status_code == 200 and none.json()["structuredContent"] == {"result": 0}, none.text


@pytest.mark.parametrize(
    ("tool", "arguments", "param", "says"),
    [
        ("add", {"a": "x", "b": 1}, "arguments/a", "integer"),
        ("add", {"a": 1, "b": 2.5}, "arguments/b", "integer"),
        ("echo", {"text": ["not", "a", "string"]}, "arguments/text", "string"),
        ("add", {"a": 1}, "arguments", '"b" is a required property'),
        ("add", ["a", 1], "arguments", "object"),
        ("add", "a=1", "arguments", "object"),
    ],
)
def test_arguments_are_checked_against_the_input_schema(
    world: World, tool: str, arguments: Any, param: str, says: str
) -> None:
    err = assert_error(call_rest(world.gw, key(world, "a"), "files", tool, arguments), 400, "invalid_value", param)
    assert says in err["message"], err


def test_unknown_forbidden_unauthenticated_and_malformed(world: World) -> None:
    gw, a = world.gw, key(world, "a")
    err = assert_error(call_rest(gw, a, "files", "nope", {}), 404, "mcp_tool_not_found", "name")
    assert "'files'" in err["message"] and "'nope'" in err["message"]
    assert_error(call_rest(gw, a, "nope", "echo", {"text": "x"}), 404, "mcp_server_not_found")
    for who, server, tool in (("a", "files", "crash"), ("a", "docs", "add"), ("b", "files", "echo")):
        err = assert_error(call_rest(gw, key(world, who), server, tool, {}), 403, "tool_not_allowed")
        assert f"{server}__{tool}" in err["message"]
    for credential in (None, "fg-" + "y" * 43):
        assert_error(rest(gw, "GET", "/servers", credential), 401, "invalid_api_key")
        assert_error(call_rest(gw, credential, "files", "echo", {"text": "x"}), 401, "invalid_api_key")  # type: ignore[arg-type]
    bad = rest(gw, "POST", "/servers/files/tools/echo:call", a, content=b'{"arguments": {', headers={})
    assert_error(bad, 400, "invalid_json")
    assert_error(rest(gw, "POST", "/servers/files/tools/echo:call", a, [1, 2]), 400, "invalid_value", "body")
    wrong = rest(gw, "GET", "/servers/files/tools/echo:call", a)
    assert_error(wrong, 405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"
    assert_error(rest(gw, "GET", "/nothing/here", a), 404, "not_found")


# ---- hot changes ------------------------------------------------------------------------------------------------


def modern_tools(world: World, who: str) -> set[str]:
    resp = rpc(world.gw, key(world, who), "tools/list")
    assert resp.status_code == 200, resp.text
    return {t["name"] for t in resp.json()["result"]["tools"]}


def test_a_server_added_through_the_admin_api_is_listed_within_a_second(world: World) -> None:
    assert not {n for n in modern_tools(world, "a") if n.startswith("extra__")}
    started = time.monotonic()
    admin(world.gw, "POST", "/mcp/servers", http_server("extra", world.fakes["extra"]))
    try:
        until(lambda: "extra__echo" in modern_tools(world, "a"), bound_s=5.0, step_s=0.02)
        took = time.monotonic() - started
        assert took < 1.5, f"listed after {took:.2f} s"
        assert {n for n in modern_tools(world, "a") if n.startswith("extra__")} == {f"extra__{t}" for t in TOOLS}
        resp = call_rest(world.gw, key(world, "a"), "extra", "echo", {"text": "hot"})
        assert resp.status_code == 200 and resp.json()["content"][0]["text"] == "hot", resp.text
        assert "extra__echo" not in modern_tools(world, "b")  # its policy does not grant it
    finally:
        admin(world.gw, "DELETE", "/mcp/servers/extra")
    until(lambda: "extra__echo" not in modern_tools(world, "a"), bound_s=5.0)
    assert_error(call_rest(world.gw, key(world, "a"), "extra", "echo", {"text": "x"}), 404, "mcp_server_not_found")


def test_a_policy_change_applies_within_a_second(world: World) -> None:
    team = world.tenants["b"].team_id
    b = key(world, "b")
    assert "files__echo" not in modern_tools(world, "b")
    started = time.monotonic()
    set_policy(world.gw, team, {"allow": ["docs/*", "files/echo"], "deny": ["docs/secret"]})
    try:
        until(lambda: call_rest(world.gw, b, "files", "echo", {"text": "now"}).status_code == 200, bound_s=5.0)
        took = time.monotonic() - started
        assert took < 1.5, f"applied after {took:.2f} s"
        listed = modern_tools(world, "b")
        assert "files__echo" in listed and "docs__secret" not in listed and "files__add" not in listed
        assert_error(call_rest(world.gw, b, "docs", "secret", {}), 403, "tool_not_allowed")
    finally:
        set_policy(world.gw, team, {"allow": ["docs/*"]})
    until(lambda: call_rest(world.gw, b, "files", "echo", {"text": "x"}).status_code == 403, bound_s=1.5)
    assert "files__echo" not in modern_tools(world, "b")
