"""The catalog: every upstream MCP server of this worker, its tools namespaced, its lists cached and pinned.

Tools and prompts are listed as ``<server>__<name>`` (split on the first ``__``: server ids contain no ``_``);
a name that breaks the tool-name rule once namespaced (1-128 characters of ``[A-Za-z0-9_.-]``) is skipped and
logged once (``status()`` shows it as ``skipped``). Resource URIs are not renamed: the first server (in order)
listing a URI owns it. Each server's views are rebuilt when its lists change (the supervisor's ``on_lists``) or
the approvals change (:meth:`Pins.apply`); :meth:`Catalog.listing`, on the path of every ``tools/list``, only
filters precomputed ``(server, tool, dict)`` rows by the caller's memoised policy test, and returns the very same
list to the same predicate until something changed.

Example:
    >>> from ferrogate.config.mcp import McpSettings
    >>> from ferrogate.mcp.pins import Pins
    >>> catalog = Catalog(McpSettings(), Pins())
    >>> catalog.listing(lambda server, tool: True), catalog.resolve_tool("docs__search")
    ([], None)
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mcp_types

from ferrogate.config.mcp import McpHttpServer, McpServer, McpSettings, McpStdioServer
from ferrogate.mcp.pins import Pins
from ferrogate.mcp.upstream import Upstream

logger = logging.getLogger(__name__)

#: The tool-name rule (2025-11-25), applied to namespaced names.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
SEPARATOR = "__"

Allowed = Callable[[str, str], bool]
Row = tuple[str, str, dict[str, Any]]


def namespaced(server_id: str, name: str) -> str:
    """``<server>__<name>``.

    Example:
        >>> namespaced("github", "create_issue")
        'github__create_issue'
    """
    return f"{server_id}{SEPARATOR}{name}"


def split_name(name: str) -> tuple[str, str] | None:
    """``(server, tool)`` of a namespaced name (split on the first ``__``), or None.

    Example:
        >>> split_name("github__create__issue"), split_name("nothing")
        (('github', 'create__issue'), None)
    """
    server, sep, tool = name.partition(SEPARATOR)
    return (server, tool) if sep and server and tool else None


@dataclass
class _View:
    """One server's lists as the catalog serves them (rebuilt when its lists or the approvals change)."""

    tools: list[tuple[str, mcp_types.Tool]] = field(default_factory=list)  # visible (hidden pins left out)
    rows: list[Row] = field(default_factory=list)  # tools/list dicts, namespaced
    prompts: dict[str, mcp_types.Prompt] = field(default_factory=dict)  # namespaced -> prompt
    prompt_rows: list[dict[str, Any]] = field(default_factory=list)
    resource_rows: list[dict[str, Any]] = field(default_factory=list)
    template_rows: list[dict[str, Any]] = field(default_factory=list)
    flagged: set[str] = field(default_factory=set)
    skipped: list[str] = field(default_factory=list)
    lists_version: int = -1


