"""The MCP tool gateway (docs/mcp.md): upstream MCP servers, their catalog, tool policies and pins.

Re-exports only; each module documents its part.
"""

from ferrogate.mcp.catalog import Catalog, namespaced, split_name
from ferrogate.mcp.pins import Pins, pin_hash
from ferrogate.mcp.policy import KeyToolPolicy, Policies, PolicyError, ToolPolicy
from ferrogate.mcp.upstream import Upstream, UpstreamError, UpstreamTimeout, UpstreamUnavailable

__all__ = [
    "Catalog",
    "KeyToolPolicy",
    "Pins",
    "Policies",
    "PolicyError",
    "ToolPolicy",
    "Upstream",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "namespaced",
    "pin_hash",
    "split_name",
]
