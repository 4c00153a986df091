"""/mcp and /mcp/v1 end to end: the official SDK's client in both generations (``mode="legacy"``: initialize and
a signed Mcp-Session-Id; ``mode="auto"``: 2026-07-28 discover and per-request envelopes) against the real gateway
(Granian, a real store, real keys) in front of real fake MCP servers; and the raw HTTP edges (401, 400, 404,
405, 202, header mismatches) and the REST front.

The gateway is the stock one (``ferrogate.server.app:create_app``, as ``ferrogate serve`` runs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from ferrogate.manage import prepare_store
from tests.fakes.mcp_servers import FAKE_AWS_KEY
from tests.fakes.mcp_support import start_http_server, stop_server
from tests.support import free_port

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
MASTER = "mcp-endpoint-test-master-key"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Served:
    """The running gateway: its URL and two keys of two teams."""

    def __init__(self, url: str, keys: list[str], teams: list[str]) -> None:
        self.url = url
        self.keys = keys
        self.teams = teams


def config(modern: str, legacy: str) -> str:
    return f"""
server: {{prices_file: null}}
model_groups:
  - name: mock
    deployments: [{{upstream: mock}}]
upstreams:
  - {{name: mock, provider: mock}}
mcp:
  servers:
    - {{id: modern, transport: http, url: "{modern}"}}
    - {{id: legacy, transport: http, url: "{legacy}"}}
    - {{id: slowsrv, transport: http, url: "{modern}", timeout_s: 0.5}}
    - {{id: dead, transport: http, url: "http://127.0.0.1:{free_port()}/mcp"}}
  default_policy:
    allow: [modern, legacy, slowsrv/slow, dead]
    deny: [modern/crash, legacy/crash]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("mcp-gw")
    modern_proc, modern = start_http_server("modern", name="modern")
    legacy_proc, legacy = start_http_server("legacy", name="legacy")
    cfg = tmp / "config.yaml"
    cfg.write_text(config(modern, legacy))
    database = f"sqlite:///{tmp}/store.db"
    asyncio.run(prepare_store(database))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROGATE_")}
    env |= {
        "FERROGATE_CONFIG": str(cfg),
        "FERROGATE_DATABASE_URL": database,
        "FERROGATE_MASTER_KEY": MASTER,
        "PYTHONPATH": str(ROOT),
    }
    args = ["-m", "granian", "--interface", "rsgi", "--factory", "--no-ws", "--workers", "1"]
    args += ["--host", "127.0.0.1", "--port", str(port), "ferrogate.server.app:create_app"]
    log = (tmp / "gateway.log").open("wb")
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp / "gateway.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/mcp/v1/servers", timeout=1).status_code == 401:
                    break
            assert time.monotonic() < deadline, (tmp / "gateway.log").read_text()
            time.sleep(0.1)
        admin = {"Authorization": f"Bearer {MASTER}"}
        keys, teams = [], []
        for name in ("a", "b"):
            team = httpx.post(f"{url}/admin/v1/teams", json={"name": f"mcp-{name}"}, headers=admin).json()
            key = httpx.post(f"{url}/admin/v1/keys", json={"name": name, "team_id": team["id"]}, headers=admin)
            keys.append(key.json()["key"])
            teams.append(team["id"])
        # every upstream listed (the dead one never is)
        deadline = time.monotonic() + 20
        while True:
            got = httpx.get(f"{url}/mcp/v1/servers", headers={"Authorization": f"Bearer {keys[0]}"}).json()
            states = {s["id"]: s["state"] for s in got["data"]}
            if all(states.get(s) == "ready" for s in ("modern", "legacy", "slowsrv")):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.1)
        yield Served(url, keys, teams)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        stop_server(modern_proc)
        stop_server(legacy_proc)


@contextlib.asynccontextmanager
async def client(served: Served, mode: str, key: int = 0) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {served.keys[key]}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=20) as http,
        Client(streamable_http_client(f"{served.url}/mcp", http_client=http), mode=mode) as c,
    ):
        yield c


def text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