def _dump(model: Any, name: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    if name is not None:
        out["name"] = name
    return out


class Catalog:
    """Every :class:`Upstream` of this worker, in configuration order."""

    def __init__(self, settings: McpSettings, pins: Pins) -> None:
        self._settings = settings
        self._pins = pins
        self._specs: list[McpHttpServer | McpStdioServer] = list(settings.servers) if settings.enabled else []
        self._upstreams: dict[str, Upstream] = {}
        self._views: dict[str, _View] = {}
        self._started = False
        self._applying = asyncio.Lock()  # one reload at a time (the change feed and a config reload may race)
        self._version = 0  # bumped on every change of what listing() answers
        self._rows: list[Row] = []
        self._tool_index: dict[str, tuple[Upstream, mcp_types.Tool]] = {}
        self._prompt_index: dict[str, tuple[Upstream, mcp_types.Prompt]] = {}
        self._owners: dict[str, Upstream] = {}
        self._cache: weakref.WeakKeyDictionary[Allowed, tuple[int, list[dict[str, Any]]]] = weakref.WeakKeyDictionary()
        self._logged_skips: set[tuple[str, str, str]] = set()
        for spec in _unique(self._specs):
            self._upstreams[spec.id] = Upstream(spec, on_lists=self._on_lists)
        pins.watch(self._on_pins)

    async def start(self) -> None:
        """Start every enabled upstream (each connects in its own task; this returns at once)."""
        self._started = True
        for upstream in list(self._upstreams.values()):
            await upstream.start()

    async def apply(self, servers: Sequence[McpServer]) -> None:
        """Reload: new and changed servers are (re)started, removed ones closed, unchanged ones untouched
        (servers compare by value, credentials included: applying the same servers again changes nothing)."""
        async with self._applying:
            await self._apply(servers)

    async def _apply(self, servers: Sequence[McpServer]) -> None:
        specs = _unique(servers) if self._settings.enabled else []
        old = self._upstreams
        keep: dict[str, Upstream] = {}
        closing: list[Upstream] = []
        for spec in specs:
            current = old.get(spec.id)
            if current is not None and current.spec == spec:
                keep[spec.id] = current
            else:
                if current is not None:
                    closing.append(current)
                keep[spec.id] = Upstream(spec, on_lists=self._on_lists)
        closing += [u for sid, u in old.items() if sid not in keep]
        self._upstreams = keep
        for upstream in closing:  # a changed server's views come back with its new session's listing
            self._views.pop(upstream.id, None)
            if upstream.id not in keep:
                self._pins.discard(upstream.id)
        self._rebuild()
        await asyncio.gather(*(u.close() for u in closing))
        if self._started:
            for upstream in keep.values():
                await upstream.start()

    def servers(self) -> list[Upstream]:
        """Every upstream, in configuration order."""
        return list(self._upstreams.values())

    def get(self, server_id: str) -> Upstream | None:
        """The upstream of that id, or None."""
        return self._upstreams.get(server_id)

    def tools(self, server_id: str) -> list[tuple[str, mcp_types.Tool]]:
        """A server's (upstream name, tool) pairs, minus tools hidden until re-approved (last listing kept while
        the server is unavailable)."""
        view = self._views.get(server_id)
        return [] if view is None else view.tools

    def resolve_tool(self, namespaced_name: str) -> tuple[Upstream, mcp_types.Tool] | None:
        """The upstream and tool of a namespaced name; None when unknown, skipped or hidden."""
        return self._tool_index.get(namespaced_name)

    def resolve_prompt(self, namespaced_name: str) -> tuple[Upstream, mcp_types.Prompt] | None:
        """The upstream and prompt of a namespaced prompt name, or None."""
        return self._prompt_index.get(namespaced_name)

    def resource_owner(self, uri: str) -> Upstream | None:
        """The server that listed ``uri`` (the first in order, on a clash), or None."""
        return self._owners.get(uri)

    def listing(self, allowed: Allowed) -> list[dict[str, Any]]:
        """The tools ``allowed(server, tool)`` grants, of the servers that are ready, as MCP Tool JSON dicts with
        namespaced names.

        The list and its dicts are shared (the same objects for the same predicate until a list, a state or an
        approval changes): callers must not modify them.
        """
        try:
            hit = self._cache.get(allowed)
        except TypeError:  # not weakly referenceable: answered, not cached
            return [row for server, tool, row in self._rows if allowed(server, tool)]
        if hit is not None and hit[0] == self._version:
            return hit[1]
        out = [row for server, tool, row in self._rows if allowed(server, tool)]
        self._cache[allowed] = (self._version, out)
        return out

    def prompt_listing(self, server_ok: Callable[[str], bool]) -> list[dict[str, Any]]:
        """The namespaced prompts (MCP Prompt JSON) of the ready servers ``server_ok`` accepts."""
        return [row for u in self._ready() if server_ok(u.id) for row in self._views[u.id].prompt_rows]

    def resource_listing(self, server_ok: Callable[[str], bool]) -> list[dict[str, Any]]:
        """The resources (MCP Resource JSON, URIs as listed) of the ready servers ``server_ok`` accepts; a URI
        owned by an earlier server is left out."""
        return [
            row
            for u in self._ready()
            if server_ok(u.id)
            for row in self._views[u.id].resource_rows
            if self._owners.get(row["uri"]) is u
        ]

    def template_listing(self, server_ok: Callable[[str], bool]) -> list[dict[str, Any]]:
        """The resource templates (MCP ResourceTemplate JSON, as listed) of the ready servers ``server_ok``
        accepts."""
        return [row for u in self._ready() if server_ok(u.id) for row in self._views[u.id].template_rows]

    def status(self) -> list[dict[str, Any]]:
        """``{id, title, transport, state, protocol_version, last_error, tools, flagged, skipped}`` per server."""
        out = []
        for upstream in self._upstreams.values():
            view = self._views.get(upstream.id) or _View()
            out.append(
                {
                    "id": upstream.id,
                    "title": upstream.spec.title,
                    "transport": upstream.spec.transport,
                    "state": upstream.state,
                    "protocol_version": upstream.protocol_version,
                    "last_error": upstream.last_error,
                    "tools": len(view.tools),
                    "flagged": sorted(view.flagged),
                    "skipped": list(view.skipped),
                }
            )
        return out

    async def close(self) -> None:
        """Close every upstream (stdio children terminated)."""
        self._started = False
        await asyncio.gather(*(u.close() for u in self._upstreams.values()))

    # -- views

    def _on_lists(self, upstream: Upstream) -> None:
        if self._upstreams.get(upstream.id) is not upstream:
            return  # a replaced or removed server closing down
        view = self._views.get(upstream.id)
        if view is None or view.lists_version != upstream.lists_version:
            self._views[upstream.id] = self._view(upstream, check=True)
        self._rebuild()

    def _on_pins(self) -> None:
        for upstream in self._upstreams.values():
            if upstream.id in self._views:
                self._views[upstream.id] = self._view(upstream, check=False)
        self._rebuild()

    def _view(self, upstream: Upstream, *, check: bool) -> _View:
        sid = upstream.id
        view = _View(lists_version=upstream.lists_version)
        if upstream.listed_at is None:
            return view
        if check:
            self._pins.check(sid, upstream.tools)
        view.flagged = set(self._pins.flagged().get(sid, {}))
        hidden = view.flagged if upstream.spec.on_change == "hide" else set()
        seen: set[str] = set()
        for tool in upstream.tools:
            name = namespaced(sid, tool.name)
            if not TOOL_NAME.match(tool.name) or not TOOL_NAME.match(name) or tool.name in seen:
                view.skipped.append(tool.name)
                self._log_skip(sid, tool.name, "tool", "not a valid name once namespaced, or listed twice")
                continue
            seen.add(tool.name)
            if tool.name in hidden:
                continue
            view.tools.append((tool.name, tool))
            view.rows.append((sid, tool.name, _dump(tool, name)))
        for prompt in upstream.prompts:
            name = namespaced(sid, prompt.name)
            if not TOOL_NAME.match(prompt.name) or not TOOL_NAME.match(name) or name in view.prompts:
                self._log_skip(sid, prompt.name, "prompt", "not a valid name once namespaced, or listed twice")
                continue
            view.prompts[name] = prompt
            view.prompt_rows.append(_dump(prompt, name))
        view.resource_rows = [_dump(r) for r in upstream.resources]
        view.template_rows = [_dump(t) for t in upstream.resource_templates]
        return view

    def _rebuild(self) -> None:
        """The cross-server indexes, from the views (cheap: it runs only when something changed)."""
        rows: list[Row] = []
        tools: dict[str, tuple[Upstream, mcp_types.Tool]] = {}
        prompts: dict[str, tuple[Upstream, mcp_types.Prompt]] = {}
        owners: dict[str, Upstream] = {}
        for upstream in self._upstreams.values():
            view = self._views.get(upstream.id)
            if view is None:
                continue
            for name, tool in view.tools:
                tools[namespaced(upstream.id, name)] = (upstream, tool)
            for name, prompt in view.prompts.items():
                prompts[name] = (upstream, prompt)
            for resource in upstream.resources:
                if owners.setdefault(resource.uri, upstream) is not upstream:
                    self._log_skip(upstream.id, resource.uri, "resource", "an earlier server lists it")
            if upstream.state == "ready":
                rows += view.rows
        self._rows, self._tool_index, self._prompt_index, self._owners = rows, tools, prompts, owners
        self._version += 1

    def _ready(self) -> list[Upstream]:
        return [u for u in self._upstreams.values() if u.state == "ready" and u.id in self._views]

    def _log_skip(self, server_id: str, name: str, what: str, why: str) -> None:
        if (server_id, what, name) not in self._logged_skips:
            self._logged_skips.add((server_id, what, name))
            logger.warning("MCP server %r: %s %r skipped (%s)", server_id, what, name[:200], why)


def _unique(servers: Sequence[McpServer]) -> list[McpHttpServer | McpStdioServer]:
    """The servers, the first of each id (a later duplicate is logged and ignored)."""
    out: dict[str, McpHttpServer | McpStdioServer] = {}
    for spec in servers:
        if spec.id in out:
            logger.warning("MCP server id %r appears twice; the later one is ignored", spec.id)
            continue
        out[spec.id] = spec
    return list(out.values())
