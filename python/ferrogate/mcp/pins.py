"""Tool pinning: a hash of each tool's definition at approval; a tool that changed since is flagged.

Approval model:
    * Nothing is approved nor flagged before the store's approvals arrived (the first :meth:`Pins.apply`): a
      listing seen before is kept and judged then, so a worker that lists before it loaded the store never
      mistakes a changed tool for a new server's.
    * A server that was never approved is trusted on first use: its first successful listing is recorded as its
      approval (``on_first_use(server, hashes)`` lets the gateway store it, ``store.mcp.approve(...,
      actor="system")``, and audit ``mcp.server.approve``; until the store's approvals come back through
      :meth:`Pins.apply`, the worker keeps that approval itself).
    * An admin re-approves a server with ``POST /admin/v1/mcp/servers/{id}/approve``, which stores
      :meth:`Pins.seen` of that server; the change feed then calls :meth:`Pins.apply` and the flags clear.
    * A listed tool whose hash differs from its approved one is flagged ``changed``; a tool absent from the
      approval is flagged ``added`` (its approved hash is ``""``). A removed tool is not flagged.
    * ``on_flag(server, tool, approved_hash, seen_hash)`` is called once per (server, tool, seen hash): the
      metric ``ferrogate_mcp_tool_changes_total`` and the audit record ``mcp.tool.changed``.

Example:
    >>> import mcp_types
    >>> tool = mcp_types.Tool(name="echo", description="Echo.", input_schema={"type": "object"})
    >>> pins = Pins()
    >>> pins.check("docs", [tool])  # before the store's approvals: nothing judged yet
    set()
    >>> pins.apply({"docs": {"echo": pin_hash(tool)}})
    >>> pins.check("docs", [tool])
    set()
    >>> changed = mcp_types.Tool(name="echo", description="Echo, and more.", input_schema={"type": "object"})
    >>> pins.check("docs", [changed])
    {'echo'}
"""

from __future__ import annotations

import hashlib
import logging
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    import mcp_types

logger = logging.getLogger(__name__)

#: ``(server, tool, approved_hash, seen_hash)``; ``approved_hash`` is ``""`` for a tool added after approval.
OnFlag = Callable[[str, str, str, str], None]
#: ``(server, {tool: hash})``: a server's first listing, to be stored as its approval.
OnFirstUse = Callable[[str, Mapping[str, str]], None]


def pin_hash(tool: mcp_types.Tool) -> str:
    """The sha256 (hex) of a tool's name, description, input and output schemas (JSON, keys sorted).

    Example:
        >>> import mcp_types
        >>> t = mcp_types.Tool(name="a", input_schema={"type": "object"})
        >>> pin_hash(t) == pin_hash(mcp_types.Tool(name="a", input_schema={"type": "object"}, title="A"))
        True
    """
    doc = {
        "name": tool.name,
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "outputSchema": tool.output_schema,
    }
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Pins:
    """The approved tool hashes of every server (from the store), and the tools that differ from them."""

    def __init__(self, on_flag: OnFlag | None = None, *, on_first_use: OnFirstUse | None = None) -> None:
        self._on_flag = on_flag
        self._on_first_use = on_first_use
        self._approved: dict[str, dict[str, str]] = {}
        self._first_use: dict[str, dict[str, str]] = {}  # approvals taken here, not yet back from the store
        self._seen: dict[str, dict[str, str]] = {}
        self._flagged: dict[str, dict[str, tuple[str, str]]] = {}
        self._notified: set[tuple[str, str, str]] = set()
        self._watchers: list[Callable[[], Callable[[], None] | None]] = []
        self._loaded = False

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every :meth:`apply` (the catalog re-checks its servers then); a bound method is
        held weakly (a catalog that is gone stops being called)."""
        if isinstance(callback, types.MethodType):
            self._watchers.append(weakref.WeakMethod(callback))
        else:
            self._watchers.append(lambda: callback)

    def apply(self, approved: Mapping[str, Mapping[str, str]]) -> None:
        """Replace the approvals (server -> tool -> approved hash, as stored); re-evaluates the flags."""
        self._approved = {server: dict(hashes) for server, hashes in approved.items()}
        self._first_use = {s: h for s, h in self._first_use.items() if s not in self._approved}
        self._loaded = True
        for server, seen in self._seen.items():
            if self.approved(server) is None:
                self._trust(server, seen)
            self._evaluate(server, seen)
        for ref in list(self._watchers):
            callback = ref()
            if callback is None:
                self._watchers.remove(ref)
            else:
                callback()

    def approved(self, server_id: str) -> Mapping[str, str] | None:
        """The approved hashes of a server, or None when it was never approved."""
        return self._approved.get(server_id, self._first_use.get(server_id))

    def check(self, server_id: str, tools: Sequence[mcp_types.Tool]) -> set[str]:
        """Record a server's listing; the names of its tools that differ from the approval (flagged).

        A server never approved is approved now (trust on first use) and nothing is flagged. Before the first
        :meth:`apply` nothing is judged (the listing is kept for it).
        """
        seen = {tool.name: pin_hash(tool) for tool in tools}
        self._seen[server_id] = seen
        if not self._loaded:
            return set()
        if self.approved(server_id) is None:
            self._trust(server_id, seen)
        return self._evaluate(server_id, seen)

    @property
    def loaded(self) -> bool:
        """Whether the store's approvals arrived (:meth:`apply` ran)."""
        return self._loaded

    def flagged(self) -> dict[str, dict[str, tuple[str, str]]]:
        """server -> tool -> (approved hash, seen hash) of every flagged tool."""
        return {server: dict(tools) for server, tools in self._flagged.items() if tools}

    def seen(self, server_id: str) -> dict[str, str]:
        """tool -> current hash of a server's last listing (what an approval stores)."""
        return dict(self._seen.get(server_id, {}))

    def discard(self, server_id: str) -> None:
        """Forget a removed server's listing and flags (its stored approval stays)."""
        self._seen.pop(server_id, None)
        self._flagged.pop(server_id, None)
        self._first_use.pop(server_id, None)

    def _trust(self, server_id: str, seen: Mapping[str, str]) -> None:
        self._first_use[server_id] = dict(seen)
        if self._on_first_use is not None:
            try:
                self._on_first_use(server_id, dict(seen))
            except Exception:  # a failing hook must not break listing
                logger.exception("recording the first approval of MCP server %r failed", server_id)

    def _evaluate(self, server_id: str, seen: Mapping[str, str]) -> set[str]:
        approved = self.approved(server_id)
        flags: dict[str, tuple[str, str]] = {}
        if approved is not None:
            for tool, digest in seen.items():
                was = approved.get(tool, "")
                if was != digest:
                    flags[tool] = (was, digest)
        for tool in set(self._flagged.get(server_id, {})) - set(flags):  # cleared: a new change notifies again
            self._notified = {n for n in self._notified if n[:2] != (server_id, tool)}
        self._flagged[server_id] = flags
        for tool, (was, digest) in flags.items():
            key = (server_id, tool, digest)
            if key not in self._notified:
                self._notified.add(key)
                logger.warning(
                    "MCP tool %s__%s %s since its approval", server_id, tool, "was added" if not was else "changed"
                )
                if self._on_flag is not None:
                    try:
                        self._on_flag(server_id, tool, was, digest)
                    except Exception:
                        logger.exception("reporting the change of MCP tool %s__%s failed", server_id, tool)
        return set(flags)
