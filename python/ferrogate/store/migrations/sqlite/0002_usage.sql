-- ferrogate schema 2: usage_records, one row per data-plane request (written in batches by the metering
-- recorder, idempotent by request_id). No foreign keys: usage outlives deleted keys, users and teams.
-- created_at is fixed-width UTC text (as in schema 1); stream/counted are 0/1.

CREATE TABLE usage_records (
    request_id         TEXT PRIMARY KEY,
    created_at         TEXT NOT NULL,
    key_id             TEXT,
    team_id            TEXT,
    user_id            TEXT,
    model              TEXT NOT NULL,
    upstream           TEXT,
    upstream_model     TEXT,
    status             INTEGER NOT NULL,
    stream             INTEGER NOT NULL,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens      INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    counted            INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL,
    latency_ms         REAL NOT NULL DEFAULT 0
);
CREATE INDEX usage_team_created_idx ON usage_records (team_id, created_at);
CREATE INDEX usage_key_created_idx ON usage_records (key_id, created_at);
CREATE INDEX usage_created_idx ON usage_records (created_at);