@pytest.mark.parametrize(("mode", "version"), [("legacy", LEGACY), ("auto", MODERN)])
async def test_the_sdk_client_in_both_generations(served: Served, mode: str, version: str) -> None:
    async with client(served, mode) as c:
        assert c.protocol_version == version
        listed = await c.list_tools()
        names = {t.name for t in listed.tools}
        assert {"modern__echo", "legacy__echo", "modern__add", "slowsrv__slow"} <= names
        assert not {"modern__crash", "legacy__crash", "slowsrv__echo"} & names  # denied: never listed
        assert all(n.startswith(("modern__", "legacy__", "slowsrv__")) for n in names)
        assert (listed.meta or {}).get("ferrogate/unavailable") == ["dead"]
        assert text(await c.call_tool("modern__echo", {"text": "hi"})) == "hi"
        assert text(await c.call_tool("legacy__add", {"a": 2, "b": 40})) == "42"
        failed = await c.call_tool("modern__fail", {"message": "no disk"})
        assert failed.is_error and "no disk" in text(failed)
        secret = await c.call_tool("legacy__secret", {})
        assert FAKE_AWS_KEY not in text(secret) and "[REDACTED:aws-access-key-id]" in text(secret)
        slow = await c.call_tool("slowsrv__slow", {"seconds": 5})
        assert slow.is_error and "did not answer within 0.5 s" in text(slow)
        assert (slow.meta or {}).get("ferrogate/error") == "mcp_timeout"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_refusals_as_the_protocol_wants_them(served: Served, mode: str) -> None:
    async with client(served, mode) as c:
        for name in ("modern__crash", "nothing__here", "modern__no_such_tool"):
            with pytest.raises(MCPError) as info:
                await c.call_tool(name, {})
            assert (info.value.code, info.value.message) == (-32602, f"Unknown tool: {name}")
        with pytest.raises(MCPError) as bad:
            await c.call_tool("modern__add", {"a": "one", "b": 2})
        assert bad.value.code == -32602
        assert bad.value.data == {"code": "invalid_value", "param": "arguments/a"}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_resources_and_prompts(served: Served, mode: str) -> None:
    async with client(served, mode) as c:
        resources = await c.list_resources()
        uris = {str(r.uri) for r in resources.resources}
        assert {"info://modern/readme", "info://legacy/readme"} <= uris
        read = await c.read_resource("info://legacy/readme")
        assert read.contents and str(read.contents[0].uri) == "info://legacy/readme"
        prompts = {p.name for p in (await c.list_prompts()).prompts}
        assert {"modern__greet", "legacy__greet"} <= prompts
        got = await c.get_prompt("legacy__greet", {"name": "Ada"})
        assert "Ada" in str(got.messages[0].content)
        with pytest.raises(MCPError) as info:
            await c.read_resource("info://nobody/none")
        assert info.value.code == -32602


def post(served: Served, body: Any, key: int | None = 0, headers: dict[str, str] | None = None) -> httpx.Response:
    sent = {"accept": "application/json, text/event-stream", **(headers or {})}
    if key is not None:
        sent["authorization"] = f"Bearer {served.keys[key]}"
    return httpx.post(f"{served.url}/mcp", json=body, headers=sent, timeout=10)


def initialize(served: Served, key: int = 0) -> str:
    got = post(served, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}, key)  # fmt: skip
    assert got.status_code == 200 and got.json()["result"]["protocolVersion"] == LEGACY
    session: str = got.headers["mcp-session-id"]
    return session


def envelope(method: str, **params: Any) -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": 7, "method": method, "params": {**params, "_meta": meta}}


def test_http_edges(served: Served) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    unauthorized = post(served, ping, key=None)
    assert unauthorized.status_code == 401 and unauthorized.headers["www-authenticate"].startswith("Bearer")
    assert unauthorized.json()["error"]["code"] == -32600
    assert post(served, ping).status_code == 400  # a handshake-era request without a session
    session = initialize(served)
    assert post(served, ping, headers={"mcp-session-id": session}).json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert post(served, ping, key=1, headers={"mcp-session-id": session}).status_code == 404  # another key's session
    assert post(served, ping, headers={"mcp-session-id": session[:-3] + "abc"}).status_code == 404
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert post(served, note, headers={"mcp-session-id": session}).status_code == 202
    assert httpx.get(f"{served.url}/mcp", headers={"authorization": f"Bearer {served.keys[0]}"}).status_code == 405
    assert httpx.delete(f"{served.url}/mcp", headers={"mcp-session-id": session}).status_code == 200
    assert post(served, [ping]).status_code == 400
    raw = httpx.post(f"{served.url}/mcp", content=b"{nope", headers={"authorization": f"Bearer {served.keys[0]}"})
    assert (raw.status_code, raw.json()["error"]["code"]) == (400, -32700)


