//! The audit record hash for Python (`ferrogate.store.audit.record_hash` calls it).

use std::collections::BTreeSet;

use pyo3::conversion::FromPyObjectOwned;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::PyTuple;

use crate::audit::{self, BlockEntry, Record, RequestData};

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
                values: None,
            })
            .collect();
        audit::chain_block(first_seq, prev_hash, &borrowed)
    });
    // only `str` values were written (and ASCII punctuation): the bytes are UTF-8
    (String::from_utf8(text).unwrap_or_default(), last)
}

/// One data-plane request as Python gives it (`ferrogate.store.audit.RequestFacts`, 21 fields): `(event_id,
/// created_at, actor, action, target, team_id, client_request_id, trace_id, user_id, upstream,
/// upstream_model, status, error, stream, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
/// counted, cost_usd, latency_ms)`, `created_at` an aware UTC `datetime`.
struct Facts<'py>(
    PyBackedStr,
    Bound<'py, PyAny>,
    PyBackedStr,
    PyBackedStr,
    Option<PyBackedStr>,
    Option<PyBackedStr>,
    Option<PyBackedStr>,
    Option<PyBackedStr>,
    Option<PyBackedStr>,
    Option<PyBackedStr>,
    Option<PyBackedStr>,
    i64,
    Option<PyBackedStr>,
    bool,
    i64,
    i64,
    i64,
    i64,
    bool,
    Option<f64>,
    f64,
);

/// What [`audit_requests`] returns: `(text, last_hash, earliest, latest, actors, teams)`.
type Block = (String, String, String, String, Vec<String>, Vec<String>);

/// The number of fields of `RequestFacts`.
const FACTS: usize = 21;

impl<'py> Facts<'py> {
    /// Reads one `RequestFacts` tuple (a `TypeError` naming the field that has the wrong type).
    fn read(tuple: &Bound<'py, PyTuple>) -> PyResult<Self> {
        const NAMES: [&str; FACTS] = [
            "event_id",
            "created_at",
            "actor",
            "action",
            "target",
            "team_id",
            "client_request_id",
            "trace_id",
            "user_id",
            "upstream",
            "upstream_model",
            "status",
            "error",
            "stream",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "reasoning_tokens",
            "counted",
            "cost_usd",
            "latency_ms",
        ];
        if tuple.len() != FACTS {
            return Err(PyTypeError::new_err(format!(
                "request facts: expected a tuple of {FACTS} fields, got {}",
                tuple.len()
            )));
        }
        fn field<'py, T: FromPyObjectOwned<'py>>(
            tuple: &Bound<'py, PyTuple>,
            i: usize,
        ) -> PyResult<T> {
            tuple.get_borrowed_item(i)?.extract().map_err(|_| {
                PyTypeError::new_err(format!("request facts: {} has the wrong type", NAMES[i]))
            })
        }
        Ok(Self(
            field(tuple, 0)?,
            tuple.get_item(1)?,
            field(tuple, 2)?,
            field(tuple, 3)?,
            field(tuple, 4)?,
            field(tuple, 5)?,
            field(tuple, 6)?,
            field(tuple, 7)?,
            field(tuple, 8)?,
            field(tuple, 9)?,
            field(tuple, 10)?,
            field(tuple, 11)?,
            field(tuple, 12)?,
            field(tuple, 13)?,
            field(tuple, 14)?,
            field(tuple, 15)?,
            field(tuple, 16)?,
            field(tuple, 17)?,
            field(tuple, 18)?,
            field(tuple, 19)?,
            field(tuple, 20)?,
        ))
    }

    /// The fixed-width UTC stamp of `created_at`, an aware `datetime` (in UTC as the account phase makes
    /// it; another zone is converted; a naive time is a `ValueError`).
    fn stamp(&self, utc: &Bound<'py, PyAny>) -> PyResult<String> {
        let py = self.1.py();
        if let Some(text) = fast_stamp(&self.1, utc) {
            return Ok(text);
        }
        let mut at = self.1.clone();
        let zone = at.getattr(intern!(py, "tzinfo"))?;
        if !zone.is(utc) {
            if zone.is_none() || at.call_method0(intern!(py, "utcoffset"))?.is_none() {
                return Err(PyValueError::new_err(format!(
                    "created_at {at} is not an aware time"
                )));
            }
            at = at.call_method1(intern!(py, "astimezone"), (utc,))?;
        }
        let names = [
            intern!(py, "year"),
            intern!(py, "month"),
            intern!(py, "day"),
            intern!(py, "hour"),
            intern!(py, "minute"),
            intern!(py, "second"),
            intern!(py, "microsecond"),
        ];
        let mut fields = [0i64; 7];
        for (value, name) in fields.iter_mut().zip(names) {
            *value = at.getattr(name)?.extract()?;
        }
        audit::stamp(fields)
            .ok_or_else(|| PyValueError::new_err(format!("created_at {at} is out of range")))
    }

    fn data(&self) -> RequestData<'_> {
        RequestData {
            cached_tokens: self.16,
            client_request_id: self.6.as_deref(),
            completion_tokens: self.15,
            cost_usd: self.19,
            counted: self.18,
            error: self.12.as_deref(),
            latency_ms: self.20,
            prompt_tokens: self.14,
            reasoning_tokens: self.17,
            status: self.11,
            stream: self.13,
            trace_id: self.7.as_deref(),
            upstream: self.9.as_deref(),
            upstream_model: self.10.as_deref(),
            user_id: self.8.as_deref(),
        }
    }
}

