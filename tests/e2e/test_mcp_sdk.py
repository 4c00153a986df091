"""The aggregated MCP server at ``/mcp`` through the official SDK client, in both protocol generations.

``Client(..., mode="legacy")`` speaks 2025-11-25 (``initialize``, then the signed ``Mcp-Session-Id`` on every
request); ``Client(..., mode="auto")`` finds 2026-07-28 through ``server/discover`` and goes stateless. Upstreams:
``files`` (stdio, started by the worker), ``web`` (HTTP, 2025-11-25 only) and ``docs`` (HTTP, 2026-07-28). Three
keys of two teams: team A allows ``files/*`` and ``web/echo`` but not ``files/crash``, and narrows its second key
to ``files/echo`` and ``files/add``; team B allows ``web/*`` and ``docs/*`` but not ``web/secret``. Each key lists
exactly its tools (namespaced ``<server>__<tool>``), resources and prompts; a tool it may not use is answered as
unknown; a session id is its key's only and valid on a second instance sharing the master key and the store;
``Mcp-Name`` must name the body's tool, and the policy is decided on the body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.e2e.mcp_support import (
    ENVELOPE,
    LEGACY,
    MODERN,
    World,
    audit_records,
    call_rest,
    http_server,
    initialize,
    new_key,
    new_team,
    rpc,
    run,
    running,
    sdk,
    servers_yaml,
    set_policy,
    start_fakes,
    start_gateway,
    stdio_server,
    text_of,
    until,
    wait_ready,
)

#: Every tool of a fake (tests/fakes/mcp_servers.py).
TOOLS = {"echo", "add", "slow", "cancelled", "fail", "refuse", "secret", "inject", "crash", "headers", "mutate"}
MODES = [pytest.param("legacy", id="2025-11-25"), pytest.param("auto", id="2026-07-28")]


def names(server: str, tools: set[str]) -> set[str]:
    return {f"{server}__{t}" for t in tools}


#: What each key may use.
EXPECTED = {
    "a1": names("files", TOOLS - {"crash"}) | {"web__echo"},
    "a2": {"files__echo", "files__add"},
    "b": names("web", TOOLS - {"secret"}) | names("docs", TOOLS),
}
#: The servers each key is granted (their resources and prompts are its).
GRANTED = {"a1": {"files", "web"}, "a2": {"files"}, "b": {"web", "docs"}}


def servers(fakes: dict[str, Any], record: Path) -> list[dict[str, Any]]:
    return [
        stdio_server("files", record=str(record)),
        http_server("web", fakes["web"]),
        http_server("docs", fakes["docs"]),
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("mcp-sdk")
    fakes = start_fakes({"web": ("legacy", {"name": "web"}), "docs": ("modern", {"name": "docs"})})
    record = tmp / "files.record"
    with running(tmp, fakes, servers(fakes, record), store=tmp / "shared.db") as w:
        gw = w.gw
        team_a, team_b = new_team(gw, "mcp-a"), new_team(gw, "mcp-b")
        w.tenants = {"a1": new_key(gw, team_a), "a2": new_key(gw, team_a), "b": new_key(gw, team_b)}
        narrowed = {w.tenants["a2"].key_id: {"allow": ["files/echo", "files/add"]}}
        set_policy(gw, team_a, {"allow": ["files/*", "web/echo"], "deny": ["files/crash"], "keys": narrowed})
        set_policy(gw, team_b, {"allow": ["web/*", "docs/*"], "deny": ["web/secret"]})
        w.extra |= {"tmp": tmp, "record": record}
        yield w


# ---- listing and calling, both generations --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_each_key_lists_exactly_its_tools(world: World, mode: str) -> None:
    async def listed(key: str) -> tuple[str, list[Any]]:
        async with sdk(world.gw, key, mode) as client:
            return client.protocol_version, (await client.list_tools()).tools

    for who, expected in EXPECTED.items():
        version, tools = run(listed(world.tenants[who].key))
        assert version == (LEGACY if mode == "legacy" else MODERN)
        assert {t.name for t in tools} == expected, who
        assert len(tools) == len(expected), who  # no tool twice
    _, tools = run(listed(world.tenants["a1"].key))
    add = next(t for t in tools if t.name == "files__add")
    assert add.description == "Add two integers."
    assert add.input_schema["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    assert add.input_schema["required"] == ["a", "b"]


@pytest.mark.parametrize("mode", MODES)
def test_calls_reach_each_upstream_through_the_gateway(world: World, mode: str) -> None:
    async def calls(key: str, *todo: tuple[str, dict[str, Any]]) -> list[Any]:
        async with sdk(world.gw, key, mode) as client:
            return [await client.call_tool(name, args) for name, args in todo]

    stdio_add, web_echo = run(
        calls(world.tenants["a1"].key, ("files__add", {"a": 2, "b": 3}), ("web__echo", {"text": "hi"}))
    )
    assert (text_of(stdio_add), stdio_add.structured_content, stdio_add.is_error) == ("5", {"result": 5}, False)
    assert (text_of(web_echo), web_echo.structured_content, web_echo.is_error) == ("hi", {"result": "hi"}, False)
    modern_add, legacy_add, seen = run(
        calls(
            world.tenants["b"].key,
            ("docs__add", {"a": 40, "b": 2}),
            ("web__add", {"a": -1, "b": 1}),
            ("docs__headers", {}),
        )
    )
    assert (text_of(modern_add), text_of(legacy_add)) == ("42", "0")
    # the upstream sees the gateway's client, never the caller's virtual key
    headers = json.loads(text_of(seen))
    assert world.tenants["b"].key not in json.dumps(headers)
    assert headers.get("mcp-protocol-version") == MODERN


@pytest.mark.parametrize("mode", MODES)
def test_a_tool_the_key_may_not_use_is_unknown_to_it(world: World, mode: str) -> None:
    refused = {
        "a1": ["files__crash", "web__add", "docs__echo", "files__no_such_tool", "nothing"],
        "a2": ["files__slow", "web__echo"],
        "b": ["web__secret", "files__echo"],
    }

    async def attempt(key: str, name: str) -> MCPError:
        async with sdk(world.gw, key, mode) as client:
            with pytest.raises(MCPError) as info:
                await client.call_tool(name, {"text": "x"})
            return info.value

    for who, tools in refused.items():
        for name in tools:
            err = run(attempt(world.tenants[who].key, name))
            assert (err.error.code, err.error.message) == (-32602, f"Unknown tool: {name}"), (who, name)


@pytest.mark.parametrize("mode", MODES)
def test_resources_and_prompts_of_the_granted_servers(world: World, mode: str) -> None:
    async def look(key: str) -> tuple[set[str], set[str], list[str], list[str]]:
        async with sdk(world.gw, key, mode) as client:
            uris = {str(r.uri) for r in (await client.list_resources()).resources}
            prompts = {p.name for p in (await client.list_prompts()).prompts}
            texts = []
            for uri in sorted(uris):
                contents = (await client.read_resource(uri)).contents
                texts.append(getattr(contents[0], "text", ""))
            said = []
            for name in sorted(prompts):
                got = await client.get_prompt(name, {"name": "Ada"})
                said.append(got.messages[0].content.text)  # type: ignore[union-attr]
            return uris, prompts, texts, said

    for who, granted in GRANTED.items():
        uris, prompts, texts, said = run(look(world.tenants[who].key))
        assert uris == {f"info://{s}/readme" for s in granted}, who
        assert prompts == {f"{s}__greet" for s in granted}, who
        assert texts == [f"{s}: a fake MCP server for tests" for s in sorted(granted)], who
        assert said == ["Say hello to Ada."] * len(granted), who

    async def refused(key: str) -> list[MCPError]:
        out = []
        async with sdk(world.gw, key, mode) as client:
            for call in (lambda: client.read_resource("info://web/readme"), lambda: client.get_prompt("web__greet")):
                with pytest.raises(MCPError) as info:
                    await call()
                out.append(info.value)
        return out

    read, prompt = run(refused(world.tenants["a2"].key))
    assert (read.error.code, read.error.message) == (-32602, "Unknown resource: info://web/readme")
    assert (prompt.error.code, prompt.error.message) == (-32602, "Unknown prompt: web__greet")


# ---- raw requests: auth, sessions, routing headers --------------------------------------------------------------


def test_without_a_valid_key_it_is_a_401_with_a_json_rpc_body(world: World) -> None:
    for key in (None, "fg-" + "x" * 43):
        for modern in (True, False):
            resp = rpc(world.gw, key, "tools/list", modern=modern)
            assert resp.status_code == 401, resp.text
            assert resp.headers["www-authenticate"].startswith("Bearer")
            body = resp.json()
            assert body["jsonrpc"] == "2.0" and body["id"] is None and body["error"]["code"] == -32600


def test_a_session_id_is_its_keys_only(world: World) -> None:
    a1, b = world.tenants["a1"], world.tenants["b"]
    session = initialize(world.gw, a1.key)
    own = rpc(world.gw, a1.key, "tools/list", modern=False, session=session)
    assert own.status_code == 200, own.text
    assert own.headers["mcp-session-id"] == session
    assert {t["name"] for t in own.json()["result"]["tools"]} == EXPECTED["a1"]
    for key, sid, status in ((b.key, session, 404), (a1.key, session[:-2] + "AA", 404), (a1.key, None, 400)):
        resp = rpc(world.gw, key, "tools/list", modern=False, session=sid)
        assert resp.status_code == status, resp.text
        assert resp.json()["error"]["code"] == -32600
        assert "result" not in resp.json()
    other = rpc(world.gw, b.key, "tools/call", {"name": "web__echo", "arguments": {"text": "x"}}, modern=False,
                session=session)  # fmt: skip
    assert other.status_code == 404, other.text


def test_a_session_id_works_on_a_second_instance(world: World) -> None:
    tmp = world.extra["tmp"]
    second = start_gateway(tmp, servers_yaml(servers(world.fakes, world.extra["record"])), store=tmp / "shared.db")
    try:
        wait_ready(second, "files", "web", "docs")
        a1 = world.tenants["a1"]
        session = initialize(world.gw, a1.key)
        listed = rpc(second, a1.key, "tools/list", modern=False, session=session)
        assert listed.status_code == 200, listed.text
        assert {t["name"] for t in listed.json()["result"]["tools"]} == EXPECTED["a1"]
        args = {"name": "files__add", "arguments": {"a": 20, "b": 22}}
        called = rpc(second, a1.key, "tools/call", args, modern=False, session=session)
        assert called.status_code == 200, called.text
        assert text_of(called.json()["result"]) == "42"
        # and the other way round; another key still cannot
        back = initialize(second, a1.key)
        assert rpc(world.gw, a1.key, "ping", modern=False, session=back).json()["result"] == {}
        assert rpc(second, world.tenants["b"].key, "ping", modern=False, session=session).status_code == 404
    finally:
        second.stop()


def test_mcp_name_must_name_the_bodys_tool(world: World) -> None:
    a1 = world.tenants["a1"]
    body = {"name": "files__echo", "arguments": {"text": "hello"}}
    ok = rpc(world.gw, a1.key, "tools/call", body)
    assert ok.status_code == 200, ok.text
    result = ok.json()["result"]
    assert (text_of(result), result["resultType"]) == ("hello", "complete")
    for name in ("files__add", "web__echo", ""):
        resp = rpc(world.gw, a1.key, "tools/call", body, headers={"mcp-name": name})
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["code"] == -32020 and "mcp-name header" in error["message"].lower(), error
    # no Mcp-Name at all
    headers = {"accept": "application/json", "content-type": "application/json", "authorization": f"Bearer {a1.key}"}
    headers |= {"mcp-protocol-version": MODERN, "mcp-method": "tools/call"}
    raw = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {**body, "_meta": ENVELOPE}}
    resp = httpx.post(f"{world.gw.url}/mcp", json=raw, headers=headers, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == -32020, resp.text


def test_the_policy_is_decided_on_the_body(world: World) -> None:
    """A header naming an allowed tool cannot smuggle a denied one, nor can a matching header make it allowed."""
    a2 = world.tenants["a2"]

    def refused_slow_after(marker: str) -> list[str]:
        """The fronts of a2's refused ``files__slow`` calls, once the ``echo`` call ``marker`` is on the record."""
        found = audit_records(world.gw, action="mcp.tools.call", actor=a2.key_id)
        if not any(r["target"] == "files__echo" and r["data"]["arguments"] == {"text": marker} for r in found):
            return []
        return [r["data"]["front"] for r in found if r["target"] == "files__slow"] or ["none"]

    # other tests of the module are refused files__slow with a2 too: count from a marker on
    assert call_rest(world.gw, a2.key, "files", "echo", {"text": "before"}).status_code == 200
    earlier = [f for f in until(lambda: refused_slow_after("before")) if f != "none"]
    smuggled = rpc(world.gw, a2.key, "tools/call", {"name": "files__slow", "arguments": {"seconds": 0}},
                   headers={"mcp-name": "files__echo"})  # fmt: skip
    assert smuggled.status_code == 400 and smuggled.json()["error"]["code"] == -32020, smuggled.text
    honest = rpc(world.gw, a2.key, "tools/call", {"name": "files__slow", "arguments": {"seconds": 0}})
    assert honest.status_code == 400, honest.text  # -32602 at 2026-07-28: HTTP 400 (ERROR_CODE_HTTP_STATUS)
    assert honest.json()["error"] == {"code": -32602, "message": "Unknown tool: files__slow"}
    # neither reached the upstream: the mismatch was refused before any method ran (not audited as a call), the
    # denied call is audited as refused
    assert call_rest(world.gw, a2.key, "files", "echo", {"text": "after"}).status_code == 200
    later = [f for f in until(lambda: refused_slow_after("after")) if f != "none"]
    assert later == [*earlier, "mcp"] or sorted(later) == sorted([*earlier, "mcp"]), (earlier, later)
    outcomes = {r["data"]["outcome"] for r in audit_records(world.gw, action="mcp.tools.call", target="files__slow")}
    assert outcomes == {"tool_not_allowed"}
    record = world.extra["record"]
    assert not record.exists() or "started" not in record.read_text()
