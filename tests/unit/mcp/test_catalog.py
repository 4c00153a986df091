"""The catalog: several real fake servers at once (one of them down), namespacing, pins (flag and hide), reloads,
and the cached listing on the path of every tools/list."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types
import pytest

from ferrogate.config.mcp import McpServer, McpSettings
from ferrogate.mcp.catalog import Catalog, split_name
from ferrogate.mcp.pins import Pins
from ferrogate.mcp.policy import Policies
from ferrogate.mcp.upstream import Upstream
from tests.fakes.mcp_servers import LONG_NAME
from tests.fakes.mcp_support import port_of, start_http_server, stdio_params, stop_server
from tests.support import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    started = {
        "legacy": start_http_server("legacy", name="legacy"),
        "modern": start_http_server("modern", name="modern"),
    }
    yield {name: url for name, (_, url) in started.items()}
    for proc, _ in started.values():
        stop_server(proc)


def settings(*servers: dict[str, Any]) -> McpSettings:
    return McpSettings.model_validate({"servers": list(servers)})


def http(sid: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "transport": "http", "url": url, **extra}


def stdio(sid: str, **opts: Any) -> dict[str, Any]:
    return {"id": sid, "transport": "stdio", **stdio_params(**opts)}


@asynccontextmanager
async def catalog_of(
    cfg: McpSettings, pins: Pins | None = None, ready: list[str] | None = None
) -> AsyncIterator[Catalog]:
    catalog = Catalog(cfg, pins or Pins())
    await catalog.start()
    try:
        for sid in ready if ready is not None else [s.id for s in cfg.servers]:
            upstream = catalog.get(sid)
            assert upstream is not None and await upstream.ready(15), upstream and upstream.last_error
        yield catalog
    finally:
        await catalog.close()


def everything(server: str, tool: str) -> bool:
    return True


async def test_servers_of_every_kind_and_one_down(servers: dict[str, str]) -> None:
    cfg = settings(
        http("legacy", servers["legacy"]),
        http("down", f"http://127.0.0.1:{free_port()}/mcp"),
        http("modern", servers["modern"], title="Modern docs"),
        stdio("files", name="files", variant="longname"),
    )
    async with catalog_of(cfg, ready=["legacy", "modern", "files"]) as catalog:
        assert [u.id for u in catalog.servers()] == ["legacy", "down", "modern", "files"]
        status = {s["id"]: s for s in catalog.status()}
        assert status["down"]["state"] == "unavailable" and "ConnectError" in status["down"]["last_error"]
        assert status["down"]["tools"] == 0
        assert status["legacy"]["protocol_version"] == "2025-11-25"
        assert status["modern"]["protocol_version"] == "2026-07-28" and status["modern"]["title"] == "Modern docs"
        assert status["files"]["skipped"] == [LONG_NAME]  # valid upstream, 132 characters once namespaced
        names = [t["name"] for t in catalog.listing(everything)]
        assert {split_name(n)[0] for n in names if split_name(n)} == {"legacy", "modern", "files"}  # type: ignore[index]
        assert "legacy__echo" in names and "modern__echo" in names and "files__echo" in names
        assert not any(n.startswith("down__") for n in names) and f"files__{LONG_NAME}" not in names
        assert len(names) == status["legacy"]["tools"] + status["modern"]["tools"] + status["files"]["tools"]
        # the listed dicts are MCP Tool JSON with the namespaced name
        echo = next(t for t in catalog.listing(everything) if t["name"] == "modern__echo")
        assert echo["description"] == "Echo the text back." and echo["inputSchema"]["required"] == ["text"]
        # resolution, and the call through the resolved upstream
        found = catalog.resolve_tool("modern__echo")
        assert found is not None and found[0] is catalog.get("modern") and found[1].name == "echo"
        result = await found[0].call_tool(found[1].name, {"text": "via catalog"}, 5)
        assert isinstance(result.content[0], mcp_types.TextContent) and result.content[0].text == "via catalog"
        assert catalog.resolve_tool("files__" + LONG_NAME) is None and catalog.resolve_tool("nope__echo") is None
        assert catalog.resolve_tool("modern_echo") is None
        # prompts namespaced, resources by URI
        prompt = catalog.resolve_prompt("files__greet")
        assert prompt is not None and prompt[0] is catalog.get("files") and prompt[1].name == "greet"
        assert catalog.resource_owner("info://legacy/readme") is catalog.get("legacy")
        assert catalog.resource_owner("info://nowhere/readme") is None
        assert [p["name"] for p in catalog.prompt_listing(lambda s: s != "legacy")] == ["modern__greet", "files__greet"]
        assert [r["uri"] for r in catalog.resource_listing(lambda s: True)] == [
            "info://legacy/readme",
            "info://modern/readme",
            "info://files/readme",
        ]
        # the policy filters the listing
        policies = Policies(McpSettings())
        policies.apply({"t": {"allow": ["modern/echo", "files/add"]}})
        assert [t["name"] for t in catalog.listing(policies.allows("t", None))] == ["modern__echo", "files__add"]


async def test_a_changed_tool_is_flagged_and_hidden_until_approved() -> None:
    flags: list[tuple[str, str, str, str]] = []
    first_use: list[str] = []
    pins = Pins(lambda *flag: flags.append(flag), on_first_use=lambda server, _hashes: first_use.append(server))
    pins.apply({})  # the store has no approvals yet
    proc, url = start_http_server("modern", name="modern")
    try:
        cfg = settings(http("docs", url, on_change="hide"), http("open", url))
        async with catalog_of(cfg, pins) as catalog:
            assert sorted(first_use) == ["docs", "open"] and flags == []  # trusted on first use
            assert catalog.resolve_tool("docs__echo") is not None
            stop_server(proc)
            proc, _ = start_http_server("modern", port_of(url), name="modern", variant="changed")
            for upstream in catalog.servers():
                await upstream.refresh()
            # flagged on both; hidden only where on_change is "hide"
            assert sorted((f[0], f[1]) for f in flags) == [("docs", "echo"), ("open", "echo")]
            assert pins.flagged()["docs"]["echo"][1] == flags[0][3]
            status = {s["id"]: s for s in catalog.status()}
            assert status["docs"]["flagged"] == ["echo"] and status["open"]["flagged"] == ["echo"]
            assert catalog.resolve_tool("docs__echo") is None and "echo" not in dict(catalog.tools("docs"))
            names = [t["name"] for t in catalog.listing(everything)]
            assert "docs__echo" not in names and "docs__add" in names and "open__echo" in names
            open_echo = catalog.resolve_tool("open__echo")
            assert open_echo is not None and open_echo[1].description == "Echo the text back, changed."
            # the admin approves what is seen now (stored, then back through the change feed)
            pins.apply({"docs": pins.seen("docs"), "open": pins.seen("open")})
            assert catalog.resolve_tool("docs__echo") is not None
            assert "docs__echo" in [t["name"] for t in catalog.listing(everything)]
            assert all(s["flagged"] == [] for s in catalog.status())
    finally:
        stop_server(proc)


async def test_apply_restarts_changed_servers_and_closes_removed_ones(servers: dict[str, str]) -> None:
    cfg = settings(http("a", servers["modern"]), http("b", servers["legacy"]))
    async with catalog_of(cfg) as catalog:
        a, b = catalog.get("a"), catalog.get("b")
        await catalog.apply([*settings(http("a", servers["modern"]), http("c", servers["modern"])).servers])
        assert [u.id for u in catalog.servers()] == ["a", "c"]
        assert catalog.get("a") is a and catalog.get("b") is None  # unchanged: untouched
        assert b is not None and b.state == "unavailable" and catalog.resolve_tool("b__echo") is None
        c = catalog.get("c")
        assert c is not None and await c.ready(15)
        assert catalog.resolve_tool("c__echo") is not None
        changed: list[McpServer] = [
            *settings(http("a", servers["modern"], timeout_s=5), http("c", servers["modern"])).servers
        ]
        await catalog.apply(changed)
        new_a = catalog.get("a")
        assert new_a is not None and new_a is not a and new_a.spec.timeout_s == 5
        assert a is not None and a.state == "unavailable"
        assert await new_a.ready(15) and catalog.resolve_tool("a__echo") is not None


# -- the listing's cache, on synthetic lists (no processes: what is measured is the catalog alone)


def synthetic(servers: int, tools: int) -> tuple[Catalog, list[Upstream]]:
    cfg = settings(*(http(f"s{i}", f"http://127.0.0.1:1/{i}") for i in range(servers)))
    catalog = Catalog(cfg, Pins())
    ups = catalog.servers()
    for up in ups:
        listed(catalog, up, [f"tool_{j:03d}" for j in range(tools)])
    return catalog, ups


def listed(catalog: Catalog, up: Upstream, names: list[str], description: str = "d") -> None:
    """What the supervisor does after a listing that changed something (state and lists, then on_lists)."""
    up.tools = [mcp_types.Tool(name=n, description=description, input_schema={"type": "object"}) for n in names]
    up.resources = [mcp_types.Resource(name="r", uri="info://shared/readme")]
    up.listed_at = time.monotonic()
    up.lists_version += 1
    up.state = "ready"
    catalog._on_lists(up)  # the callback Catalog gives its upstreams


def test_listing_reuses_the_same_list_and_dicts_until_something_changes() -> None:
    catalog, ups = synthetic(3, 4)
    policies = Policies(McpSettings())
    policies.apply({"t": {"allow": ["s0", "s2/tool_001"]}, "u": {"allow": ["*"]}})
    allowed = policies.allows("t", None)
    first = catalog.listing(allowed)
    assert [t["name"] for t in first] == [f"s0__tool_{j:03d}" for j in range(4)] + ["s2__tool_001"]
    assert catalog.listing(policies.allows("t", None)) is first  # same predicate: the very same list
    everyone = catalog.listing(policies.allows("u", None))
    assert everyone is not first and everyone[0] is first[0]  # other callers share the serialised dicts
    listed(catalog, ups[1], ["tool_000", "other"])  # a list changed: answered anew
    again = catalog.listing(allowed)
    assert again is not first and again == first
    assert again[0] is first[0]  # servers whose lists did not change keep their dicts
    assert [t["name"] for t in catalog.listing(policies.allows("u", None))][4:6] == ["s1__tool_000", "s1__other"]
    ups[2].state = "unavailable"  # what the supervisor does on a loss
    catalog._on_lists(ups[2])
    assert [t["name"] for t in catalog.listing(allowed)] == [f"s0__tool_{j:03d}" for j in range(4)]
    assert catalog.resolve_tool("s2__tool_001") is not None  # still known: a call says it is unavailable (502)
    # the first server listing a URI owns it
    assert catalog.resource_owner("info://shared/readme") is ups[0]
    assert [r["uri"] for r in catalog.resource_listing(lambda s: True)] == ["info://shared/readme"]


def test_listing_from_cache_is_fast() -> None:
    catalog, _ = synthetic(10, 50)
    policies = Policies(McpSettings())
    policies.apply({"t": {"allow": [f"s{i}" for i in range(0, 10, 2)], "deny": ["*/tool_04*"]}})
    allowed = policies.allows("t", None)
    assert len(catalog.listing(allowed)) == 5 * 40
    start = time.perf_counter()
    for _ in range(1000):
        catalog.listing(allowed)
    cached = (time.perf_counter() - start) / 1000
    fresh_total = 0.0
    for _ in range(20):  # a predicate the catalog has not seen (its answers memoised): the filter runs
        predicate = policies.allows("t", None)
        catalog._cache.clear()
        start = time.perf_counter()
        catalog.listing(predicate)
        fresh_total += time.perf_counter() - start
    assert cached < 0.0002, f"{cached * 1e6:.1f} us from cache"
    assert fresh_total / 20 < 0.002, f"{fresh_total / 20 * 1e6:.0f} us filtering 500 tools"


def test_approvals_arriving_after_the_first_listing_hide_changed_tools() -> None:
    cfg = settings(http("docs", "http://127.0.0.1:1/mcp", on_change="hide"), http("open", "http://127.0.0.1:1/x"))
    pins = Pins()
    catalog = Catalog(cfg, pins)
    docs, other = catalog.servers()
    listed(catalog, docs, ["echo", "add"])
    listed(catalog, other, ["echo"])
    assert catalog.resolve_tool("docs__echo") is not None  # nothing judged before the store's approvals
    stored = {"docs": {**pins.seen("docs"), "echo": "0" * 64}, "open": {"echo": "1" * 64}}
    pins.apply(stored)  # the change feed's first load (the watcher re-checks every server)
    assert catalog.resolve_tool("docs__echo") is None and catalog.resolve_tool("docs__add") is not None
    assert catalog.resolve_tool("open__echo") is not None  # flagged only
    assert {s["id"]: s["flagged"] for s in catalog.status()} == {"docs": ["echo"], "open": ["echo"]}
    assert [t["name"] for t in catalog.listing(everything)] == ["docs__add", "open__echo"]
