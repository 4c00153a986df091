-- ferrogate schema 2: usage_records, one row per data-plane request (written in batches by the metering
-- recorder, idempotent by request_id). No foreign keys: usage outlives deleted keys, users and teams.

CREATE TABLE usage_records (
    request_id         TEXT PRIMARY KEY,
    created_at         TIMESTAMPTZ NOT NULL,
    key_id             TEXT,
    team_id            TEXT,
    user_id            TEXT,
    model              TEXT NOT NULL,
    upstream           TEXT,
    upstream_model     TEXT,
    status             INTEGER NOT NULL,
    stream             BOOLEAN NOT NULL,
    prompt_tokens      BIGINT NOT NULL DEFAULT 0,
    completion_tokens  BIGINT NOT NULL DEFAULT 0,
    cached_tokens      BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens   BIGINT NOT NULL DEFAULT 0,
    counted            BOOLEAN NOT NULL DEFAULT FALSE,
    cost_usd           DOUBLE PRECISION,
    latency_ms         DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX usage_team_created_idx ON usage_records (team_id, created_at);
CREATE INDEX usage_key_created_idx ON usage_records (key_id, created_at);
CREATE INDEX usage_created_idx ON usage_records (created_at);
