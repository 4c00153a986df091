-- ferrogate schema 4: audit_log, the tamper-evident audit trail (see docs/audit.md).
--   One row per admin change or data-plane request, hash-chained in seq order: hash is SHA-256 over the
--   canonical JSON of the row's fields and prev_hash (the previous row's hash; 64 zeros for seq 1), so an
--   edited, inserted or deleted row breaks the chain (`ferrogate audit verify`).
--   seq is assigned by the writer inside its write transaction under a transaction-scoped advisory lock
--   (one writer at a time across workers and instances), 1, 2, 3, ... without gaps; event_id is unique,
--   so a replayed batch is skipped.
--   data is canonical JSON text (sorted keys), stored verbatim as TEXT (not JSONB, which would re-encode
--   it): it is hashed as stored.
--   No foreign keys: the trail outlives deleted keys, users and teams.

CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('admin', 'request')),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    team_id     TEXT,
    data        TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_actor_idx ON audit_log (actor, seq);
CREATE INDEX audit_team_idx ON audit_log (team_id, seq);
CREATE INDEX audit_action_idx ON audit_log (action, seq);
CREATE INDEX audit_kind_idx ON audit_log (kind, seq);
CREATE INDEX audit_created_idx ON audit_log (created_at);