def test_modern_routing_headers(served: Served) -> None:
    call = envelope("tools/call", name="modern__echo", arguments={"text": "x"})
    routed = {"mcp-protocol-version": MODERN, "mcp-method": "tools/call"}
    ok = post(served, call, headers={**routed, "mcp-name": "modern__echo"})
    assert ok.status_code == 200
    result = ok.json()["result"]
    assert result["content"][0]["text"] == "x" and result["resultType"] == "complete"
    assert ok.headers["x-ferrogate-guardrails"] == "scanned"
    # the policy decides on the body's tool: a header naming another one is refused before anything runs
    mismatch = post(served, call, headers={**routed, "mcp-name": "modern__add"})
    assert (mismatch.status_code, mismatch.json()["error"]["code"]) == (400, -32020)
    no_meta = post(
        served, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers={"mcp-protocol-version": MODERN}
    )
    assert (no_meta.status_code, no_meta.json()["error"]["code"]) == (400, -32602)
    listed = post(served, envelope("tools/list"), headers={"mcp-protocol-version": MODERN, "mcp-method": "tools/list"})
    body = listed.json()["result"]
    assert (body["ttlMs"], body["cacheScope"]) == (0, "private")
    unknown = post(served, envelope("nope/nope"), headers={"mcp-protocol-version": MODERN, "mcp-method": "nope/nope"})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, -32601)
    old = envelope("tools/list")
    old["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2099-01-01"
    refused = post(served, old, headers={"mcp-protocol-version": "2099-01-01", "mcp-method": "tools/list"})
    assert refused.json()["error"]["code"] == -32022
    assert refused.json()["error"]["data"]["supported"] == [MODERN]
    note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
    assert post(served, note, headers={"mcp-protocol-version": MODERN}).status_code == 202


def test_rest(served: Served) -> None:
    auth = {"authorization": f"Bearer {served.keys[0]}"}
    servers = httpx.get(f"{served.url}/mcp/v1/servers", headers=auth).json()["data"]
    by_id = {s["id"]: s for s in servers}
    assert set(by_id) == {"modern", "legacy", "slowsrv", "dead"}
    assert by_id["slowsrv"]["tools"] == 1 and by_id["dead"]["state"] == "unavailable"
    assert by_id["dead"]["error"]
    tools = httpx.get(f"{served.url}/mcp/v1/servers/modern/tools", headers=auth).json()
    names = {t["name"] for t in tools["data"]}
    assert "echo" in names and "crash" not in names and tools["server"] == "modern"
    called = httpx.post(f"{served.url}/mcp/v1/servers/modern/tools/add:call", json={"arguments": {"a": 1, "b": 2}},
                        headers=auth)  # fmt: skip
    assert called.status_code == 200 and called.json()["content"][0]["text"] == "3"
    cases = [
        ("modern/tools/crash:call", {"arguments": {}}, 403, "tool_not_allowed"),
        ("modern/tools/nope:call", {"arguments": {}}, 404, "mcp_tool_not_found"),
        ("nope/tools/x:call", {"arguments": {}}, 404, "mcp_server_not_found"),
        ("modern/tools/add:call", {"arguments": {"a": 1}}, 400, "invalid_value"),
        ("dead/tools/x:call", {"arguments": {}}, 502, "mcp_server_unavailable"),
    ]
    for path, body, status, code in cases:
        got = httpx.post(f"{served.url}/mcp/v1/servers/{path}", json=body, headers=auth)
        assert (got.status_code, got.json()["error"]["code"]) == (status, code), path
    assert httpx.get(f"{served.url}/mcp/v1/servers/nope/tools", headers=auth).status_code == 404
    assert httpx.get(f"{served.url}/mcp/v1/servers/dead/tools", headers=auth).status_code == 502
    assert httpx.get(f"{served.url}/mcp/v1/servers").status_code == 401
    assert httpx.post(f"{served.url}/mcp/v1/servers", headers=auth).status_code == 405


def test_calls_are_in_the_audit_trail(served: Served) -> None:
    auth = {"authorization": f"Bearer {served.keys[1]}"}
    secret = f"token {FAKE_AWS_KEY} for audit"
    called = httpx.post(f"{served.url}/mcp/v1/servers/modern/tools/echo:call",
                        json={"arguments": {"text": secret}}, headers=auth)  # fmt: skip
    assert called.status_code == 200
    admin = {"Authorization": f"Bearer {MASTER}"}
    query = {"action": "mcp.tools.call", "team_id": served.teams[1]}
    deadline = time.monotonic() + 10
    while not (found := httpx.get(f"{served.url}/admin/v1/audit", params=query, headers=admin).json()["data"]):
        assert time.monotonic() < deadline, "the call's audit record never reached the store"
        time.sleep(0.2)
    [record] = found
    assert (record["kind"], record["target"]) == ("request", "modern__echo")
    data = record["data"]
    assert (data["server"], data["tool"], data["outcome"], data["front"]) == ("modern", "echo", "ok", "rest")
    assert data["arguments"] == {"text": "token [REDACTED:aws-access-key-id] for audit"}
    assert FAKE_AWS_KEY not in str(record)
