-- ferrogate schema 6: data-plane audit records are stored in blocks, one row per written batch.
--   A block holds the records seq first_seq..last_seq (consecutive) as one JSON array; each record has the
--   hash it would have as an audit_log row, so one chain runs through audit_log (admin changes, and requests
--   recorded before this schema) and audit_blocks alike (`ferrogate audit verify` walks both in seq order).
--   prev_hash is the hash of record first_seq - 1 (64 zeros for seq 1), last_hash that of record last_seq.
--   One row and one index entry per batch instead of per request: a request's record costs a third of an
--   audit_log row (docs/audit.md). min_at and max_at bound the records' created_at (time-range filters and
--   the replay lookup of event ids); audit_block_refs names each actor and team a block has records of, so
--   the list filters on them read only those blocks.

CREATE TABLE audit_blocks (
    first_seq   BIGINT PRIMARY KEY,
    last_seq    BIGINT NOT NULL,
    min_at      TIMESTAMPTZ NOT NULL,
    max_at      TIMESTAMPTZ NOT NULL,
    prev_hash   TEXT NOT NULL,
    last_hash   TEXT NOT NULL,
    records     TEXT NOT NULL
);
CREATE INDEX audit_blocks_max_at_idx ON audit_blocks (max_at);

CREATE TABLE audit_block_refs (
    field       TEXT NOT NULL CHECK (field IN ('actor', 'team_id')),
    value       TEXT NOT NULL,
    first_seq   BIGINT NOT NULL,
    PRIMARY KEY (field, value, first_seq)
);
