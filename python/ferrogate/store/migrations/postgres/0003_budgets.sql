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

-- ferrogate_reserve: SqlBudgets.reserve in one round trip (the same steps as the Python program SQLite runs,
-- see python/ferrogate/store/budgets.py): lock each budget (advisory, in one order), sweep its expired holds,
-- read spend + held in one statement per budget, hold the amount on all of them or on none, record
-- first-time notices. Returns one row per budget: its index (1-based), spent and held before this request,
-- the index of the first budget that refused (NULL: held), and the notice kinds recorded now.
CREATE FUNCTION ferrogate_reserve(
    p_request_id TEXT,
    p_scopes     TEXT[],
    p_owners     TEXT[],
    p_limits     DOUBLE PRECISION[],
    p_since      TEXT[],
    p_amount     DOUBLE PRECISION,
    p_now        TIMESTAMPTZ,
    p_expires    TIMESTAMPTZ,
    p_soft       DOUBLE PRECISION
) RETURNS TABLE (idx INTEGER, spent DOUBLE PRECISION, reserved DOUBLE PRECISION, refused INTEGER, notices TEXT[])
LANGUAGE plpgsql AS $$
DECLARE
    n        INTEGER := COALESCE(array_length(p_scopes, 1), 0);
    i        INTEGER;
    gone     DOUBLE PRECISION;
    spents   DOUBLE PRECISION[] := '{}';
    helds    DOUBLE PRECISION[] := '{}';
    bad      INTEGER := NULL;
    sp       DOUBLE PRECISION;
    rs       DOUBLE PRECISION;
    kinds    TEXT[];
    k        TEXT;
BEGIN
    FOR i IN SELECT t.o FROM unnest(p_scopes, p_owners) WITH ORDINALITY AS t(s, w, o) ORDER BY t.s, t.w LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('budget:' || p_scopes[i] || ':' || p_owners[i], 0));
        WITH d AS (
            DELETE FROM budget_reservations r
            WHERE r.scope = p_scopes[i] AND r.owner_id = p_owners[i] AND r.expires_at <= p_now
            RETURNING r.amount_usd
        ) SELECT COALESCE(SUM(d.amount_usd), 0) INTO gone FROM d;
        IF gone <> 0 THEN
            INSERT INTO budget_held AS h (scope, owner_id, held_usd) VALUES (p_scopes[i], p_owners[i], -gone)
            ON CONFLICT (scope, owner_id) DO UPDATE SET held_usd = h.held_usd + EXCLUDED.held_usd;
        END IF;
    END LOOP;
    FOR i IN 1..n LOOP
        SELECT (SELECT COALESCE(SUM(s.cost_usd), 0) FROM budget_spend s
                WHERE s.scope = p_scopes[i] AND s.owner_id = p_owners[i] AND s.day >= p_since[i]),
               (SELECT GREATEST(COALESCE(MAX(h.held_usd), 0), 0) FROM budget_held h
                WHERE h.scope = p_scopes[i] AND h.owner_id = p_owners[i])
        INTO sp, rs;
        spents := spents || sp;
        helds := helds || rs;
        IF bad IS NULL AND sp + rs + p_amount > p_limits[i] THEN
            bad := i;
        END IF;
    END LOOP;
    IF bad IS NULL THEN
        -- budget_held rows are locked in (scope, owner) order, as the usage insert locks them: no deadlock
        FOR i IN SELECT t.o FROM unnest(p_scopes, p_owners) WITH ORDINALITY AS t(s, w, o) ORDER BY t.s, t.w LOOP
            INSERT INTO budget_reservations (request_id, scope, owner_id, amount_usd, expires_at)
            VALUES (p_request_id, p_scopes[i], p_owners[i], p_amount, p_expires)
            ON CONFLICT (request_id, scope) DO NOTHING;
            IF FOUND THEN
                INSERT INTO budget_held AS h (scope, owner_id, held_usd) VALUES (p_scopes[i], p_owners[i], p_amount)
                ON CONFLICT (scope, owner_id) DO UPDATE SET held_usd = h.held_usd + EXCLUDED.held_usd;
            END IF;
        END LOOP;
    END IF;
    FOR i IN 1..n LOOP
        kinds := '{}';
        IF p_soft IS NOT NULL THEN
            FOREACH k IN ARRAY (CASE WHEN i = bad THEN ARRAY['exhausted'] ELSE ARRAY[]::TEXT[] END
                                || CASE WHEN spents[i] >= p_soft * p_limits[i] THEN ARRAY['soft'] ELSE ARRAY[]::TEXT[] END)
            LOOP
                INSERT INTO budget_notices (scope, owner_id, period_start, kind, created_at)
                VALUES (p_scopes[i], p_owners[i], p_since[i], k, p_now) ON CONFLICT DO NOTHING;
                IF FOUND THEN
                    kinds := kinds || k;
                END IF;
            END LOOP;
        END IF;
        idx := i; spent := spents[i]; reserved := helds[i]; refused := bad; notices := kinds;
        RETURN NEXT;
    END LOOP;
END;
$$;
