//! The audit record hash for Python (`ferrogate.store.audit.record_hash` calls it).

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;

use crate::audit::{self, BlockEntry, Record};

/// A block's entry as Python gives it: `(event_id, created_at, actor, action, target, team_id, data)`.
type Entry = (
    PyBackedStr,
    PyBackedStr,
    PyBackedStr,
    PyBackedStr,
    Option<PyBackedStr>,
    Option<PyBackedStr>,
    PyBackedStr,
);

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

/// Chains data-plane records into one block (see `ferrogate.store.audit`): `entries` are
/// `(event_id, created_at, actor, action, target, team_id, data)` (`created_at` the fixed-width UTC stamp,
/// `data` canonical JSON text), numbered from `first_seq` after a record whose hash is `prev_hash`. Returns the
/// block's JSON text and the hash of its last record. The hashing and encoding (about a microsecond a record)
/// run with the GIL released.
#[pyfunction]
pub fn audit_block(
    py: Python<'_>,
    first_seq: i64,
    prev_hash: &str,
    entries: Vec<Entry>,
) -> (String, String) {
    let (text, last) = py.detach(|| {
        let borrowed: Vec<BlockEntry<'_>> = entries
            .iter()
            .map(|e| BlockEntry {
                event_id: &e.0,
                created_at: &e.1,
                actor: &e.2,
                action: &e.3,
                target: e.4.as_deref(),
                team_id: e.5.as_deref(),
                data: &e.6,
            })
            .collect();
        audit::chain_block(first_seq, prev_hash, &borrowed)
    });
    // only `str` values were written (and ASCII punctuation): the bytes are UTF-8
    (String::from_utf8(text).unwrap_or_default(), last)
}
