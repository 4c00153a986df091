//! PyO3 bindings: the `ferrogate._core` extension module (only built with the `python`
//! feature).
//!
//! Thin wrappers over the plain Rust modules: only `bytes`, `str`, ints and tuples cross the
//! boundary, CPU work of more than a few microseconds
//! runs with the GIL released (`Python::detach`), and every Rust error is
//! translated in [`errors`] into the `CoreError` hierarchy. Python sees `SseParser`, `SseEvent`,
//! `ChatStreamMeter`, `StreamRelay` and `RateLimiter` (Rust `PySseParser`, ...); the hand-written stub is
//! `python/ferrogate/_core.pyi`.

mod audit;
mod circuit;
mod errors;
mod meter;
mod policy;
mod ratelimit;
mod relay;
mod scan;
mod schema;
mod sse;
mod tokens;

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::prelude::*;

/// Chunks of SSE at least this large are parsed and metered with the GIL released; smaller ones (one event,
/// a few hundred bytes: under a microsecond of work) keep it, as releasing and re-taking it costs more,
/// and more still when other threads wait for it.
const DETACH_MIN_BYTES: usize = 16 * 1024;

/// Texts at least this large are tokenized with the GIL released (tokenizing costs more per byte than
/// parsing SSE: 2 KiB is some 500 tokens, tens of microseconds).
const DETACH_MIN_TEXT_BYTES: usize = 2 * 1024;

/// Request bodies at least this large are scanned by the guardrails with the GIL released. A typical
/// request (a few KiB) scans in a few microseconds; releasing the GIL for that handed it to the worker's
/// other threads and cost ~50 µs a request under load (`load/features.py --last 2`).
const DETACH_MIN_SCAN_BYTES: usize = 64 * 1024;

/// Locks `mutex`; a poisoned lock (a panic while held, which our code does not do) still yields
/// the state, which every method leaves consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `ferrogate._core` module: SSE parsing, stream metering, token counting, rate limiting.
#[pymodule]
pub fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<sse::PySseEvent>()?;
    m.add_class::<sse::PySseParser>()?;
    m.add_class::<meter::PyChatStreamMeter>()?;
    m.add_class::<ratelimit::PyRateLimiter>()?;
    m.add_class::<circuit::PyCircuitPolicy>()?;
    m.add_class::<circuit::PyCircuits>()?;
    m.add_class::<relay::PyStreamRelay>()?;
    scan::register(m)?;
    policy::register(m)?;
    m.add_class::<schema::PyJsonSchema>()?;
    m.add_function(wrap_pyfunction!(audit::audit_hash, m)?)?;
    m.add_function(wrap_pyfunction!(audit::audit_block, m)?)?;
    m.add_function(wrap_pyfunction!(audit::audit_request_data, m)?)?;
    m.add_function(wrap_pyfunction!(audit::audit_requests, m)?)?;
    m.add_function(wrap_pyfunction!(ratelimit::rate_headers, m)?)?;
    m.add_function(wrap_pyfunction!(ratelimit::reset_duration, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::count_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::count_chat_prompt, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::encoding_for_model, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::model_encoding, m)?)?;
    Ok(())
}
