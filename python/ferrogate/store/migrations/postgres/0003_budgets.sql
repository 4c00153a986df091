-- ferrogate schema 3: budgets and limits for users, a period for key budgets, and the budget ledger.
--   budget_spend: cost per (scope, owner, UTC day), added in the same transaction that stores the usage
--     records (so spend and usage never disagree); a period's spend is the sum of its days.
--   budget_reservations: worst-case cost held by requests in flight; the row of a request is deleted in
--     the transaction that stores its usage record, or after expires_at (a crashed worker's).
--   budget_held: the sum of each budget's reservation rows, kept in step with them (read in O(1)).
--   budget_notices: one row per soft-limit/exhausted notice sent for a budget period (sent once).

ALTER TABLE users ADD COLUMN rpm BIGINT;
ALTER TABLE users ADD COLUMN tpm BIGINT;
ALTER TABLE users ADD COLUMN budget DOUBLE PRECISION;
ALTER TABLE users ADD COLUMN budget_period TEXT CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'total'));
ALTER TABLE keys ADD COLUMN budget_period TEXT CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'total'));

CREATE TABLE budget_spend (
    scope     TEXT NOT NULL CHECK (scope IN ('key', 'user', 'team')),
    owner_id  TEXT NOT NULL,
    day       TEXT NOT NULL,
    cost_usd  DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, owner_id, day)
);

CREATE TABLE budget_reservations (
    request_id  TEXT NOT NULL,
    scope       TEXT NOT NULL CHECK (scope IN ('key', 'user', 'team')),
    owner_id    TEXT NOT NULL,
    amount_usd  DOUBLE PRECISION NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (request_id, scope)
);
CREATE INDEX budget_reservations_owner_idx ON budget_reservations (scope, owner_id, expires_at);

CREATE TABLE budget_held (
    scope     TEXT NOT NULL,
    owner_id  TEXT NOT NULL,
    held_usd  DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, owner_id)
);

CREATE TABLE budget_notices (
    scope         TEXT NOT NULL,
    owner_id      TEXT NOT NULL,
    period_start  TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('soft', 'exhausted')),
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, owner_id, period_start, kind)
);
