-- ferrogate schema 5: the audit trail's action and kind indexes cover admin records only.
--   Nearly every row is a data-plane request with the same kind and one of a few actions: indexing those
--   cost every request two B-tree inserts and served no query (a filter on a request action or on
--   kind = 'request' matches most rows, read in seq order). The list query names kind = 'admin' (or
--   'request') literally, so these partial indexes serve it (see ferrogate.store.audit.SqlAudit.list).

DROP INDEX audit_action_idx;
DROP INDEX audit_kind_idx;
CREATE INDEX audit_admin_action_idx ON audit_log (action, seq) WHERE kind = 'admin';
CREATE INDEX audit_admin_idx ON audit_log (seq) WHERE kind = 'admin';
