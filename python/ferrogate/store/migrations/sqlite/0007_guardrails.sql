-- ferrogate schema 7: guardrail policy overrides, edited through the admin API (docs/admin-api.md, "Guardrails").
--   One row per scope: 'global', 'team:<team id>' or 'key:<key id>'; doc is the policy document (JSON text:
--   actions, responses, rules, deny_patterns, default_classification). guardrail_version holds one row whose
--   version goes up by one in the same transaction as every change of guardrail_policies, so a worker learns
--   of a change (from any worker of any instance) by reading one integer (every 0.5 s).

CREATE TABLE guardrail_policies (
    scope       TEXT PRIMARY KEY CHECK (scope = 'global' OR scope LIKE 'team:_%' OR scope LIKE 'key:_%'),
    doc         TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL
);

CREATE TABLE guardrail_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO guardrail_version (id, version) VALUES (1, 0);
