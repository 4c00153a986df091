-- ferrogate schema 1: teams, users, keys (virtual and admin).
-- Timestamps are timestamptz (UTC); JSON fields are JSONB.

CREATE TABLE teams (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL CONSTRAINT teams_name_key UNIQUE,
    allowed_models  JSONB NOT NULL DEFAULT '["*"]',
    rpm             BIGINT,
    tpm             BIGINT,
    budget          DOUBLE PRECISION,
    budget_period   TEXT CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'total')),
    classification  TEXT NOT NULL DEFAULT 'internal',
    metadata        JSONB NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX teams_created_idx ON teams (created_at, id);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL REFERENCES teams (id) ON DELETE RESTRICT,
    name        TEXT NOT NULL,
    email       TEXT,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'team_admin', 'auditor', 'member')),
    metadata    JSONB NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT users_team_id_name_key UNIQUE (team_id, name)
);
CREATE INDEX users_created_idx ON users (created_at, id);
CREATE INDEX users_team_idx ON users (team_id, created_at, id);

CREATE TABLE keys (
    id                   TEXT PRIMARY KEY,
    key_hash             TEXT NOT NULL CONSTRAINT keys_key_hash_key UNIQUE,
    prefix               TEXT NOT NULL,
    name                 TEXT NOT NULL DEFAULT '',
    team_id              TEXT REFERENCES teams (id) ON DELETE RESTRICT,
    user_id              TEXT REFERENCES users (id) ON DELETE RESTRICT,
    role                 TEXT NOT NULL CHECK (role IN ('admin', 'team_admin', 'auditor', 'member')),
    allowed_models       JSONB,
    expires_at           TIMESTAMPTZ,
    rpm                  BIGINT,
    tpm                  BIGINT,
    budget               DOUBLE PRECISION,
    metadata             JSONB NOT NULL DEFAULT '{}',
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    last_used_at         TIMESTAMPTZ,
    revoked_at           TIMESTAMPTZ,
    previous_hash        TEXT,
    previous_expires_at  TIMESTAMPTZ
);
CREATE INDEX keys_created_idx ON keys (created_at, id);
CREATE INDEX keys_team_idx ON keys (team_id, created_at, id);
CREATE INDEX keys_user_idx ON keys (user_id, created_at, id);
CREATE INDEX keys_previous_hash_idx ON keys (previous_hash) WHERE previous_hash IS NOT NULL;
