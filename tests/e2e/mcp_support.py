"""What the MCP gateway's end-to-end modules share: fake MCP servers as processes, a gateway configured over them,
teams with keys and tool policies, and the three ways in (the official SDK client, raw JSON-RPC, REST).

The fakes are :mod:`tests.fakes.mcp_servers` (the official SDK's servers): an HTTP one is started here
(:func:`start_fake`) and ended by its PID; a stdio one is started by the gateway's worker from its configuration.
The gateway is the real ``ferrogate serve`` (:class:`tests.support.Gateway`) with real authentication (the
master key, no ``--dev``) on a SQLite file of its own, or shared by two instances (:func:`start_gateway`).

Example:
    >>> servers_yaml([{"id": "web", "transport": "http", "url": "http://h/mcp"}])
    '{"mcp": {"servers": [{"id": "web", "transport": "http", "url": "http://h/mcp"}]}}'
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.fakes.mcp_support import port_of, start_http_server, stdio_params, stop_server
from tests.support import Gateway, admin

MASTER = "mcp-e2e-master-key-0123456789abcdef"
ENV = {"FERROGATE_MASTER_KEY": MASTER}
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
#: The ``_meta`` envelope every 2026-07-28 request carries.
ENVELOPE: dict[str, Any] = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}
_T = TypeVar("_T")


# ---- fake MCP servers ---------------------------------------------------------------------------------------------


@dataclass
class Fake:
    """An HTTP fake MCP server process (``generation`` legacy, modern or both) and how it was started."""

    generation: str
    opts: dict[str, Any]
    proc: Any
    url: str

    @property
    def port(self) -> int:
        return port_of(self.url)

    def kill(self) -> None:
        """SIGKILL it by its PID (what a crash does: no goodbye on any connection)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        stop_server(self.proc)

    def restart(self, **opts: Any) -> None:
        """Stop it, then start it again on the same port (with ``opts`` changed)."""
        self.stop()
        self.opts = {**self.opts, **opts}
        self.proc, self.url = _start_on(self.generation, self.port, self.opts)


def _start_on(generation: str, port: int, opts: dict[str, Any]) -> tuple[Any, str]:
    deadline = time.monotonic() + 10
    while True:  # the port may still be held for a moment by the previous process
        try:
            return start_http_server(generation, port, **opts)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def start_fake(generation: str, **opts: Any) -> Fake:
    """An HTTP fake on a free port (``opts``: ``name``, ``variant``, ``record``, ``sse``, ``tools``)."""
    proc, url = start_http_server(generation, 0, **opts)
    return Fake(generation, dict(opts), proc, url)


def start_fakes(specs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Fake]:
    """Several fakes started at once (each takes about a second to import the SDK): ``{id: (generation, opts)}``."""
    with concurrent.futures.ThreadPoolExecutor(max(1, len(specs))) as pool:
        futures = {sid: pool.submit(start_fake, generation, **opts) for sid, (generation, opts) in specs.items()}
        return {sid: future.result() for sid, future in futures.items()}


def http_server(sid: str, fake: Fake, **fields: Any) -> dict[str, Any]:
    """The configuration of an HTTP upstream served by ``fake``."""
    return {"id": sid, "transport": "http", "url": fake.url, **fields}


def stdio_server(sid: str, **fields: Any) -> dict[str, Any]:
    """The configuration of a stdio upstream (the fake started by the gateway's worker), named ``sid``."""
    opts = {k: fields.pop(k) for k in ("variant", "record", "tools") if k in fields}
    return {"id": sid, "transport": "stdio", **stdio_params(name=sid, **opts), **fields}


def servers_yaml(servers: list[dict[str, Any]], **mcp: Any) -> str:
    """A gateway configuration with these MCP servers (JSON is YAML), ``mcp`` settings and ``extra`` sections."""
    extra = mcp.pop("extra", {})
    return json.dumps({"mcp": {"servers": servers, **mcp}, **extra})


# ---- the gateway, teams and keys --------------------------------------------------------------------------------


def start_gateway(tmp: Path, config: str, store: Path | None = None) -> Gateway:
    """A gateway with real authentication (the master key); ``store``: a SQLite file another instance shares."""
    url = None if store is None else f"sqlite:///{store}"
    return Gateway(tmp, config, dev=False, env=ENV, database_url=url).wait_ready()


@dataclass
class Tenant:
    """A key of a team: its id, secret and team id."""

    team_id: str
    key_id: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def new_team(gw: Gateway, label: str) -> str:
    team: dict[str, Any] = admin(gw, "POST", "/teams", {"name": f"{label}-{time.monotonic_ns()}"})
    return str(team["id"])


def new_key(gw: Gateway, team_id: str) -> Tenant:
    made = admin(gw, "POST", "/keys", {"name": f"k-{time.monotonic_ns()}", "team_id": team_id})
    return Tenant(team_id, made["id"], made["key"])


