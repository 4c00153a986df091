"""The MCP tool gateway (docs/mcp.md): upstream MCP servers, their catalog, tool policies and pins.

Each module documents its part; nothing is re-exported here, so the parts the admin plane needs (``policy``,
``pins``, ``secrets``) are imported without the MCP SDK (``catalog``, ``upstream`` and the fronts load it).
"""
