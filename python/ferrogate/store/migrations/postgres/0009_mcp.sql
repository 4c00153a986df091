-- ferrogate schema 9: the MCP tool gateway's stored state, edited through the admin API (docs/admin-api.md, "MCP").
--   mcp_servers: one row per MCP server added through the API (servers of the configuration file are not here).
--   doc is the server's JSON document (the McpServer configuration model) without its credentials; sealed is the
--   credentials (header values, bearer token, stdio environment) as one AES-256-GCM token under a key derived
--   from the master key (mcp/secrets.py), NULL when the server has none: the database never holds them in clear.
--   mcp_policies: one tool policy document (JSON: allow, deny, tool_calls_per_minute, keys) per team.
--   mcp_pins: the approved hash of each tool of a server (its name, description and schemas); a row with tool ''
--   marks the server as approved (so an approval of no tools is still one). An approval replaces a server's rows.
--   mcp_version holds one row whose version goes up by one in the same transaction as every change of the three
--   tables, so a worker learns of a change (from any worker of any instance) by reading one integer.

CREATE TABLE mcp_servers (
    id          TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 32),
    doc         JSONB NOT NULL,
    sealed      TEXT,
    updated_at  TIMESTAMPTZ NOT NULL,
    updated_by  TEXT NOT NULL
);

CREATE TABLE mcp_policies (
    team_id     TEXT PRIMARY KEY CHECK (length(team_id) BETWEEN 1 AND 128),
    doc         JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    updated_by  TEXT NOT NULL
);

CREATE TABLE mcp_pins (
    server_id    TEXT NOT NULL CHECK (length(server_id) BETWEEN 1 AND 32),
    tool         TEXT NOT NULL CHECK (length(tool) <= 128),
    hash         TEXT NOT NULL,
    approved_at  TIMESTAMPTZ NOT NULL,
    approved_by  TEXT NOT NULL,
    PRIMARY KEY (server_id, tool)
);

CREATE TABLE mcp_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO mcp_version (id, version) VALUES (1, 0);
