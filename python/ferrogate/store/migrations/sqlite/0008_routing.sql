-- ferrogate schema 8: routing overrides, edited through the admin API (docs/admin-api.md, "LLM routing").
--   One row per (kind, name): kind 'upstream' or 'model_group' with the name of one, or kind 'rules' with the
--   name 'rules' (the routing rules text, doc {"text": ...}). doc is the JSON document (JSON text) that replaces or
--   adds the configuration file's entry of that name; NULL is a tombstone: the file's entry of that name is
--   deleted. routing_version holds one row whose version goes up by one in the same transaction as every change
--   of routing_overrides, so a worker learns of a change (from any worker of any instance) by reading one integer
--   (every 0.5 s).

CREATE TABLE routing_overrides (
    kind        TEXT NOT NULL CHECK (kind IN ('upstream', 'model_group', 'rules')),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    doc         TEXT,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);

CREATE TABLE routing_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO routing_version (id, version) VALUES (1, 0);