/// The stamp of a UTC `datetime` read off its pickle state, one C call: `(cls, (state, tzinfo))`, the state
/// being year (2 bytes), month (its high bit the fold), day, hour, minute, second, microsecond (3 bytes).
/// `None` for any other shape (another zone: the slow way converts it).
fn fast_stamp(at: &Bound<'_, PyAny>, utc: &Bound<'_, PyAny>) -> Option<String> {
    let reduced = at.call_method0(intern!(at.py(), "__reduce__")).ok()?;
    let args = reduced.get_item(1).ok()?;
    if !args.get_item(1).ok()?.is(utc) {
        return None;
    }
    let state = args.get_item(0).ok()?;
    let &[y1, y2, mo, d, h, mi, s, u1, u2, u3] = state.extract::<&[u8]>().ok()? else {
        return None;
    };
    audit::stamp([
        i64::from(u16::from_be_bytes([y1, y2])),
        i64::from(mo & 0x7f),
        i64::from(d),
        i64::from(h),
        i64::from(mi),
        i64::from(s),
        i64::from(u32::from_be_bytes([0, u1, u2, u3])),
    ])
}

/// Python's `datetime.timezone.utc`.
fn utc(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    py.import(intern!(py, "datetime"))?
        .getattr(intern!(py, "timezone"))?
        .getattr(intern!(py, "utc"))
}

/// The fixed-width UTC stamp and the canonical `data` text of one request's record (what
/// [`audit_requests`] writes for it; for tests and for checking one record before it is spooled).
#[pyfunction]
pub fn audit_request_data(facts: &Bound<'_, PyTuple>) -> PyResult<(String, String)> {
    let facts = Facts::read(facts)?;
    let mut out = Vec::with_capacity(512);
    audit::request_data_json(&mut out, &facts.data());
    let utc = utc(facts.1.py())?;
    Ok((
        facts.stamp(&utc)?,
        String::from_utf8(out).unwrap_or_default(),
    ))
}

/// Chains data-plane requests into one block, as [`audit_block`] does, encoding each record's `data` from
/// its facts (`ferrogate.store.audit.RequestFacts`) instead of taking it as text: the Python side builds no
/// dict and no JSON per request. Returns the block's JSON text, the hash of its last record, the earliest and
/// latest stamp, and the distinct actors and teams (sorted): what the block's row and references need.
#[pyfunction]
pub fn audit_requests(
    py: Python<'_>,
    first_seq: i64,
    prev_hash: &str,
    facts: Vec<Bound<'_, PyTuple>>,
) -> PyResult<Block> {
    let facts = facts
        .iter()
        .map(Facts::read)
        .collect::<PyResult<Vec<Facts<'_>>>>()?;
    let utc = utc(py)?;
    let stamps = facts
        .iter()
        .map(|f| f.stamp(&utc))
        .collect::<PyResult<Vec<String>>>()?;
    let data: Vec<RequestData<'_>> = facts.iter().map(Facts::data).collect();
    let ids: Vec<[&str; 3]> = facts.iter().map(|f| [&*f.0, &*f.2, &*f.3]).collect();
    let scope: Vec<[Option<&str>; 2]> = facts
        .iter()
        .map(|f| [f.4.as_deref(), f.5.as_deref()])
        .collect();
    let (text, last) = py.detach(|| {
        // every record's data (the object, hashed) and its values (the array, stored) in one buffer each (one
        // allocation), then the block over slices of them
        let mut objects = Vec::with_capacity(data.len() * 400);
        let mut values = Vec::with_capacity(data.len() * 160);
        let mut ends = Vec::with_capacity(data.len());
        for d in &data {
            audit::request_data_json(&mut objects, d);
            audit::request_data_values(&mut values, d);
            ends.push((objects.len(), values.len()));
        }
        let objects = String::from_utf8(objects).unwrap_or_default();
        let values = String::from_utf8(values).unwrap_or_default();
        let entries: Vec<BlockEntry<'_>> = (0..ends.len())
            .map(|i| {
                let (o, v) = if i == 0 { (0, 0) } else { ends[i - 1] };
                BlockEntry {
                    event_id: ids[i][0],
                    created_at: &stamps[i],
                    actor: ids[i][1],
                    action: ids[i][2],
                    target: scope[i][0],
                    team_id: scope[i][1],
                    data: objects.get(o..ends[i].0).unwrap_or("{}"),
                    values: values.get(v..ends[i].1),
                }
            })
            .collect();
        audit::chain_block(first_seq, prev_hash, &entries)
    });
    let earliest = stamps.iter().min().cloned().unwrap_or_default();
    let latest = stamps.iter().max().cloned().unwrap_or_default();
    let actors: BTreeSet<&str> = ids.iter().map(|i| i[1]).collect();
    let teams: BTreeSet<&str> = scope.iter().filter_map(|s| s[1]).collect();
    Ok((
        String::from_utf8(text).unwrap_or_default(),
        last,
        earliest,
        latest,
        actors.into_iter().map(str::to_owned).collect(),
        teams.into_iter().map(str::to_owned).collect(),
    ))
}
