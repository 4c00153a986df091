"""One upstream MCP server, against real fake servers (processes): both HTTP generations and stdio.

Listing, calls, tool errors, timeouts cancelled upstream, a server that is down, a stdio child that crashes and is
restarted, a server restarted with new tool definitions, list-changed notifications, and a clean close.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import mcp_types
import pytest

from ferrogate.config.mcp import McpHttpServer, McpStdioServer
from ferrogate.mcp.upstream import Upstream, UpstreamTimeout, UpstreamUnavailable
from tests.fakes.mcp_support import port_of, start_http_server, stdio_params, stop_server
from tests.support import child_pids, free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """legacy (2025-11-25 only), modern (stateless JSON) and modern-sse (stateless, cancellable) HTTP fakes."""
    record = tmp_path_factory.mktemp("mcp") / "calls.txt"
    started = [
        ("legacy", start_http_server("legacy", name="legacy")),
        ("modern", start_http_server("modern", name="modern")),
        ("modern-sse", start_http_server("modern", name="sse", sse=True, record=record)),
    ]
    yield {name: url for name, (_, url) in started}
    for _, (proc, _) in started:
        stop_server(proc)


def http(url: str, **extra: Any) -> McpHttpServer:
    return McpHttpServer.model_validate({"id": "srv", "transport": "http", "url": url, **extra})


def stdio(**opts: Any) -> McpStdioServer:
    return McpStdioServer.model_validate({"id": "files", "transport": "stdio", **stdio_params(**opts)})


@asynccontextmanager
async def running(spec: McpHttpServer | McpStdioServer, ready: bool = True) -> AsyncIterator[Upstream]:
    up = Upstream(spec)
    await up.start()
    try:
        if ready:
            assert await up.ready(15), up.last_error
        yield up
    finally:
        await up.close()


def text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


async def eventually(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(("server", "version"), [("legacy", "2025-11-25"), ("modern", "2026-07-28")])
async def test_lists_in_both_generations(servers: dict[str, str], server: str, version: str) -> None:
    async with running(http(servers[server])) as up:
        assert (up.state, up.protocol_version, up.last_error) == ("ready", version, None)
        names = [t.name for t in up.tools]
        assert names[:4] == ["echo", "add", "slow", "cancelled"] and "crash" in names
        assert [r.uri for r in up.resources] == [f"info://{server}/readme"]
        assert [p.name for p in up.prompts] == ["greet"]
        assert up.resource_templates == [] and up.listed_at is not None and up.lists_version == 1


async def test_stdio_lists_and_calls() -> None:
    async with running(stdio(name="files")) as up:
        assert up.protocol_version == "2026-07-28"
        assert text(await up.call_tool("echo", {"text": "hi"}, 5)) == "hi"
        read = await up.read_resource("info://files/readme", 5)
        assert isinstance(read.contents[0], mcp_types.TextResourceContents)
        assert read.contents[0].text == "files: a fake MCP server for tests"
        prompt = await up.get_prompt("greet", {"name": "Ada"}, 5)
        assert isinstance(prompt.messages[0].content, mcp_types.TextContent)
        assert prompt.messages[0].content.text == "Say hello to Ada."


@pytest.mark.parametrize("server", ["legacy", "modern"])
async def test_calls_and_tool_errors(servers: dict[str, str], server: str) -> None:
    async with running(http(servers[server])) as up:
        assert text(await up.call_tool("echo", {"text": "héllo"}, 5)) == "héllo"
        added = await up.call_tool("add", {"a": 2, "b": 40}, 5)
        assert added.structured_content == {"result": 42} and not added.is_error
        failed = await up.call_tool("fail", {"message": "the disk is full"}, 5)
        assert failed.is_error is True and "the disk is full" in text(failed)
        refused = await up.call_tool("refuse", {"reason": "not today"}, 5)  # a JSON-RPC error: an isError result
        assert refused.is_error is True
        assert text(refused) == "MCP server 'srv' refused the call: not today (JSON-RPC error -32602)"
        assert refused.meta == {"ferrogate/upstream_error": -32602}
        unknown = await up.call_tool("no_such_tool", {}, 5)
        assert unknown.is_error is True and "no_such_tool" in text(unknown)
        assert up.state == "ready"


async def test_static_headers_and_bearer_token_are_sent(servers: dict[str, str]) -> None:
    spec = http(servers["modern"], headers={"X-Api-Key": "key-123"}, bearer_token="tok-456")  # noqa: S106 (a test value)
    async with running(spec) as up:
        seen = json.loads(text(await up.call_tool("headers", {}, 5)))
        assert seen["authorization"] == "Bearer tok-456" and seen["x-api-key"] == "key-123"


@pytest.mark.parametrize("where", ["legacy", "modern-sse", "stdio"])
async def test_timeout_cancels_the_upstream_call(servers: dict[str, str], where: str, tmp_path: Path) -> None:
    spec = stdio(name="files") if where == "stdio" else http(servers[where])
    async with running(spec) as up:
        before = int(text(await up.call_tool("cancelled", {}, 5)))
        start = time.monotonic()
        with pytest.raises(UpstreamTimeout, match=r"0\.5 s"):
            await up.call_tool("slow", {"seconds": 20}, 0.5)
        assert time.monotonic() - start < 2.0

        async def cancelled_upstream() -> bool:
            return int(text(await up.call_tool("cancelled", {}, 5))) == before + 1

        await eventually(cancelled_upstream, 5.0)
        assert up.state == "ready"  # a timeout is not a lost connection


async def test_a_server_that_is_down() -> None:
    async with running(http(f"http://127.0.0.1:{free_port()}/mcp"), ready=False) as up:
        assert await up.ready(1.0) is False
        assert up.state == "unavailable"
        assert up.last_error is not None and "ConnectError" in up.last_error
        with pytest.raises(UpstreamUnavailable, match="ConnectError"):
            await up.call_tool("echo", {"text": "x"}, 5)


async def test_a_crashed_stdio_child_is_restarted() -> None:
    async with running(stdio(name="files")) as up:
        with pytest.raises(UpstreamUnavailable, match="connection lost"):
            await up.call_tool("crash", {}, 5)
        assert await up.ready(15), up.last_error
        assert text(await up.call_tool("echo", {"text": "back"}, 5)) == "back"


async def test_a_restarted_server_with_changed_tools_is_listed_again() -> None:
    proc, url = start_http_server("legacy", name="legacy")
    try:
        async with running(http(url)) as up:
            echo = next(t for t in up.tools if t.name == "echo")
            assert echo.description == "Echo the text back."
            stop_server(proc)
            with pytest.raises(UpstreamUnavailable):
                await up.call_tool("echo", {"text": "x"}, 5)
            proc, _ = start_http_server("legacy", port_of(url), name="legacy", variant="changed")
            await up.refresh()
            assert await up.ready(15), up.last_error
            echo = next(t for t in up.tools if t.name == "echo")
            assert echo.description == "Echo the text back, changed." and up.lists_version == 2
            assert text(await up.call_tool("echo", {"text": "again"}, 5)) == "again"
    finally:
        stop_server(proc)


async def test_refresh_without_changes_keeps_the_lists(servers: dict[str, str]) -> None:
    async with running(http(servers["modern"])) as up:
        tools, version, listed = up.tools, up.lists_version, up.listed_at
        await up.refresh()
        assert up.tools is tools and up.lists_version == version
        assert up.listed_at is not None and listed is not None and up.listed_at > listed


@pytest.mark.parametrize("where", ["legacy", "stdio"])
async def test_list_changed_notifications_relist(servers: dict[str, str], where: str) -> None:
    # legacy: notifications/tools/list_changed on the session; stdio (2026-07-28): a subscriptions/listen stream
    proc, url = start_http_server("legacy", name="legacy") if where == "legacy" else (None, "")
    try:
        async with running(stdio(name="files") if where == "stdio" else http(url)) as up:
            assert "added" not in [t.name for t in up.tools]
            await asyncio.sleep(0.3)  # the notification stream is open
            assert text(await up.call_tool("mutate", {}, 5)) == "mutated"

            async def relisted() -> bool:
                return "added" in [t.name for t in up.tools]

            await eventually(relisted, 5.0)
            assert text(await up.call_tool("added", {"text": "abc"}, 5)) == "ABC"
    finally:
        if proc is not None:
            stop_server(proc)


async def test_close_ends_the_stdio_child() -> None:
    before = set(child_pids(os.getpid()))
    async with running(stdio(name="files")) as up:
        assert set(child_pids(os.getpid())) - before
    assert up.state == "unavailable"
    assert set(child_pids(os.getpid())) - before == set()
    with pytest.raises(UpstreamUnavailable):
        await up.call_tool("echo", {"text": "x"}, 5)


async def test_a_disabled_server_never_connects() -> None:
    up = Upstream(stdio(name="files").model_copy(update={"enabled": False}))
    await up.start()
    assert up.state == "disabled" and await up.ready(0.1) is False
    with pytest.raises(UpstreamUnavailable, match="not connected"):
        await up.call_tool("echo", {"text": "x"}, 5)
    await up.close()
    assert up.state == "disabled"


def test_the_legacy_fake_refuses_the_2026_era(servers: dict[str, str]) -> None:
    """What makes ``mode="auto"`` fall back to ``initialize`` (test_lists_in_both_generations sees it happen)."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    }
    discover = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}
    headers = {
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "server/discover",
    }
    for url, status in ((servers["legacy"], 400), (servers["modern"], 200)):
        answer = httpx.post(url, json=discover, headers=headers, timeout=5)
        assert answer.status_code == status, answer.text
        if status == 400:
            assert answer.json()["error"]["code"] == -32600
        else:
            assert "2026-07-28" in answer.json()["result"]["supportedVersions"]
