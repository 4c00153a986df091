"""The worker's MCP tool gateway, assembled in one place: pins, policies, the catalog of upstream servers, the
credential sealer, the call phases and both fronts (``/mcp/v1/*`` REST and the aggregated ``/mcp`` endpoint), and
the change feed that keeps them equal to the store's (servers added through the admin API, tool policies, pins).

:class:`McpRuntime` is built by ``server.app.Gateway`` and started in ``__rsgi_init__``:

1. the catalog connects to every configured server (each in its own supervisor task: one slow or dead server
   delays nothing);
2. :meth:`McpRuntime.apply` (the change feed's target, ``guardrails.sync.PolicySync`` over ``store.mcp``) adds
   the stored servers (their credentials unsealed here, in memory only), applies the tool policies and the
   approved pins; it runs at start and within a second of every change made on any worker of any instance;
3. a server's first successful listing is its approval (trust on first use): the pins are stored with
   ``first_use=True``, so of all the workers offering it one is stored, and audited as ``mcp.server.approve`` by
   ``system``; a tool whose definition differs afterwards is counted (``ferrogate_mcp_tool_changes_total``) and
   audited (``mcp.tool.changed``) once per new definition, and hidden when its server says ``on_change: hide``.

Example:
    >>> # runtime = McpRuntime(McpWiring(config.mcp, store, limiter, guardrails, audit, metrics, auth, ...))
    >>> # await runtime.start(); ...; await runtime.close()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from ferrogate.audit.events import admin_event
from ferrogate.config.mcp import McpServer, McpSettings
from ferrogate.guardrails.sync import PolicySync
from ferrogate.mcp.pins import Pins
from ferrogate.mcp.policy import Policies
from ferrogate.mcp.secrets import Sealer, SealError, merge_credentials
from ferrogate.observability.families import MCP_TOOL_CHANGES
from ferrogate.store.audit import AuditEvent
from ferrogate.store.health import STORE_FAULTS
from ferrogate.store.records import new_id

if TYPE_CHECKING:
    from granian.rsgi import HTTPProtocol, Scope

    from ferrogate.audit.writer import AuditWriter
    from ferrogate.auth.authenticator import Authenticator
    from ferrogate.guardrails import Guardrails
    from ferrogate.limits import Limiter
    from ferrogate.mcp.catalog import Catalog
    from ferrogate.mcp.endpoint import McpEndpoint
    from ferrogate.mcp.rest import McpRest
    from ferrogate.observability.metrics import Metrics
    from ferrogate.store import Store

log = logging.getLogger("ferrogate.mcp")

#: The Redis channel of MCP changes (stored servers, tool policies, approvals).
CHANNEL = "ferrogate:mcp:changed"
_SERVER: TypeAdapter[Any] = TypeAdapter(McpServer)


async def until_gone(proto: HTTPProtocol, work: Awaitable[None]) -> None:
    """Run ``work`` (an MCP request's handler) unless the client hangs up first: then it is cancelled, and with
    it the upstream call it waits for (a tool call is audited as ``client_closed``). ``work`` runs in this task:
    the hang-up cancels it through a callback (one future per request, no second task)."""
    task = asyncio.current_task()
    assert task is not None
    hung_up = finished = False

    def cancel(_: object) -> None:
        nonlocal hung_up
        if not finished:  # (scheduled in the very step ``work`` finished in: too late to matter)
            hung_up = True
            task.cancel()

    gone = asyncio.ensure_future(proto.client_disconnect())
    gone.add_done_callback(cancel)
    try:
        await work
    except asyncio.CancelledError:
        if not hung_up:  # a cancel of our own (shutdown): it goes on
            raise
        task.uncancel()
    finally:
        finished = True
        gone.remove_done_callback(cancel)
        gone.cancel()


@dataclass(frozen=True, slots=True)
class McpWiring:
    """What the MCP gateway takes from the worker (one object, not ten arguments)."""

    settings: McpSettings
    store: Store
    limiter: Limiter
    guardrails: Guardrails | None
    audit: AuditWriter | None
    metrics: Metrics | None
    auth: Authenticator
    master_key: bytes
    redis_url: str | None
    timeout_s: float
    poll_s: float = 0.5


class _NoCatalog:
    """The catalog before the serving parts are built (no server configured or stored, no MCP request yet), and
    for good with ``mcp.enabled: false``: no server is connected."""

    def status(self) -> list[dict[str, Any]]:
        return []

    def get(self, server_id: str) -> None:
        return None

    async def apply(self, servers: list[Any]) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class McpRuntime:
    """The worker's MCP gateway: its parts, their start and stop, and the change feed's target.

    What the admin plane needs (the registry's policies, pins, sealer and change feed) is built at once. The
    serving parts (the catalog of upstream servers, the call phases, both fronts) import the MCP SDK, which with
    its dependencies is ~55 MB of a worker's memory, so they are built on first need: at start when a server is
    configured, when the store's first server arrives, or at the first request to ``/mcp`` or ``/mcp/v1``
    (that one request waits for the import, ~0.3 s). With ``mcp.enabled: false`` they never are, and ``rest``
    and ``endpoint`` are ``None``.
    """

    def __init__(self, wiring: McpWiring) -> None:
        self.wiring = wiring
        self.pins = Pins(self._flagged, on_first_use=self._first_use)
        self.policies = Policies(wiring.settings)
        self.sealer = Sealer(wiring.master_key)
        self.catalog: Catalog | _NoCatalog = _NoCatalog()
        self._rest: McpRest | None = None
        self._endpoint: McpEndpoint | None = None
        self._started = False
        #: The two fronts' handlers (stable objects: the server compares them); ``None`` when MCP is off.
        self.rest: Callable[[Scope, HTTPProtocol, list[tuple[str, str]], str], Awaitable[None]] | None = None
        self.endpoint: Callable[[Scope, HTTPProtocol, list[tuple[str, str]], str], Awaitable[None]] | None = None
        if wiring.settings.enabled:
            self.rest, self.endpoint = self._rest_front, self._mcp_front
        #: Keeps servers, policies and pins equal to the store's (``apply`` is its target).
        self.sync = PolicySync(
            self,
            wiring.store,
            wiring.redis_url,
            source=wiring.store.mcp,
            channel=CHANNEL,
            name="MCP settings",
            poll_s=wiring.poll_s,
            timeout_s=wiring.timeout_s,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._configured = list(wiring.settings.servers)

    async def _serve(self) -> tuple[McpRest, McpEndpoint]:
        """The serving parts, built once (and the catalog started if the worker is)."""
        if self._rest is None or self._endpoint is None:
            from ferrogate.mcp.calls import McpDeps, ToolCalls
            from ferrogate.mcp.catalog import Catalog
            from ferrogate.mcp.endpoint import McpEndpoint
            from ferrogate.mcp.rest import McpRest

            wiring = self.wiring
            self.catalog = catalog = Catalog(wiring.settings, self.pins)
            calls = ToolCalls(
                McpDeps(
                    catalog=catalog,
                    policies=self.policies,
                    limiter=wiring.limiter,
                    guardrails=wiring.guardrails,
                    audit=wiring.audit,
                    metrics=wiring.metrics,
                    settings=wiring.settings,
                    auth=wiring.auth,
                    master_key=wiring.master_key,
                )
            )
            self._rest, self._endpoint = McpRest(calls), McpEndpoint(calls)
            if self._started:
                await catalog.start()
        return self._rest, self._endpoint

    async def _rest_front(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """``/mcp/v1/*``."""
        rest, _ = await self._serve()
        await rest(scope, proto, headers, rid)

    async def _mcp_front(self, scope: Scope, proto: HTTPProtocol, headers: list[tuple[str, str]], rid: str) -> None:
        """``/mcp``."""
        _, endpoint = await self._serve()
        await endpoint(scope, proto, headers, rid)

    def status(self) -> list[dict[str, Any]]:
        """The catalog's status of every server (the admin plane's view; empty before anything is served)."""
        return self.catalog.status()

    async def start(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[None]]:
        """Worker start: connect the configured servers, load the stored state; the change feed's tasks (the
        caller cancels them at stop)."""
        if self._configured and self.wiring.settings.enabled:
            await self._serve()
        self._started = True
        await self.catalog.start()
        await self.sync.load()
        return [loop.create_task(self.sync.poll()), loop.create_task(self.sync.listen())]

    async def close(self) -> None:
        """Worker stop: pending approvals written, every upstream session closed (stdio children ended)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        await self.catalog.close()
        await self.sync.close()

    async def apply(self, docs: Mapping[str, Any]) -> None:
        """The change feed's target: ``store.mcp.all()`` -> the configured servers plus the stored ones, the tool
        policies and the approved pins. A stored server that cannot be unsealed or read is left out (logged),
        never the whole set; a policy set the registry refuses raises (the previous state stays)."""
        servers: list[Any] = list(self._configured)
        taken = {s.id for s in servers}
        for server_id, row in sorted((docs.get("servers") or {}).items()):
            if server_id in taken:
                continue
            try:
                creds = self.sealer.unseal(row["sealed"]) if row.get("sealed") else {}
                servers.append(_SERVER.validate_python(merge_credentials(row["doc"], creds)))
            except SealError as exc:
                log.error("MCP server %r left out: its credentials cannot be unsealed (%s)", server_id, exc)
            except ValidationError as exc:
                log.error(
                    "MCP server %r left out: its stored document is invalid (%d errors)", server_id, exc.error_count()
                )
        self.policies.apply(docs.get("policies") or {})
        if servers and self.wiring.settings.enabled:
            await self._serve()
        # servers first: a deleted server must be gone before its pins are (else its listing is trusted anew)
        await self.catalog.apply(servers)
        self.pins.apply(docs.get("pins") or {})

    def validate(self, scope: str, doc: dict[str, Any]) -> object:
        """A tool policy document of team ``scope`` (raises naming the field)."""
        return self.policies.validate(scope, doc)

    # ---- pins -----------------------------------------------------------------------------------------------

    def _first_use(self, server_id: str, hashes: Mapping[str, str]) -> None:
        self._spawn(self._approve_first(server_id, dict(hashes)))

    async def _approve_first(self, server_id: str, hashes: dict[str, str]) -> None:
        if self.catalog.get(server_id) is None:  # removed meanwhile
            return
        try:
            async with asyncio.timeout(self.wiring.timeout_s):
                stored = await self.wiring.store.mcp.approve(server_id, hashes, "system", first_use=True)
        except STORE_FAULTS as exc:  # the next listing offers it again
            log.warning("the first approval of MCP server %r could not be stored (%s)", server_id, exc)
            return
        if stored:
            audit = self.wiring.audit
            if audit is not None:
                event = admin_event("system", "mcp.server.approve", server_id, None)
                event.data = {"before": None, "after": hashes, "first_use": True}
                await audit.record_and_flush(event)
            await self.sync.changed()
        else:  # another worker or instance was first: its pins apply
            await self.sync.load()

    def _flagged(self, server_id: str, tool: str, approved: str, seen: str) -> None:
        """A tool's definition differs from its approval (once per new definition): metric and audit record."""
        metrics = self.wiring.metrics
        if metrics is not None:
            metrics.add(MCP_TOOL_CHANGES, (server_id, tool))
        log.warning(
            "MCP server %r: tool %r changed since its approval (%s)",
            server_id,
            tool,
            "added" if not approved else "changed",
        )
        audit = self.wiring.audit
        if audit is not None:
            audit.record(
                AuditEvent(
                    event_id=new_id("evt"),
                    created_at=datetime.now(UTC),
                    kind="admin",
                    actor="system",
                    action="mcp.tool.changed",
                    target=f"{server_id}__{tool}",
                    data={"server": server_id, "tool": tool, "approved": approved or None, "seen": seen},
                )
            )

    def _spawn(self, job: Any) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
