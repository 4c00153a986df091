//! The audit record hash for Python (`ferrogate.store.audit.record_hash` calls it).

use pyo3::prelude::*;

use crate::audit::{self, Record};

/// SHA-256 (hex) over the canonical JSON of an audit record's fields; `created_at` is the record's
/// fixed-width UTC stamp, `data` its stored JSON text. About a microsecond of work: the GIL is kept
/// (releasing it would cost more than it frees).
#[pyfunction]
#[allow(clippy::too_many_arguments)] // one argument per field of the record: the hash covers them all
pub fn audit_hash(
    seq: i64,
    event_id: &str,
    created_at: &str,
    kind: &str,
    actor: &str,
    action: &str,
    target: Option<&str>,
    team_id: Option<&str>,
    data: &str,
    prev_hash: &str,
) -> String {
    audit::record_hash(&Record {
        seq,
        event_id,
        created_at,
        kind,
        actor,
        action,
        target,
        team_id,
        data,
        prev_hash,
    })
}