def set_policy(gw: Gateway, team_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``POST /admin/v1/mcp/policies/{team_id}``: the stored answer."""
    out: dict[str, Any] = admin(gw, "POST", f"/mcp/policies/{team_id}", doc)
    return out


def server_status(gw: Gateway) -> dict[str, dict[str, Any] | None]:
    """Each server's live status (``GET /admin/v1/mcp/servers``), by id."""
    return {s["id"]: s["status"] for s in admin(gw, "GET", "/mcp/servers")["data"]}


def wait_ready(gw: Gateway, *ids: str, bound_s: float = 20.0) -> None:
    """Until every server of ``ids`` is ready on the gateway's worker."""
    until(lambda: all((s := server_status(gw).get(i)) is not None and s["state"] == "ready" for i in ids), bound_s)


def until(check: Callable[[], _T], bound_s: float = 10.0, step_s: float = 0.05) -> _T:
    """``check()``'s first truthy value, polled until ``bound_s`` (then the test fails)."""
    deadline = time.monotonic() + bound_s
    while not (got := check()):
        assert time.monotonic() < deadline, f"not within {bound_s} s"
        time.sleep(step_s)
    return got


def audit_records(gw: Gateway, **filters: Any) -> list[dict[str, Any]]:
    """``GET /admin/v1/audit`` with ``filters`` (``action``, ``actor``, ``target``, ``team_id``...)."""
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    found: list[dict[str, Any]] = admin(gw, "GET", f"/audit?{query}&limit=200")["data"]
    return found


# ---- the three ways in ------------------------------------------------------------------------------------------


def rest(gw: Gateway, method: str, path: str, key: str | None, body: Any = None, **kw: Any) -> httpx.Response:
    """``/mcp/v1{path}`` with ``key`` as the bearer (None: no credential)."""
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    headers.update(kw.pop("headers", {}))
    return httpx.request(method, f"{gw.url}/mcp/v1{path}", json=body, headers=headers, timeout=30, **kw)


def call_rest(gw: Gateway, key: str, server: str, tool: str, arguments: Any) -> httpx.Response:
    return rest(gw, "POST", f"/servers/{server}/tools/{tool}:call", key, {"arguments": arguments})


def rpc(
    gw: Gateway, key: str | None, method: str, params: dict[str, Any] | None = None, *, modern: bool = True,
    session: str | None = None, headers: dict[str, str] | None = None, rid: int = 1,
) -> httpx.Response:  # fmt: skip
    """One raw JSON-RPC request to ``/mcp``: at 2026-07-28 (the ``_meta`` envelope, ``Mcp-Method`` and, for a
    named method, ``Mcp-Name`` headers) or at 2025-11-25 (``session``: the ``Mcp-Session-Id``)."""
    sent = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    if key is not None:
        sent["authorization"] = f"Bearer {key}"
    params = dict(params or {})
    if modern:
        params["_meta"] = {**ENVELOPE, **params.get("_meta", {})}
        sent["mcp-protocol-version"] = MODERN
        sent["mcp-method"] = method
        name = params.get("name", params.get("uri"))
        if name is not None:
            sent["mcp-name"] = str(name)
    elif session is not None:
        sent["mcp-session-id"] = session
        sent["mcp-protocol-version"] = LEGACY
    sent.update(headers or {})
    body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
    return httpx.post(f"{gw.url}/mcp", json=body, headers=sent, timeout=30)


def initialize(gw: Gateway, key: str) -> str:
    """A 2025-11-25 session opened with raw JSON-RPC: its ``Mcp-Session-Id``."""
    params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}
    resp = rpc(gw, key, "initialize", params, modern=False)
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"]["protocolVersion"] == LEGACY
    return str(resp.headers["mcp-session-id"])


@contextlib.asynccontextmanager
async def sdk(gw: Gateway, key: str, mode: str, **kw: Any) -> AsyncIterator[Client]:
    """The official SDK's client on the gateway's ``/mcp``, the virtual key as bearer (``mode`` legacy or auto)."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        transport = streamable_http_client(f"{gw.url}/mcp", http_client=http)
        async with Client(transport, mode=mode, read_timeout_seconds=20, **kw) as client:
            yield client


def run(coro: Any) -> Any:
    """Run one coroutine on a new event loop (the tests are synchronous; each SDK session is its own)."""
    return asyncio.run(coro)


async def tool_names(client: Client) -> set[str]:
    return {t.name for t in (await client.list_tools()).tools}


def text_of(result: Any) -> str:
    """The text content of a ``CallToolResult`` (SDK model or REST JSON)."""
    if isinstance(result, dict):
        return "".join(c["text"] for c in result["content"] if c["type"] == "text")
    return "".join(c.text for c in result.content if c.type == "text")


@dataclass
class World:
    """One module's gateway over its fakes, with its tenants."""

    gw: Gateway
    fakes: dict[str, Fake]
    tenants: dict[str, Tenant] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.gw.stop()
        for fake in self.fakes.values():
            fake.stop()


@contextlib.contextmanager
def running(
    tmp: Path, fakes: dict[str, Fake], servers: list[dict[str, Any]], *, store: Path | None = None,
    ready: list[str] | None = None, **mcp: Any,
) -> Iterator[World]:  # fmt: skip
    """A gateway configured with ``servers`` (and ``mcp`` settings) over ``fakes``, the servers ``ready`` names
    (default: every enabled one) ready; the gateway and the fakes stopped afterwards, whatever happens."""
    try:
        gw = start_gateway(tmp, servers_yaml(servers, **mcp), store)
    except BaseException:
        for fake in fakes.values():
            fake.stop()
        raise
    world = World(gw, fakes)
    try:
        wait_ready(gw, *(ready if ready is not None else [s["id"] for s in servers if s.get("enabled", True)]))
        yield world
    finally:
        world.close()


__all__ = [
    "ENV",
    "LEGACY",
    "MASTER",
    "MODERN",
    "Fake",
    "Tenant",
    "World",
    "audit_records",
    "call_rest",
    "http_server",
    "initialize",
    "new_key",
    "new_team",
    "rest",
    "rpc",
    "run",
    "running",
    "sdk",
    "server_status",
    "servers_yaml",
    "set_policy",
    "start_fake",
    "start_fakes",
    "start_gateway",
    "stdio_server",
    "text_of",
    "tool_names",
    "until",
    "wait_ready",
]
